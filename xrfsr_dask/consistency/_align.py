"""Lining up an enhanced map with the scan it came from: labels, grids, probe, chunks and halos."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr
from dask.array.overlap import ensure_minimum_chunksize

from xrfsr_dask._backend import array_module, library
from xrfsr_dask._grid import coord_grid
from xrfsr_dask.consistency.operator import ScanOperator
from xrfsr_dask.errors import GridMismatchError, LabelMismatchError, SchemaError, XrfsrWarning
from xrfsr_dask.io.store import DEFAULT_CHUNKS
from xrfsr_dask.probe import as_probe
from xrfsr_dask.schema import kind_of, validate

GRID_ATOL_PX = 0.01
"""Fine pixels by which an origin may miss the grid of the scan before it is refused."""


@dataclass(frozen=True, eq=False)
class Pair:
    """The enhanced and measured data cropped to their common footprint, and the scan between them."""

    fine: xr.DataArray
    lr: xr.DataArray
    operator: ScanOperator
    probe: Any
    crop: dict[str, list[int]]


def _check_labels(enhanced: xr.DataArray, measured: xr.DataArray) -> xr.DataArray:
    """``enhanced`` with its elements in the measured order; refuses other elements or angles."""
    kind, other = kind_of(measured), kind_of(enhanced)
    if kind not in ("maps", "series") or kind != other:
        raise SchemaError(
            f"enhanced is {other} {enhanced.dims} and measured is {kind} {measured.dims}; both must be maps "
            "(element, y, x) or both series (element, angle, y, x) of the same scan."
        )
    have = [str(e) for e in enhanced.element.values]
    want = [str(e) for e in measured.element.values]
    if set(have) != set(want):
        missing = [e for e in want if e not in have]
        extra = [e for e in have if e not in want]
        raise LabelMismatchError(
            f"enhanced has elements {have} but measured has {want} (missing from enhanced: {missing}, not "
            f"measured: {extra}). Compare the same maps: select the common elements on both, e.g. "
            f"enhanced.sel(element={sorted(set(have) & set(want))}) and measured.sel(element=...)."
        )
    if have != want:
        enhanced = enhanced.sel(element=want)
    if kind == "series":
        a, b = np.asarray(enhanced.angle.values, float), np.asarray(measured.angle.values, float)
        if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
            raise LabelMismatchError(
                f"enhanced has {a.size} angles ({a[:4].tolist()}...) and measured {b.size} "
                f"({b[:4].tolist()}...); they must be the same projections: select matching angles, "
                "e.g. enhanced.sel(angle=measured.angle)."
            )
    return enhanced


def _axis_grid(enhanced: xr.DataArray, measured: xr.DataArray, dim: str) -> tuple[int, int, int, int]:
    """``(ratio, first LR pixel, end LR pixel, first fine pixel)`` of the common footprint along ``dim``."""
    axis = 0 if dim == "y" else 1
    step = float(measured.attrs["step_nm"][axis])
    lr_origin = float(measured[dim].values[0])
    grid = coord_grid(enhanced, dim, name="enhanced", purpose="the consistency check needs its grid")
    origin, pixel = grid or (float(enhanced[dim].values[0]), float(enhanced.attrs["step_nm"][axis]))
    ratio = step / pixel
    r = round(ratio)
    if r < 1 or abs(ratio - r) > 1e-3 * ratio:
        raise GridMismatchError(
            f"the enhanced pixel along {dim} is {pixel:g} nm and the measured step {step:g} nm: their ratio "
            f"{ratio:.4g} is not an integer. The enhanced map must be on a grid an integer number of times "
            "finer than the scan (enhance() makes step/scale); resample it onto such a grid."
        )
    edge = (lr_origin - step / 2 - (origin - pixel / 2)) / pixel  # fine index where LR pixel 0 starts
    j0 = round(edge)
    if abs(edge - j0) > GRID_ATOL_PX:
        raise GridMismatchError(
            f"the enhanced pixels do not tile the scan pixels along {dim}: LR pixel 0 starts at "
            f"{lr_origin - step / 2:g} nm, {abs(edge - j0):.3g} of a fine pixel from the nearest fine "
            f"pixel edge. Fine pixel centres must lie at measured.{dim}[0] - step/2 + pixel/2 + k*pixel "
            f"(the grid enhance() makes); fix the {dim} coordinate if it was shifted or mislabelled."
        )
    n_lr, n_fine = measured.sizes[dim], enhanced.sizes[dim]
    k0, k1 = max(0, -(j0 // r)), min(n_lr, (n_fine - j0) // r)
    if k1 <= k0:
        raise GridMismatchError(
            f"the enhanced map ({origin - pixel / 2:g} to {origin + pixel * (n_fine - 0.5):g} nm along {dim}) "
            f"covers no whole pixel of the measured scan ({lr_origin - step / 2:g} to "
            f"{lr_origin + step * (n_lr - 0.5):g} nm); compare data of the same region."
        )
    return r, k0, k1, j0 + k0 * r


def pair_up(enhanced: xr.DataArray, measured: xr.DataArray, probe: Any) -> Pair:
    enhanced, measured = validate(enhanced), validate(measured)
    enhanced = _check_labels(enhanced, measured)
    probe = as_probe(probe, measured, name="measured", purpose="the forward model of the check")
    ratio, crop, lr_sel, fine_sel = [], {}, {}, {}
    for dim in ("y", "x"):
        r, k0, k1, j0 = _axis_grid(enhanced, measured, dim)
        ratio.append(r)
        lr_sel[dim], fine_sel[dim] = slice(k0, k1), slice(j0, j0 + (k1 - k0) * r)
        crop[dim] = [k0, k1]
    step = (float(measured.attrs["step_nm"][0]), float(measured.attrs["step_nm"][1]))
    operator = ScanOperator.from_scan(probe, step_nm=step, ratio=(ratio[0], ratio[1]),
                                      scan_mode=measured.attrs["scan_mode"], fast_axis=measured.attrs["fast_axis"])
    if str(measured.attrs.get("units", "counts")) != "counts":
        warnings.warn(
            f"measured units are {measured.attrs.get('units')!r}, not 'counts': the Poisson deviance and "
            "likelihood assume raw counts per scan point; normalised data (counts/s, per I0) give "
            "deviances on another scale.", XrfsrWarning, stacklevel=3,
        )
    return Pair(enhanced.isel(fine_sel), measured.isel(lr_sel), operator, probe, crop)


def _lr_chunks(lr: xr.DataArray, halo: int) -> tuple[tuple[int, ...], ...]:
    """Dask chunks of the LR data: its own (or the store defaults), spatial ones at least ``halo``."""
    if isinstance(lr.data, dsa.Array):
        chunks = list(lr.data.chunks)
    else:
        chunks = [dsa.core.normalize_chunks(DEFAULT_CHUNKS[str(d)], (n,))[0]
                  for d, n in zip(lr.dims, lr.shape, strict=True)]
    for axis in (-2, -1):
        if len(chunks[axis]) > 1:
            total = sum(chunks[axis])
            chunks[axis] = (total,) if total < 2 * halo else ensure_minimum_chunksize(max(halo, 1), chunks[axis])
    return tuple(tuple(c) for c in chunks)


def _as_dask(data: Any, chunks: tuple[tuple[int, ...], ...]) -> dsa.Array:
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(data, chunks=chunks, asarray=library(data) == "numpy")
    return data.rechunk(chunks)


@dataclass(frozen=True, eq=False)
class Chunked:
    """Both arrays as dask, chunked alike (fine chunks ``r`` times the LR ones), and with halos."""

    fine: dsa.Array
    lr: dsa.Array
    fine_halo: dsa.Array
    lr_halo: dsa.Array
    depth: tuple[int, int]


def overlapped(pair: Pair, halo: int) -> Chunked:
    chunks = _lr_chunks(pair.lr, halo)
    ry, rx = pair.operator.ratio
    lr = _as_dask(pair.lr.data, chunks)
    fine_chunks = (*chunks[:-2], tuple(c * ry for c in chunks[-2]), tuple(c * rx for c in chunks[-1]))
    fine = _as_dask(pair.fine.data, fine_chunks)
    nd = lr.ndim
    # No overlap along an axis that is one chunk: there is no neighbour to borrow from.
    depth = (halo if lr.numblocks[-2] > 1 else 0, halo if lr.numblocks[-1] > 1 else 0)
    lr_halo = dsa.overlap.overlap(lr, depth={nd - 2: depth[0], nd - 1: depth[1]}, boundary="none")
    fine_halo = dsa.overlap.overlap(fine, depth={nd - 2: depth[0] * ry, nd - 1: depth[1] * rx}, boundary="none")
    return Chunked(fine, lr, fine_halo, lr_halo, depth)


def own_window(depth: tuple[int, int], block_id: tuple[int, ...], nblocks: tuple[int, ...],
               shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The ``(y, x)`` slices of a block of ``shape`` that are its own: the halo (``depth`` pixels per side)
    left out on the sides that have a neighbour."""
    cut = []
    for i, axis in enumerate((-2, -1)):
        lo = depth[i] if block_id[axis] > 0 else 0
        hi = depth[i] if block_id[axis] < nblocks[i] - 1 else 0
        cut.append(slice(lo, shape[axis] - hi))
    return cut[0], cut[1]


def trim(block: Any, depth: tuple[int, int], block_id: tuple[int, ...], nblocks: tuple[int, ...]) -> Any:
    """Cut the halo (``depth`` pixels per side) from the sides of a block that have a neighbour."""
    return block[(..., *own_window(depth, block_id, nblocks, block.shape))]


def meta_like(data: Any, dtype: Any) -> Any:
    xp = array_module(getattr(data, "_meta", data))
    return xp.empty((0,) * data.ndim, dtype=dtype)


def probe_record(probe: Any) -> dict[str, Any]:
    return {"probe_fwhm_nm": list(probe.fwhm_pair_nm), "probe_angle_deg": float(getattr(probe, "angle_deg", 0.0)),
            "probe": type(probe).__name__}


def resolve_halo(halo: int | None, default: int, *, minimum: int, what: str) -> int:
    if halo is None:
        return default
    if not (isinstance(halo, int | np.integer) and halo >= minimum):
        raise ValueError(
            f"halo must be an integer >= {minimum} LR pixels for {what} (the kernel's reach: less would make "
            f"chunk seams show); got {halo!r}. Leave it out for the default ({default})."
        )
    return int(halo)
