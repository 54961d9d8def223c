"""Tomographic reconstruction of projection series, lazily, over chunks of sinogram rows.

Parallel-beam slices are independent, so the series ``(element, angle, y,
x)`` is cut into blocks of rows ``y`` (all angles and detector pixels of one
element) and each dask task reconstructs one block of slices. The graph
runs on the threaded scheduler or on any ``distributed`` cluster; tasks
that run on a GPU carry the ``{"GPU": 1}`` resource annotation.
"""

from __future__ import annotations

from typing import Any, Literal, Unpack

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from xrfsr_dask import _backend
from xrfsr_dask._grid import coord_grid
from xrfsr_dask.errors import NonFiniteCountsError
from xrfsr_dask.io.reading import open_xrf
from xrfsr_dask.io.writing import WriteOptions, WriteSummary, save, write_options
from xrfsr_dask.schema import add_provenance, validate
from xrfsr_dask.tomo import _backends
from xrfsr_dask.tomo._backends import Algorithm, BackendName
from xrfsr_dask.tomo._filters import FILTERS, FilterName
from xrfsr_dask.tomo._geometry import check_center, pixel_positions
from xrfsr_dask.tomo.center import RotationCenter, find_center

__all__ = ["DEFAULT_ITERATIONS", "reconstruct", "reconstruct_to_zarr"]

DEFAULT_ITERATIONS = {"sirt": 100, "mlem": 50, "cgls": 20}
"""Iterations of the iterative algorithms when none are given."""

BLOCK_BYTES = 16 * 2**20
"""Target size of one task's sinogram block (float32)."""


def _check_block(block: np.ndarray, *, elements: np.ndarray, angles: np.ndarray, rows: np.ndarray) -> None:
    """Refuse NaN, and a projection without counts in rows where the others have them."""
    bad = ~np.isfinite(block)
    if bad.any():
        _, row, angle, column = np.nonzero(bad)
        raise NonFiniteCountsError(
            f"projections of element {elements[0]!r} have {int(bad.sum())} NaN or infinite "
            f"pixels, e.g. angle {angles[angle[0]]:.6g} deg, y = {rows[row[0]]:.6g} nm, detector "
            f"pixel {column[0]}. Fill them first: xrfsr_dask.tomo.normalize(series, nan='interpolate')."
        )
    totals = block[0].sum(axis=(0, 2))
    if totals.max() > 0 and (empty := np.flatnonzero(totals == 0)).size:
        raise ValueError(
            f"projections of element {elements[0]!r} at angles {angles[empty][:5].round(3).tolist()} deg "
            f"are all zero over y = {rows[0]:.6g} to {rows[-1]:.6g} nm, where the other angles record "
            f"{totals.mean():.4g} counts on average: the same slices are seen at every angle, so "
            "these are missing frames. Drop them: series.drop_sel(angle=[...])."
        )


def _block(
    block: np.ndarray,
    *,
    block_info: dict[Any, Any],
    elements: np.ndarray,
    rows: np.ndarray,
    angles: np.ndarray,
    options: dict[str, Any],
) -> np.ndarray:
    location = block_info[0]["array-location"]
    _check_block(
        block,
        elements=elements[slice(*location[0])],
        angles=angles,
        rows=rows[slice(*location[1])],
    )
    slices = _backends.run(options["backend"], block[0], **{k: v for k, v in options.items() if k != "backend"})
    return slices[None]


def _center_pixels(center: float | RotationCenter | None, n_det: int) -> float:
    if center is None:
        return (n_det - 1) / 2
    if isinstance(center, RotationCenter):
        center = center.pixel
    return check_center(center, n_det)


def reconstruct(
    projections: xr.DataArray,
    *,
    algorithm: Algorithm = "fbp",
    backend: BackendName = "auto",
    center: float | RotationCenter | None = None,
    iterations: int | None = None,
    filter_name: FilterName = "shepp-logan",
    slices_per_chunk: int | None = None,
    device: str = "auto",
    angle_convention: Literal["xrfsr", "tomopy"] = "xrfsr",
) -> xr.DataArray:
    """Reconstruct every element's volume from a projection series, lazily.

    Parameters
    ----------
    projections
        Series ``(element, angle, y, x)``, NumPy or dask backed; the rotation
        axis is parallel to ``y``. Counts should be normalised by the incident
        flux (:func:`~xrfsr_dask.tomo.normalize`) and aligned
        (:func:`~xrfsr_dask.tomo.align`) first.
    algorithm
        ``"fbp"`` (filtered back-projection, gridrec class with the ``nufft``
        backend), ``"sirt"``, ``"mlem"`` (maximum likelihood for Poisson
        counts) or ``"cgls"`` (ASTRA only).
    backend
        ``"nufft"`` (FINUFFT / cuFINUFFT), ``"astra"``, ``"torch"``,
        ``"tomopy"`` (where TomoPy is installed: gridrec for ``"fbp"``, its
        SIRT and MLEM; its offset and scale calibrated onto this grid), or
        ``"auto"``: the fastest installed backend that has
        ``algorithm`` (:func:`~xrfsr_dask.tomo.available_backends` lists them).
    center
        Detector position of the rotation axis in pixels (0-based, may be
        fractional), or the :class:`~xrfsr_dask.tomo.RotationCenter` that
        :func:`~xrfsr_dask.tomo.find_center` returns. Default: the middle of
        the detector, ``(nx - 1) / 2``.
    iterations
        For the iterative algorithms; default :data:`DEFAULT_ITERATIONS`.
    filter_name
        FBP filter: ``"ramp"``, ``"shepp-logan"``, ``"cosine"``,
        ``"hamming"`` or ``"hann"``.
    slices_per_chunk
        Rows ``y`` per task; default about 16 MiB of sinogram per task.
    device
        ``"auto"`` (the GPU when torch sees one), ``"cpu"``, ``"cuda"`` or
        ``"cuda:N"``; resolved and checked on this machine before anything
        runs. CUDA tasks carry the ``GPU`` resource.
    angle_convention
        How the series' ``angle`` turns: ``"xrfsr"`` (this library's
        :func:`~xrfsr_dask.tomo.project`, ``t = x cos θ + y sin θ``) or
        ``"tomopy"``, the opposite sense, which TomoPy, scikit-image's
        ``radon``/``iradon`` and ASTRA share (``t = x cos θ - y sin θ``): a
        series that those reconstruct upright comes out upright with it,
        and mirrored in ``y`` without it. See the tomography guide.

    Returns
    -------
    xarray.DataArray
        Lazy float32 volume ``(element, z, y, x)`` in the units of the
        projections per voxel (counts per projection pixel become counts per
        voxel). ``z`` is the projections' ``y``; ``y`` and ``x`` share one
        grid of ``nx`` voxels centred on the rotation axis, in the
        projections' ``x`` coordinates, so with the axis at the detector's
        middle ``x`` equals the projections' ``x``. Provenance records the
        algorithm, the backend that ran, the centre (pixels and nm) and the
        iterations.

    Notes
    -----
    Geometry: a voxel at ``(y, x)`` relative to the axis is seen at detector
    position ``x cos(theta) + y sin(theta)`` (that of
    :func:`xrfsr_dask.tomo.project`). Negative counts are kept by FBP
    and SIRT's data term and clipped to 0 by MLEM, whose Poisson model has
    no negative counts.

    Examples
    --------
    >>> from xrfsr_dask import nmc_volume, project
    >>> from xrfsr_dask.tomo import reconstruct
    >>> series = project(nmc_volume(shape=(8, 48, 48), seed=1), angles=range(0, 180, 4))
    >>> volume = reconstruct(series, algorithm="fbp")
    >>> volume.dims
    ('element', 'z', 'y', 'x')
    """
    validate(projections, "series", caller="reconstruct")
    if filter_name not in FILTERS:
        raise ValueError(f"filter_name={filter_name!r} is not one of {FILTERS}.")
    if algorithm not in _backends.ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r} is not one of {_backends.ALGORITHMS}.")
    if algorithm == "fbp" and iterations is not None:
        raise ValueError("iterations applies to 'sirt', 'mlem' and 'cgls'; filtered back-projection has none.")
    if algorithm != "fbp":
        iterations = DEFAULT_ITERATIONS[algorithm] if iterations is None else int(iterations)
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1; got {iterations}.")
    if angle_convention not in ("xrfsr", "tomopy"):
        raise ValueError(
            f"angle_convention={angle_convention!r} is not 'xrfsr' or 'tomopy'; use 'tomopy' for angles "
            "recorded in the sense of TomoPy, scikit-image and ASTRA (the opposite of xrfsr_dask.tomo.project)."
        )
    device = _backend.resolve_device(device)
    name = _backends.choose(backend, algorithm, device)
    _, n_angles, n_rows, n_det = projections.shape
    if n_angles < 2:
        raise ValueError(f"a reconstruction needs projections at 2 or more angles; got {n_angles}.")
    pixel = _center_pixels(center, n_det)
    x_grid = coord_grid(projections, "x", name="projections", purpose="reconstruction needs positions") or (0.0, 1.0)
    if slices_per_chunk is None:
        slices_per_chunk = max(2, BLOCK_BYTES // (4 * n_angles * n_det))
    slices_per_chunk = int(min(slices_per_chunk, n_rows))
    if slices_per_chunk < 1:
        raise ValueError(f"slices_per_chunk must be at least 1; got {slices_per_chunk}.")

    data = projections.data
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(np.asarray(data), chunks=-1)
    sinograms = data.transpose(0, 2, 1, 3).rechunk((1, slices_per_chunk, -1, -1))
    theta = np.asarray(projections.angle.values, dtype=np.float64) * (-1.0 if angle_convention == "tomopy" else 1.0)
    options = {
        "backend": name,
        "theta_deg": theta,
        "center": pixel,
        "n": n_det,
        "algorithm": algorithm,
        "iterations": iterations or 0,
        "filter_name": filter_name,
        "device": device,
    }
    with dask.annotate(**_backend.gpu_annotations(device)):
        volume = sinograms.map_blocks(
            _block,
            elements=np.asarray(projections.element.values),
            angles=np.asarray(projections.angle.values, dtype=np.float64),
            rows=np.asarray(projections.y.values, dtype=np.float64),
            options=options,
            chunks=(sinograms.chunks[0], sinograms.chunks[1], (n_det,), (n_det,)),
            dtype=np.float32,
            meta=np.empty((0, 0, 0, 0), np.float32),
            token=f"reconstruct-{algorithm}-{name}",
        )

    x0, step = x_grid
    positions = x0 + step * (pixel + pixel_positions(n_det))
    z_step = coord_grid(projections, "y", name="projections", purpose="reconstruction needs positions")
    units = {"units": "nm"}
    out = xr.DataArray(
        volume,
        dims=("element", "z", "y", "x"),
        coords={
            "element": projections.element,
            "z": ("z", np.asarray(projections.y.values, dtype=np.float64), units),
            "y": ("y", positions, units),
            "x": ("x", positions, units),
        },
        name=projections.name,
        attrs={
            "voxel_nm": [z_step[1] if z_step else step, step, step],
            "units": projections.attrs.get("units", "counts"),
            "provenance": list(projections.attrs.get("provenance", [])),
        },
    )
    parameters = {
        "algorithm": algorithm,
        "backend": name,
        "device": device,
        "center_pixel": pixel,
        "center_nm": x0 + step * pixel,
        "iterations": iterations,
        "filter_name": filter_name if algorithm == "fbp" else None,
        "n_angles": n_angles,
        "angle_convention": angle_convention,
    }
    return add_provenance(out, "xrfsr_dask.tomo.reconstruct", parameters)


def reconstruct_to_zarr(
    source: str | xr.DataArray,
    destination: str,
    *,
    algorithm: Algorithm = "fbp",
    backend: BackendName = "auto",
    center: float | RotationCenter | Literal["find"] | None = None,
    iterations: int | None = None,
    filter_name: FilterName = "shepp-logan",
    slices_per_chunk: int | None = None,
    device: str = "auto",
    angle_convention: Literal["xrfsr", "tomopy"] = "xrfsr",
    **write: Unpack[WriteOptions],
) -> WriteSummary:
    """Reconstruct a series store (or lazy DataArray) into a volume zarr v3 store, block by block.

    Each block of slices is written as soon as it is reconstructed; the store
    is marked complete only when all have landed, and ``resume=True``
    reconstructs only the blocks that are missing.

    Parameters
    ----------
    source
        URL or path of an xrfsr_dask series store, or a series DataArray.
    destination
        URL or path of the new volume store.
    center
        As for :func:`reconstruct`, or ``"find"`` to run
        :func:`~xrfsr_dask.tomo.find_center` first.
    algorithm, backend, iterations, filter_name, slices_per_chunk, device, angle_convention
        As for :func:`reconstruct`.
    write
        The writer options (:class:`~xrfsr_dask.io.WriteOptions`):
        ``overwrite`` or ``resume`` an existing destination,
        ``storage_options`` (fsspec options for both stores) and ``progress``.

    Returns
    -------
    xrfsr_dask.io.WriteSummary
        Chunks in the store, written now, and skipped as already present.
    """
    write = write_options("reconstruct_to_zarr", write)
    storage_options = write.get("storage_options")
    series = source if isinstance(source, xr.DataArray) else open_xrf(source, storage_options=storage_options)
    if isinstance(center, str):
        if center != "find":
            raise ValueError(f"center={center!r}: give pixels, a RotationCenter, 'find' or None.")
        center = find_center(series)
    volume = reconstruct(
        series, algorithm=algorithm, backend=backend, center=center, iterations=iterations,
        filter_name=filter_name, slices_per_chunk=slices_per_chunk, device=device,
        angle_convention=angle_convention,
    )
    chunks = {str(d): c[0] for d, c in zip(volume.dims, volume.data.chunks, strict=True)}
    return save(volume, destination, chunks=chunks, **write)
