"""Chunkwise overlapping RDN inference on lazy labeled data, and region writes to zarr.

:func:`enhance` turns a lazy ``(element, [angle,] y, x)`` DataArray into a
lazy DataArray on the grid ``scale`` times finer. Each dask chunk is
enhanced with ``halo`` LR pixels borrowed from its neighbours on every side
(none past the image border) and the ``scale·halo`` border of its output is
cut away, so chunk seams do not show: with a halo that covers the network's
effective reach, the stitched result equals whole-image inference.

Every map is normalised by one scale, the model card's quantile of the
whole map, computed lazily beside the graph (exactly for maps up to
:data:`EXACT_QUANTILE_PIXELS` pixels, from a regular subsample above), so
all chunks of a map see the same normalisation.

Workers load the model once: a model given by name or path is loaded
through a per-process cache the first time a task needs it. Tasks that run
on a GPU carry the dask resource annotation ``{"GPU": 1}``, so a cluster
schedules them on workers started with ``--resources GPU=1`` (dask-cuda's
``LocalCUDACluster`` workers, or see :mod:`xrfsr_dask.cluster`).

:func:`enhance_to_zarr` writes the result with :func:`xrfsr_dask.io.save`:
chunk by chunk as they finish, marked complete only at the end; with
``resume=True`` only the chunks missing from the store are computed.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from typing import Any, Literal, Unpack

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from dask.array.overlap import ensure_minimum_chunksize

from xrfsr_dask import _backend
from xrfsr_dask._grid import coord_grid
from xrfsr_dask.errors import XrfsrWarning
from xrfsr_dask.io._zarr import DEFAULT_CHUNKS
from xrfsr_dask.io.reading import open_xrf
from xrfsr_dask.io.writing import WriteOptions, WriteSummary, save, write_options
from xrfsr_dask.model import DEFAULT_MODELS, RDN, load_model, map_scale, model_serves
from xrfsr_dask.model.infer import check_options, run_maps, warn_if_small
from xrfsr_dask.schema import add_provenance, kind_of, validate

__all__ = ["EXACT_QUANTILE_PIXELS", "enhance", "enhance_to_zarr"]

EXACT_QUANTILE_PIXELS = 16_777_216
"""Maps up to this many pixels (4096²) are normalised by their exact quantile."""


@functools.lru_cache(maxsize=4)
def _cached_model(spec: str) -> Any:
    return load_model(spec)


def _model(model: Any, kind: str) -> tuple[Any, Any, str]:
    """``(network, what tasks carry, how it was chosen)``.

    A name or path travels as text and is loaded once per worker. With
    ``model=None`` the bundled default for the data's kind
    (:data:`~xrfsr_dask.model.DEFAULT_MODELS`) is chosen; a named model
    whose card says it was trained for another kind of data warns.
    """
    choice = "given"
    if model is None:
        model, choice = DEFAULT_MODELS[kind], f"default for {kind}"
    spec: Any
    if isinstance(model, RDN):
        net, spec = model, model
    elif isinstance(model, (str, os.PathLike)):
        spec = os.fspath(model)
        net = _cached_model(spec)
    else:
        raise TypeError(f"model must be None, a bundled name, a path/URL or an RDN; got {type(model).__name__}.")
    serves = model_serves(net.card)
    if choice == "given" and serves is not None and kind not in serves:
        warnings.warn(
            f"the model {net.card.get('name', spec)!r} was trained for {' and '.join(serves)}, but this is a {kind}: "
            f"{'projections through a thick sample' if kind == 'series' else 'maps'} look different, and the "
            f"output may be worse than bicubic interpolation. Use model=None (the default for {kind}, "
            f"{DEFAULT_MODELS[kind]!r}) or a model trained with sample='mixed'.",
            XrfsrWarning, stacklevel=4,
        )
    return net, spec, choice


def _map_scales(data: dsa.Array, quantile: float) -> dsa.Array:
    """Lazy per-map normalisation scales, shape ``data.shape[:-2]``."""
    pixels = data.shape[-2] * data.shape[-1]
    stride = max(1, math.ceil(math.sqrt(pixels / EXACT_QUANTILE_PIXELS)))
    sample = data[..., ::stride, ::stride].rechunk({-2: -1, -1: -1})
    lead = "".join(chr(ord("a") + i) for i in range(data.ndim - 2))
    return dsa.blockwise(
        lambda block: map_scale(block, quantile), lead, sample, lead + "yx",
        concatenate=True, dtype=np.float64, meta=np.empty((0,) * (data.ndim - 2), np.float64),
    )


def _enhance_block(block: np.ndarray, scales: np.ndarray, *, spec: Any, depth: tuple[int, ...],
                   block_id: tuple[int, ...], nblocks: tuple[int, ...], **options: Any) -> np.ndarray:
    net = _cached_model(spec) if isinstance(spec, str) else spec
    out = run_maps(net, block, scale=scales[..., 0, 0], **options)
    s = net.config.scale
    cut = []
    for axis in (-2, -1):
        lo = depth[axis] * s if block_id[axis] > 0 else 0
        hi = depth[axis] * s if block_id[axis] < nblocks[axis] - 1 else 0
        cut.append(slice(lo, out.shape[axis] - hi))
    return out[..., cut[0], cut[1]]


def _check_chunks(data: dsa.Array, halo: int) -> dsa.Array:
    """Merge, with a warning, spatial chunks smaller than the halo into their neighbours.

    An axis shorter than the halo becomes one chunk (it has no neighbours to
    overlap with).
    """
    chunks = list(data.chunks)
    for axis, name in ((-2, "y"), (-1, "x")):
        sizes = data.chunks[axis]
        if len(sizes) == 1 or min(sizes) >= halo:
            continue
        merged = (sum(sizes),) if sum(sizes) < 2 * halo else ensure_minimum_chunksize(halo, sizes)
        warnings.warn(
            f"chunks along {name} ({sizes}) include some smaller than halo={halo}; merging them into "
            f"their neighbours ({merged}). Choose chunks of at least the halo to avoid the rechunk.",
            XrfsrWarning, stacklevel=3,
        )
        chunks[axis] = merged
    return data.rechunk(tuple(chunks)) if chunks != list(data.chunks) else data


def _hr_coord(lr: xr.DataArray, dim: str, scale: int) -> np.ndarray:
    """Centres of the output pixels along ``dim``: each LR pixel split into ``scale`` about its extent."""
    grid = coord_grid(lr, dim, name="counts", purpose="enhance places output pixels")
    origin, step = grid or (float(lr[dim].values[0]), float(lr.attrs["step_nm"][dim == "x"]))
    fine = step / scale
    return origin - step / 2 + fine / 2 + fine * np.arange(lr.sizes[dim] * scale)


def enhance(
    counts: xr.DataArray,
    model: Any = None,
    *,
    scale: int | None = None,
    halo: int = 16,
    tile: int = 512,
    batch_size: int = 8,
    device: str = "auto",
    precision: Literal["auto", "fp32", "bf16"] = "auto",
    nan: Literal["raise", "mask"] = "mask",
    refine: int | Literal["auto"] = 0,
    refine_weight: float = 1.0,
) -> xr.DataArray:
    """Enhance XRF maps or a projection series with an RDN, lazily and chunk by chunk.

    Parameters
    ----------
    counts
        Maps ``(element, y, x)`` or a series ``(element, angle, y, x)`` of
        the data model, NumPy or dask backed (NumPy is chunked like a store:
        one map, 256 x 256 pixels). Integer counts are cast to float32.
    model
        A bundled model's name, a path/URL of a ``.safetensors`` file, or an
        :class:`~xrfsr_dask.model.RDN`; ``None`` is the bundled default for
        the data's kind (:data:`~xrfsr_dask.model.DEFAULT_MODELS`: maps or
        series), recorded as ``model_choice`` in the provenance. A model
        whose card says it was trained for the other kind warns. Pass a
        name or path on a cluster: each worker then loads it once.
    scale
        The refinement you expect; refused if the model's differs (the
        model decides the scale, this only checks it).
    halo
        LR pixels of overlap on each side of a chunk (and of each tile
        inside it). The default 16 keeps the stitched result within 4e-7
        of the data range of whole-image inference for the bundled model
        (12: 1.1e-5);
        larger networks may need more (docs/enhance.md has the error
        against the halo, and ``benchmarks/enhance.py --model`` measures
        it for any model).
    tile
        Largest tile core in LR pixels inside a chunk. A chunk plus its halo
        that fits in one tile is one network call (the default for
        256 x 256 chunks).
    batch_size
        Tiles per network call inside a chunk.
    device
        Where the network runs: ``"auto"`` (CUDA if the worker has it),
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. CUDA is refused here, before
        any graph is built, unless this machine has that GPU or the current
        ``distributed`` client has GPU workers; its tasks carry the
        ``{"GPU": 1}`` resource annotation.
    precision
        ``"auto"``: bf16 autocast on CUDA, fp32 on the CPU; or ``"fp32"``,
        ``"bf16"``.
    nan
        ``"mask"`` (default): NaN pixels stay NaN in their output footprint
        and do not smear into their neighbours; ``"raise"``: NaN is an error.
    refine
        After the network, this many iterations of
        :func:`xrfsr_dask.consistency.refine`: the output moves toward the
        Poisson likelihood of ``counts`` under the scan their metadata
        describe (``probe_fwhm_nm`` must be known), staying near the
        network's output. 0 (default) skips it; ``"auto"`` stops each map
        where its deviance meets what Poisson noise alone gives (the
        discrepancy principle; never more than
        :data:`~xrfsr_dask.consistency.AUTO_MAX_ITERATIONS`), the setting
        docs/enhance.md measures and recommends.
    refine_weight
        ``λ`` of the refinement: how strongly it stays near the network's
        output (1 weighs the output like one more scan of the same dose).

    Returns
    -------
    xarray.DataArray
        Lazy float32 counts on the grid ``scale`` times finer: ``y``/``x``
        coordinates at ``step / scale``, ``step_nm`` updated, and a
        provenance record naming the model, its card checksum and the
        options.

    Raises
    ------
    SchemaError
        Not maps or a series of the data model (volumes are reconstructed,
        not enhanced).
    ValueError
        A negative halo, a tile or batch size below 1, or a ``scale`` the
        model does not have.
    DeviceError
        A malformed ``device``, or CUDA where there is none (see ``device``).
    NonFiniteCountsError
        NaN in the input with ``nan="raise"`` (when computed).
    """
    counts = validate(counts, ("maps", "series"), caller="enhance")
    kind = kind_of(counts)
    check_options(tile=tile, halo=halo, batch_size=batch_size, nan=nan, precision=precision)
    device = _backend.check_device(device)
    if refine != "auto" and not (isinstance(refine, int | np.integer) and not isinstance(refine, bool)
                                 and refine >= 0):
        raise ValueError(f"refine must be a whole number of iterations >= 0 (0: none) or 'auto' (stop each map "
                         f"where its deviance meets what Poisson noise alone gives); got {refine!r}.")
    if not (isinstance(refine_weight, int | float | np.floating) and refine_weight >= 0):
        raise ValueError(f"refine_weight must be a number >= 0 (math.inf keeps the network's output); "
                         f"got {refine_weight!r}.")
    if refine:
        from xrfsr_dask.consistency import refine as refine_output

        out = enhance(counts, model, scale=scale, halo=halo, tile=tile, batch_size=batch_size, device=device,
                      precision=precision, nan=nan)
        return refine_output(out, counts, iterations=refine, weight=refine_weight)
    net, spec, choice = _model(model, kind)
    s = net.config.scale
    if scale is not None and scale != s:
        raise ValueError(
            f"scale={scale} was requested but the model {net.card.get('name', '')!r} enhances by {s}; "
            "pick a model of that scale (xrfsr_dask.model.bundled_models()) or drop scale=."
        )
    data = counts.data
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(np.asarray(data), chunks=tuple(
            1 if d in ("element", "angle") else DEFAULT_CHUNKS[str(d)] for d in counts.dims))
    if data.dtype != np.float32:
        data = data.astype(np.float32)
    warn_if_small(net, data.shape, stacklevel=3)
    data = _check_chunks(data, halo)
    # No overlap along an axis that is one chunk: there is no neighbour to borrow from.
    depth = {data.ndim + axis: halo if data.numblocks[axis] > 1 else 0 for axis in (-2, -1)}
    trim = (depth[data.ndim - 2], depth[data.ndim - 1])
    quantile = net.card.get("normalisation", {}).get("quantile", 0.999)
    scales = _map_scales(data, quantile)
    overlapped = dsa.overlap.overlap(data, depth=depth, boundary="none")
    # One scale per map: the scales array is chunked like the leading dims.
    scales = scales.rechunk(data.chunks[:-2])
    out_chunks = (*data.chunks[:-2], tuple(c * s for c in data.chunks[-2]), tuple(c * s for c in data.chunks[-1]))
    with dask.annotate(**_backend.gpu_annotations(device)):
        result = dsa.map_blocks(
            _enhance_block, overlapped, scales[(..., None, None)], chunks=out_chunks, dtype=np.float32,
            meta=np.empty((0,) * data.ndim, np.float32), spec=spec, depth=trim,
            nblocks=data.numblocks[-2:], tile=tile, halo=halo, batch_size=batch_size, device=device,
            precision=precision, nan=nan,
        )
    coords = {k: v for k, v in counts.coords.items() if not {"y", "x"} & set(v.dims)}
    coords.update({d: (d, _hr_coord(counts, d, s), counts[d].attrs) for d in ("y", "x")})
    out = xr.DataArray(result, dims=counts.dims, coords=coords, name=counts.name)
    out.attrs = {**counts.attrs, "step_nm": [v / s for v in counts.attrs["step_nm"]]}
    card = net.card
    return add_provenance(out, "xrfsr_dask.enhance.enhance", {
        "model": card.get("name"), "model_choice": choice, "weights_sha256": card.get("weights_sha256"), "scale": s,
        "halo": halo, "tile": tile, "nan": nan, "normalisation": card.get("normalisation"),
    })


def enhance_to_zarr(
    source: str | xr.DataArray,
    destination: str,
    model: Any = None,
    *,
    scale: int | None = None,
    halo: int = 16,
    tile: int = 512,
    batch_size: int = 8,
    device: str = "auto",
    precision: Literal["auto", "fp32", "bf16"] = "auto",
    nan: Literal["raise", "mask"] = "mask",
    refine: int | Literal["auto"] = 0,
    refine_weight: float = 1.0,
    check: bool = False,
    **write: Unpack[WriteOptions],
) -> WriteSummary:
    """Enhance a store (or lazy DataArray) into a new zarr v3 store, chunk by chunk.

    With regular input chunks (all equal but the last), each output chunk
    is the enhancement of one input chunk (``scale`` times larger per side),
    written as soon as it is computed; irregular chunks are regrouped to the
    first chunk's size on writing. The destination is
    marked complete only after every chunk has landed; after an
    interruption, ``resume=True`` computes only the chunks that are missing
    and gives the same bytes as an uninterrupted run.

    Parameters
    ----------
    source
        URL or path of an xrfsr_dask store of maps or a series, or a
        DataArray.
    destination
        URL or path of the new store (``s3://...`` with ``storage_options``).
    model, scale, halo, tile, batch_size, device, precision, nan, refine, refine_weight
        As for :func:`enhance`.
    check
        Also write the data-consistency check of the result against the
        source (:func:`xrfsr_dask.consistency.consistency_to_zarr`) beside
        it, at :func:`~xrfsr_dask.consistency.consistency_url` of
        ``destination`` (``scan_hr.zarr`` → ``scan_hr.consistency.zarr``),
        replaced on every run.
    write
        The writer options (:class:`~xrfsr_dask.io.WriteOptions`):
        ``overwrite`` or ``resume`` an existing destination (its shape and
        chunks must match; the mismatch is named otherwise),
        ``storage_options`` (fsspec options for both stores, e.g. S3
        endpoint and keys) and ``progress``.

    Returns
    -------
    xrfsr_dask.io.WriteSummary
        Chunks in the store, written now, and skipped as already present.
    """
    write = write_options("enhance_to_zarr", write)
    storage_options = write.get("storage_options")
    counts = source if isinstance(source, xr.DataArray) else open_xrf(source, storage_options=storage_options)
    out = enhance(counts, model, scale=scale, halo=halo, tile=tile, batch_size=batch_size, device=device,
                  precision=precision, nan=nan, refine=refine, refine_weight=refine_weight)
    chunks = {str(d): c[0] for d, c in zip(out.dims, out.data.chunks, strict=True)}
    summary = save(out, destination, chunks=chunks, **write)
    if check:
        from xrfsr_dask.consistency import consistency_to_zarr, consistency_url

        consistency_to_zarr(destination, counts, consistency_url(destination), overwrite=True,
                            storage_options=storage_options)
    return summary
