"""Alignment of a projection series by projection matching.

Nanoprobe XRF tomography drifts: each projection is displaced by an unknown
``(dy, dx)``. :func:`align` estimates the displacements on one element (or
the sum of all), then shifts every element's projections back:

1. Start from the centres of mass: along ``y`` (the rotation axis) every
   projection has the same centre of mass, and along ``x`` it follows a
   sinusoid ``X cos(theta) + Y sin(theta)`` about the rotation centre; what
   is left over is drift.
2. Reconstruct (FBP) from the shifted projections, re-project the volume,
   register each projection to its re-projection by phase correlation with
   sub-pixel refinement, and update the shifts. Repeat until the largest
   update is below ``tolerance_pixel``.

The ``y`` shifts are reported with zero mean (a common ``y`` offset only
moves the whole sample); ``x`` shifts are relative to the rotation centre
given.

References
----------
Gürsoy, D. et al. Rapid alignment of nanotomography data using joint
iterative reconstruction and reprojection. Sci. Rep. 7, 11818 (2017),
https://doi.org/10.1038/s41598-017-12141-9.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from xrfsr_dask import _backend, _progress
from xrfsr_dask._grid import coord_grid
from xrfsr_dask.errors import NonFiniteCountsError
from xrfsr_dask.schema import add_provenance, validate
from xrfsr_dask.tomo import _nufft
from xrfsr_dask.tomo.center import RotationCenter

__all__ = ["Alignment", "align"]


@dataclass(frozen=True)
class Alignment:
    """What :func:`align` found and the series it aligned.

    Attributes
    ----------
    series
        The aligned series, lazy when the input was.
    shift_px
        Displacement of each projection as measured, ``(angle, axis)`` with
        ``axis`` ``["y", "x"]``, in pixels; the aligned series is the input
        shifted by minus this.
    shift_nm
        The same in nm.
    iterations
        Projection-matching iterations run.
    converged
        Whether the last update was below the tolerance.
    updates_px
        The largest shift update of each iteration, pixels.
    """

    series: xr.DataArray
    shift_px: xr.DataArray
    shift_nm: xr.DataArray
    iterations: int
    converged: bool
    updates_px: tuple[float, ...]

    def apply(self, series: xr.DataArray) -> xr.DataArray:
        """Shift another series of the same projections by the displacements found here.

        The shifts are taken in nm, so the other series may have a different
        pixel size: align the measured (LR) series, then apply the result to
        its enhanced (HR) version, whose projection matching would otherwise
        chase the network's texture instead of the sample.

        Parameters
        ----------
        series
            Projections ``(element, angle, y, x)`` at the same angles, with
            ``y``/``x`` coordinates in nm.

        Returns
        -------
        xarray.DataArray
            ``series`` with each projection moved by minus its shift (cubic
            splines), lazy when the input was, with provenance.
        """
        validate(series, "series", caller="Alignment.apply")
        ours, theirs = self.shift_nm.angle.values, series.angle.values
        if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=0, atol=1e-6):
            raise ValueError(
                f"the series has {theirs.size} angles ({_angle_span(theirs)}) but the alignment was found on "
                f"{ours.size} ({_angle_span(ours)}); apply it to projections at the same angles."
            )
        steps = np.asarray([_step_nm(series, dim) for dim in ("y", "x")])
        shifts = self.shift_nm.values / steps
        parameters = {"shift_nm": self.shift_nm.values.round(3).tolist(), "pixel_nm": steps.tolist()}
        return add_provenance(_shift_series(series, shifts), "xrfsr_dask.tomo.Alignment.apply", parameters)


def _angle_span(angles: np.ndarray) -> str:
    return f"{angles.min():g} to {angles.max():g} deg" if angles.size else "none"


def _step_nm(series: xr.DataArray, dim: str) -> float:
    return (coord_grid(series, dim, name="series", purpose="align reports nm") or (0.0, 1.0))[1]


def _shift_series(series: xr.DataArray, shifts: np.ndarray) -> xr.DataArray:
    """Every element's projections moved by minus ``shifts`` (angle, [dy, dx]) pixels, lazily for dask."""
    data = series.data if isinstance(series.data, dsa.Array) else dsa.from_array(np.asarray(series.data))
    data = data.rechunk({2: -1, 3: -1})
    moved = data.map_blocks(_apply_block, shifts=shifts, dtype=data.dtype, meta=np.empty((0,) * 4, data.dtype))
    return series.copy(data=moved if isinstance(series.data, dsa.Array) else moved.compute())


def _shifted(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Each image ``(..., y, x)`` of axis -3 moved by minus its ``(dy, dx)``."""
    out = np.empty_like(images)
    for index in np.ndindex(images.shape[:-3]):
        for a in range(images.shape[-3]):
            out[index + (a,)] = ndimage.shift(images[index + (a,)], -shifts[a], order=3, mode="nearest")
    return out


def _centre_of_mass(images: np.ndarray, theta: np.ndarray, center: float) -> np.ndarray:
    totals = images.sum(axis=(1, 2))
    totals = np.where(totals > 0, totals, 1.0)
    rows = np.arange(images.shape[1])
    cols = np.arange(images.shape[2])
    cy = (images.sum(axis=2) @ rows) / totals
    cx = (images.sum(axis=1) @ cols) / totals - center
    radians = np.deg2rad(theta)
    design = np.stack([np.cos(radians), np.sin(radians)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, cx, rcond=None)
    return np.stack([cy - cy.mean(), cx - design @ coefficients], axis=1)


def _apply_block(block: np.ndarray, *, block_info: dict[Any, Any], shifts: np.ndarray) -> np.ndarray:
    start, stop = block_info[0]["array-location"][1]
    return _shifted(block, shifts[start:stop])


def align(
    series: xr.DataArray,
    *,
    center: float | RotationCenter | None = None,
    element: str | None = None,
    iterations: int = 10,
    tolerance_pixel: float = 0.05,
    device: str = "auto",
    progress: bool = True,
) -> Alignment:
    """Align the projections of a series by centre of mass and projection matching.

    Parameters
    ----------
    series
        Projections ``(element, angle, y, x)``, normalised, without NaN.
    center
        Rotation centre in detector pixels, or a
        :class:`~xrfsr_dask.tomo.RotationCenter`; default the detector's middle.
    element
        The element to align on; default the sum of all (the most counts).
    iterations
        At most this many projection-matching iterations.
    tolerance_pixel
        Stop when no shift changes by more than this.
    device
        Where the re-projection of each iteration runs: ``"auto"`` (the GPU
        when torch sees one), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    progress
        Show a progress bar over the iterations.

    Returns
    -------
    Alignment
        The aligned series (all elements shifted by the same amounts) and the
        shifts in pixels and nm.

    Examples
    --------
    >>> from xrfsr_dask import nmc_volume, project
    >>> from xrfsr_dask.tomo import align
    >>> series = project(nmc_volume(shape=(8, 48, 48), seed=1), angles=range(0, 180, 6))
    >>> result = align(series, progress=False)
    >>> float(abs(result.shift_px).max()) < 0.5
    True
    """
    validate(series, "series", caller="align")
    if iterations < 0:
        raise ValueError(f"iterations must be 0 or more; got {iterations}.")
    device = _backend.resolve_device(device)
    n_det = series.sizes["x"]
    if isinstance(center, RotationCenter):
        center = center.pixel
    center = (n_det - 1) / 2 if center is None else float(center)
    reference = series.sel(element=element) if element is not None else series.sum("element", skipna=False)
    images = np.asarray(reference.values, dtype=np.float32)
    if not np.isfinite(images).all():
        raise NonFiniteCountsError(
            "align needs finite counts; fill NaN first: xrfsr_dask.tomo.normalize(series, nan='interpolate')."
        )
    theta = np.asarray(series.angle.values, dtype=np.float64)

    import torch

    from xrfsr_dask.tomo._torch import Projector

    shifts = _centre_of_mass(images, theta, center)
    projector = Projector(theta, n=n_det, n_det=n_det, center=center, device=torch.device(device))
    updates: list[float] = []
    steps = _progress.bar(range(iterations), desc="aligning projections", unit="iteration", disable=not progress)
    for _ in steps:
        aligned = _shifted(images, shifts)
        slices = _nufft.fbp(np.ascontiguousarray(aligned.transpose(1, 0, 2)), theta, center=center, n=n_det,
                            filter_name="shepp-logan")
        with torch.inference_mode():
            model = projector.forward(torch.as_tensor(slices, device=device)).cpu().numpy().transpose(1, 0, 2)
        update = np.array([
            -phase_cross_correlation(model[a], aligned[a], upsample_factor=20, normalization=None)[0]
            for a in range(len(theta))
        ])
        update[:, 0] -= update[:, 0].mean()
        shifts = shifts + update
        updates.append(float(np.abs(update).max()))
        if updates[-1] < tolerance_pixel:
            break

    out = _shift_series(series, shifts)
    steps_nm = [_step_nm(series, dim) for dim in ("y", "x")]
    coords = {"angle": series.angle, "axis": ["y", "x"]}
    shift_px = xr.DataArray(shifts, dims=("angle", "axis"), coords=coords, attrs={"units": "pixel"})
    shift_nm = xr.DataArray(shifts * np.asarray(steps_nm), dims=("angle", "axis"), coords=coords, attrs={"units": "nm"})
    parameters = {
        "center_pixel": center,
        "element": element,
        "device": device,
        "iterations": len(updates),
        "shift_px": shifts.round(4).tolist(),
    }
    return Alignment(
        series=add_provenance(out, "xrfsr_dask.tomo.align", parameters),
        shift_px=shift_px,
        shift_nm=shift_nm,
        iterations=len(updates),
        converged=bool(updates) and updates[-1] < tolerance_pixel,
        updates_px=tuple(updates),
    )
