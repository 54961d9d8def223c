"""Checking and unpacking the inputs of the metrics: grids in nm, batches, devices.

A metric takes labeled DataArrays (spatial dims ``y, x`` or ``z, y, x`` with
coordinates in nm; any other dims, such as ``element``, are a batch) or bare
NumPy/CuPy/dask arrays together with the pixel size. What comes out is a
list of ``(label, array)`` items over the batch, each array holding just the
spatial axes, and the pixel size along each of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import xarray as xr

from xrfsr_dask._backend import array_module
from xrfsr_dask._grid import STEP_RTOL, grid_nm, per_axis
from xrfsr_dask.errors import NonFiniteCountsError
from xrfsr_dask.schema import counts_dtype

__all__ = ["Batch", "as_batch", "check_finite", "check_pair", "prepare"]

class Batch:
    """The spatial blocks of one input, with their batch labels and pixel size."""

    def __init__(self, data: xr.DataArray, spatial: tuple[str, ...], spacing_nm: tuple[float, ...]):
        self.data = data
        self.spatial = spatial
        self.spacing_nm = spacing_nm
        self.batch_dims = tuple(str(d) for d in data.dims if d not in spatial)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.sizes[d] for d in self.spatial)

    @property
    def is_dask(self) -> bool:
        return hasattr(self.data.data, "dask")

    def blocks(self) -> Iterator[tuple[dict[str, int], Any]]:
        """``({batch dim: index}, spatial array)`` for every item of the batch."""
        ranges = [range(self.data.sizes[d]) for d in self.batch_dims]
        for key in itertools.product(*ranges):
            where = dict(zip(self.batch_dims, key, strict=True))
            yield where, self.data.isel(where).data

    def batch_coords(self) -> dict[str, Any]:
        return {d: self.data[d] for d in self.batch_dims if d in self.data.coords}


def as_batch(
    x: Any,
    name: str,
    spatial: tuple[str, ...],
    pixel_nm: float | Sequence[float] | None,
) -> Batch:
    """Wrap ``x`` as a :class:`Batch` over ``spatial`` dims, its pixel size checked in nm."""
    given = per_axis(pixel_nm, spatial)
    if isinstance(x, xr.DataArray):
        missing = [d for d in spatial if d not in x.dims]
        if missing:
            raise ValueError(
                f"{name} has dims {x.dims}; expected {spatial} among them (missing {missing}). "
                f"Rename its dims (e.g. {name}.rename(row='y', col='x'))"
                + (" or use frc for 2-D images." if "z" in missing and len(spatial) == 3 else ".")
            )
        data = x.transpose(..., *spatial)
    else:
        if not hasattr(x, "ndim"):
            x = np.asarray(x)
        if x.ndim != len(spatial):
            hint = " (use frc for 2-D images)" if len(spatial) == 3 and x.ndim == 2 else ""
            raise ValueError(
                f"{name} has shape {x.shape}; expected {len(spatial)} dims {spatial}{hint}. "
                "Pass a DataArray to carry extra dims such as element."
            )
        data = xr.DataArray(x, dims=spatial)
    spacing = [
        grid_nm(data, dim, value, name=name, purpose="Fourier metrics work")[1]
        for dim, value in zip(spatial, given, strict=True)
    ]
    sizes = [data.sizes[d] for d in spatial]
    if min(sizes) < 4:
        raise ValueError(f"{name} has {dict(zip(spatial, sizes, strict=True))} samples; need >= 4 per axis.")
    return Batch(data, spatial, tuple(spacing))


def check_pair(a: Batch, b: Batch) -> None:
    """Refuse two inputs that do not sample the same grid with the same batch."""
    if a.data.dims != b.data.dims or a.data.shape != b.data.shape:
        raise ValueError(
            f"a and b differ in shape: a has {dict(a.data.sizes)}, b has {dict(b.data.sizes)}; "
            "compare maps or volumes on the same grid (crop or interpolate one of them first)."
        )
    if not np.allclose(a.spacing_nm, b.spacing_nm, rtol=STEP_RTOL):
        raise ValueError(
            f"a and b have different pixel sizes: {a.spacing_nm} nm vs {b.spacing_nm} nm; "
            "resample one onto the other's grid first."
        )
    for dim in a.spatial:
        if dim in a.data.coords and dim in b.data.coords:
            offset = np.abs(a.data[dim].values - b.data[dim].values).max()
            if offset > 0.5 * a.spacing_nm[a.spatial.index(dim)]:
                raise ValueError(
                    f"a and b have different {dim!r} coordinates (off by up to {offset:g} nm); "
                    "register them first, or if they are the same grid, "
                    f"b = b.assign_coords({dim}=a.{dim})."
                )
    for dim in a.batch_dims:
        labelled = dim in a.data.coords and dim in b.data.coords
        if labelled and not np.array_equal(a.data[dim].values, b.data[dim].values):
            raise ValueError(
                f"a and b have different {dim!r} labels ({a.data[dim].values.tolist()} vs "
                f"{b.data[dim].values.tolist()}); select the same ones in the same order, "
                f"e.g. b = b.sel({dim}=a.{dim})."
            )


def check_finite(power: np.ndarray, name: str) -> None:
    """Refuse an input whose spectrum is not finite: it had NaN or infinite samples.

    Any non-finite sample spreads through the FFT into every shell sum, so
    checking the sums costs nothing and needs no extra pass over the data.
    """
    if not np.isfinite(power).all():
        raise NonFiniteCountsError(
            f"{name} contains NaN or infinite values; Fourier metrics need finite data. "
            f"Replace them first, e.g. {name}.fillna(0) or {name}.where(np.isfinite({name}), 0)."
        )


def prepare(x: Any, apodise: np.ndarray | None) -> Any:
    """Cast by the library's dtype policy (:func:`~xrfsr_dask.schema.counts_dtype`); with a window, subtract
    the mean and apodise."""
    x = x.astype(counts_dtype(x.dtype), copy=False)
    if apodise is None:
        return x
    if hasattr(x, "dask"):
        return (x - x.mean()) * apodise.astype(x.dtype)
    xp = array_module(x)
    return (x - x.mean()) * xp.asarray(apodise, dtype=x.dtype)
