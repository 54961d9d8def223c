"""OME-Zarr (NGFF 0.5) multiscale export of XRF data, and reading the pyramid back as labeled data.

:func:`to_ome_zarr` writes maps, series or volumes as an NGFF 0.5 image
(zarr v3) that napari, neuroglancer, vizarr and webKnossos open lazily, also
from S3::

    particle.ome.zarr/
      zarr.json      group: attributes "ome" (NGFF) and "xrfsr_dask" (labels, scan, provenance)
      0/             level 0: the counts as they are, dims ("c", ["angle" | "z"], "y", "x")
      1/             level 1: 2 x 2 (volumes 2 x 2 x 2) pixels binned
      ...

The NGFF metadata carry one ``channel`` axis (one channel per element,
named in ``omero.channels[].label``), a custom ``angle`` axis for a
tomography series (in degrees when the angles are evenly spaced), and
``space`` axes in nanometres; each level's ``scale`` and ``translation``
come from the nm coordinates, so a viewer places every level on the sample.
The ``xrfsr_dask`` attribute keeps what NGFF has no field for: element
lines and energies, the exact angles, the scan description and the
provenance, so :func:`open_pyramid` returns each level as data of the
library's data model.

Downsampling keeps the counts: a pixel of level ``k`` holds the sum of the
``2**k`` x ``2**k`` level-0 pixels it covers (``downsample="sum"``), so each
level is what a scan with a ``2**k`` times coarser step would have counted,
Poisson statistics included. ``downsample="mean"`` divides those sums by
the number of level-0 pixels per bin: counts per level-0 pixel at every
level, which is what a viewer that applies one contrast range to all levels
shows best. Either way the total over a level equals the total over level 0.
NaN pixels (and the padding of an odd edge) count as nothing; a bin with no
finite pixel is NaN.

Writes follow :func:`~xrfsr_dask.io.save`: one writer at a time, every
chunk zstd-compressed and CRC-32C checked, the store marked complete only
after its last chunk (of every level) has landed, and ``resume=True``
writing only what an interrupted export left missing or torn.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any, Literal, Unpack

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from xrfsr_dask import _progress
from xrfsr_dask._version import __version__
from xrfsr_dask.errors import (
    IncompleteStoreError,
    SchemaError,
    SourceNotFoundError,
    StoreExistsError,
    StoreMismatchError,
    StoreWriteError,
    XrfsrError,
)
from xrfsr_dask.io._lock import writer_lock
from xrfsr_dask.io._zarr import (
    MARKER,
    VERIFY_BATCH,
    ZSTD_LEVEL,
    fs_of,
    location,
    metadata_errors,
    now,
    resolve_chunks,
    written_chunks,
)
from xrfsr_dask.io.writing import WriteOptions, WriteSummary, write_options
from xrfsr_dask.schema import ANGLE_UNITS, add_provenance, kind_of, validate

__all__ = ["NGFF_VERSION", "describe_pyramid", "level_for_view", "open_ome_zarr", "open_pyramid", "to_ome_zarr"]

NGFF_VERSION = "0.5"
FORMAT = "ome-zarr"
"""Value of ``attrs["xrfsr_dask"]["format"]`` that marks an export of :func:`to_ome_zarr`."""
_COLORS = ("FF0000", "00FF00", "0000FF", "FF00FF", "00FFFF", "FFFF00", "FF8000", "FFFFFF")
_AXIS_NAME = {"element": "c"}


def _binned_dims(kind: str) -> tuple[str, ...]:
    return ("z", "y", "x") if kind == "volume" else ("y", "x")


def _spacing_key(kind: str) -> str:
    return "voxel_nm" if kind == "volume" else "step_nm"


def _angle_grid(angles: np.ndarray) -> tuple[float, float] | None:
    """``(first, step)`` in degrees when the angles are evenly spaced (two or more), else None."""
    if angles.size < 2:
        return None
    steps = np.diff(angles)
    if not np.allclose(steps, steps[0], rtol=1e-6, atol=1e-9):
        return None
    return float(angles[0]), float(steps[0])


def _level_count(shape: Mapping[str, int], chunks: Mapping[str, int], binned: tuple[str, ...],
                 levels: int | None) -> int:
    """Levels to write: ``levels``, or enough that the coarsest fits one chunk along every binned dim."""
    if levels is None:
        return 1 + max(max(0, math.ceil(math.log2(shape[d] / chunks[d]))) for d in binned)
    if isinstance(levels, bool) or not isinstance(levels, int | np.integer) or levels < 1:
        raise ValueError(f"levels = {levels!r}; give a whole number >= 1 (1: level 0 only), or None for enough "
                         "levels that the coarsest fits one chunk.")
    useful = 1 + max(math.ceil(math.log2(shape[d])) for d in binned)
    if levels > useful:
        raise ValueError(
            f"levels = {levels} but the data reach one pixel along {binned} at level {useful - 1}; "
            f"pass levels <= {useful} (or None)."
        )
    return int(levels)


def _sizes(data: xr.DataArray) -> dict[str, int]:
    return {str(d): int(n) for d, n in data.sizes.items()}


def _resolve_shards(data: xr.DataArray, chunks: Mapping[str, int],
                    shards: Mapping[str, int] | None) -> dict[str, int] | None:
    """Shard size per dim (a whole number of chunks; unnamed dims: one chunk), or None without sharding."""
    if shards is None:
        return None
    sizes = _sizes(data)
    unknown = sorted(set(shards) - set(sizes))
    if unknown:
        raise ValueError(f"shards names dims {unknown} that the data does not have; its dims are {data.dims}.")
    out = {}
    for dim, n in sizes.items():
        size = int(shards.get(dim, chunks[dim]))
        if size == -1:
            size = -(-n // chunks[dim]) * chunks[dim]
        if size < 1 or size % chunks[dim]:
            raise ValueError(
                f"shards[{dim!r}] = {size} is not a whole number of chunks ({chunks[dim]} along {dim!r}); "
                f"give a multiple of the chunk size, e.g. {chunks[dim] * 8}."
            )
        out[dim] = size
    return out


def _plan(sizes: Mapping[str, int], kind: str, chunks: Mapping[str, int], shards: Mapping[str, int] | None,
          n_levels: int) -> list[dict[str, Any]]:
    """Per level: path, bin factor per dim, shape, chunk shape and write (shard or chunk) shape."""
    binned = _binned_dims(kind)
    plan = []
    for k in range(n_levels):
        factor = {d: 2**k if d in binned else 1 for d in sizes}
        shape = {d: -(-sizes[d] // factor[d]) for d in sizes}
        chunk = {d: min(chunks[d], shape[d]) for d in sizes}
        write = chunk if shards is None else {d: min(shards[d], -(-shape[d] // chunk[d]) * chunk[d]) for d in sizes}
        plan.append({
            "path": str(k),
            "factor": [factor[d] for d in sizes],
            "shape": [shape[d] for d in sizes],
            "chunks": [chunk[d] for d in sizes],
            "write": [write[d] for d in sizes],
        })
    return plan


def _bin_sum(block: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """Sums of 2 pixels along each of ``axes`` (even lengths), in float64, of the finite values.

    A bin with no finite pixel is NaN. Pairs are added as two strided halves,
    axis after axis (an order of magnitude faster than summing a reshaped
    array over its length-2 axes).
    """
    values = block.astype(np.float64)
    finite = np.isfinite(values)
    all_finite = bool(finite.all())
    if not all_finite:
        values = np.where(finite, values, 0.0)
    for axis in axes:
        even = tuple(slice(0, None, 2) if i == axis else slice(None) for i in range(block.ndim))
        odd = tuple(slice(1, None, 2) if i == axis else slice(None) for i in range(block.ndim))
        values = values[even] + values[odd]
        if not all_finite:
            finite = finite[even] | finite[odd]
    if not all_finite:
        values[~finite] = np.nan
    return values.astype(block.dtype)


def _bin2(level: dsa.Array, axes: tuple[int, ...]) -> dsa.Array:
    """The next level: 2 pixels binned along each of ``axes``; an odd edge is padded with NaN (nothing)."""
    pad = [(0, level.shape[i] % 2 if i in axes else 0) for i in range(level.ndim)]
    if any(after for _, after in pad):
        level = dsa.pad(level, pad, mode="constant", constant_values=np.nan)
    level = level.rechunk({i: 2 * -(-max(level.chunks[i]) // 2) for i in axes})  # even blocks
    chunks = tuple(tuple(c // 2 for c in level.chunks[i]) if i in axes else level.chunks[i]
                   for i in range(level.ndim))
    return dsa.map_blocks(_bin_sum, level, axes, chunks=chunks, dtype=level.dtype)


def _pyramid(source: dsa.Array, plan: list[dict[str, Any]], axes: tuple[int, ...],
             downsample: str) -> list[dsa.Array]:
    """The levels as lazy arrays in their write blocks; each level is binned from the one before."""
    sums = [source.rechunk(tuple(plan[0]["write"]))]
    for step in plan[1:]:
        sums.append(_bin2(sums[-1], axes).rechunk(tuple(step["write"])))
    if downsample == "sum":
        return sums
    return [level / np.prod(step["factor"]).astype(level.dtype) for level, step in zip(sums, plan, strict=True)]


def _transforms(data: xr.DataArray, kind: str, factor: list[int]) -> list[dict[str, Any]]:
    """NGFF ``scale`` and ``translation`` of a level: bin centres in nm (the angle axis in degrees)."""
    scale, translation = [], []
    for dim, f in zip(data.dims, factor, strict=True):
        if dim == "element":
            s, t = 1.0, 0.0
        elif dim == "angle":
            grid = _angle_grid(np.asarray(data.angle.values, dtype=np.float64))
            t, s = grid if grid is not None else (0.0, 1.0)
        else:
            values = np.asarray(data[dim].values, dtype=np.float64)
            step = float(data.attrs[_spacing_key(kind)][_binned_dims(kind).index(dim)])
            s, t = step * f, float(values[0]) + (f - 1) / 2 * step
        scale.append(s)
        translation.append(t)
    return [{"type": "scale", "scale": scale}, {"type": "translation", "translation": translation}]


def _axes(data: xr.DataArray) -> list[dict[str, Any]]:
    axes: list[dict[str, Any]] = []
    for dim in data.dims:
        if dim == "element":
            axes.append({"name": "c", "type": "channel"})
        elif dim == "angle":
            uniform = _angle_grid(np.asarray(data.angle.values, dtype=np.float64)) is not None
            axes.append({"name": "angle", "type": "angle", **({"unit": "degree"} if uniform else {})})
        else:
            axes.append({"name": dim, "type": "space", "unit": "nanometer"})
    return axes


def _json_coord(values: Any) -> list[Any]:
    out = []
    for v in np.asarray(values).tolist():
        out.append(None if isinstance(v, float) and not math.isfinite(v) else v)
    return out


def _labels(data: xr.DataArray) -> dict[str, Any]:
    """What NGFF has no field for: element labels, exact angles and origin, the data's attributes."""
    labels: dict[str, Any] = {
        "dims": list(data.dims),
        "element": [str(e) for e in data.element.values],
        "origin_nm": {d: float(data[d].values[0]) for d in data.dims if d in ("z", "y", "x")},
        "attrs": dict(data.attrs),
    }
    for name in ("line", "energy_kev"):
        if name in data.coords:
            labels[name] = _json_coord(data.coords[name].values)
    if "angle" in data.dims:
        labels["angle_deg"] = [float(a) for a in data.angle.values]
    return labels


def _layout(data: xr.DataArray, plan: list[dict[str, Any]], downsample: str, sharded: bool) -> dict[str, Any]:
    """What a resumed export must match: dims, dtype, levels, chunking, downsampling."""
    return {
        "dims": list(data.dims),
        "shape": list(data.shape),
        "dtype": str(data.dtype),
        "levels": len(plan),
        "chunks": plan[0]["chunks"],
        "write": plan[0]["write"],
        "sharded": sharded,
        "downsample": downsample,
    }


def _multiscale(data: xr.DataArray, kind: str, plan: list[dict[str, Any]], downsample: str,
                name: str) -> dict[str, Any]:
    return {
        "name": name,
        "axes": _axes(data),
        "datasets": [{"path": step["path"], "coordinateTransformations": _transforms(data, kind, step["factor"])}
                     for step in plan],
        "type": downsample,
        "metadata": {
            "description": (
                "each level bins 2 pixels of the one before along every space axis; "
                + ("a pixel holds the sum of the counts it covers" if downsample == "sum" else
                   "a pixel holds the counts it covers divided by the level-0 pixels it covers")
            ),
            "method": "xrfsr_dask.io.to_ome_zarr",
            "version": __version__,
        },
    }


def to_ome_zarr(
    data: xr.DataArray,
    url: str,
    *,
    levels: int | None = None,
    chunks: Mapping[str, int] | None = None,
    shards: Mapping[str, int] | None = None,
    downsample: Literal["sum", "mean"] = "sum",
    name: str | None = None,
    **write: Unpack[WriteOptions],
) -> WriteSummary:
    """Write XRF data as an OME-Zarr (NGFF 0.5) multiscale image, level by level and chunk by chunk.

    Parameters
    ----------
    data
        Maps, series or volume of the data model (validated first); NumPy or
        dask backed. Dask data is read once: every level is binned from the
        level before it in the same pass.
    url
        Local path or fsspec URL (``file://``, ``s3://bucket/key.ome.zarr``,
        ``memory://``) of the new store.
    levels
        Number of levels, level 0 included. By default enough that the
        coarsest level fits one chunk along ``y`` and ``x`` (and ``z``).
    chunks
        Chunk size per dim, as for :func:`~xrfsr_dask.io.save` (default:
        one element, one angle, 256 x 256 pixels, 32 slices); every level
        uses it, clipped to its size.
    shards
        Shard size per dim (zarr v3 sharding): a whole number of chunks,
        e.g. ``{"y": 2048, "x": 2048}``. Each shard is one object holding
        many chunks, which object stores (S3) serve far better than many
        small objects; viewers still read chunk by chunk. Unnamed dims: one
        chunk. ``-1``: the whole axis.
    downsample
        ``"sum"`` (default): a pixel of level ``k`` holds the counts of the
        ``2**k`` (volumes: per axis) level-0 pixels it covers. ``"mean"``:
        those counts divided by the number of level-0 pixels in the bin.
    name
        Name of the image in the NGFF metadata; default: the element names.
    write
        The writer options (:class:`~xrfsr_dask.io.WriteOptions`):
        ``overwrite`` an existing store (refused without it); ``resume`` an
        interrupted export of the same data with the same options, computing
        and writing only the chunks (shards) not present, or torn;
        ``storage_options`` for fsspec (for S3: ``key``, ``secret``,
        ``endpoint_url``, ...); ``progress`` (default True).

    Returns
    -------
    WriteSummary
        Chunks (shards, when sharded) of all levels in the store, written
        now, and skipped as already present.

    Raises
    ------
    StoreExistsError
        ``url`` holds a store (or a non-empty folder) and neither
        ``overwrite`` nor ``resume`` was given.
    IncompleteStoreError
        ``url`` holds an unfinished export and neither flag was given.
    StoreMismatchError
        ``resume`` into a store that is not an unfinished export of the same
        data with the same levels, chunks and downsampling.
    StoreLockedError
        Another job is writing ``url``.
    StoreWriteError
        The storage refused a write for good; the store stays incomplete.

    Notes
    -----
    Each level's ``coordinateTransformations`` put pixel centres where the
    data's nm coordinates do: level ``k`` has scale ``step * 2**k`` and
    translation ``origin + (2**k - 1) / 2 * step`` along each binned axis.
    The element axis is NGFF's ``channel`` axis (named ``c``), the angle of
    a series a custom axis ``angle`` (type ``"angle"``; in degrees when the
    angles are evenly spaced, otherwise by index with the angles in the
    ``xrfsr_dask`` attribute). ``omero.channels`` name each channel by its
    element, with a display window (0.1 and 99.9 percentiles of the coarsest
    level, in counts per level-0 pixel).

    Examples
    --------
    >>> import numpy as np, xrfsr_dask as xs
    >>> maps = xs.xrf_maps(np.ones((2, 600, 500)), elements=["Ni_K", "Co_K"], step_nm=50)
    >>> summary = xs.to_ome_zarr(maps, "memory://doc/maps.ome.zarr", progress=False)
    >>> [level.shape for level in xs.open_pyramid("memory://doc/maps.ome.zarr")]
    [(2, 600, 500), (2, 300, 250), (2, 150, 125)]
    """
    write = write_options("to_ome_zarr", write)
    overwrite, resume, progress = write.get("overwrite", False), write.get("resume", False), write.get("progress", True)
    data = validate(data)
    kind = kind_of(data)
    if downsample not in ("sum", "mean"):
        raise ValueError(f"downsample = {downsample!r}; expected 'sum' (counts per bin) or 'mean' "
                         "(counts per level-0 pixel).")
    chunk_map = resolve_chunks(data, chunks)
    shard_map = _resolve_shards(data, chunk_map, shards)
    n_levels = _level_count(_sizes(data), chunk_map, _binned_dims(kind), levels)
    plan = _plan(_sizes(data), kind, chunk_map, shard_map, n_levels)
    url, storage_options = location(url, write.get("storage_options"))
    fs, root = fs_of(url, storage_options)
    export = add_provenance(data, "xrfsr_dask.io.to_ome_zarr", {
        "url": url, "levels": n_levels, "chunks": chunk_map, "shards": shard_map, "downsample": downsample,
    })
    layout = _layout(data, plan, downsample, shard_map is not None)
    with writer_lock(fs, root, url, now()):
        try:
            return _export_locked(export, kind, url, fs, root, plan, layout, name, overwrite, resume,
                                  storage_options, progress)
        except OSError as err:
            if isinstance(err, XrfsrError):
                raise
            raise StoreWriteError(
                f"exporting to {url} failed: {type(err).__name__}: {err} (reading the input or writing the "
                "store). The store stays marked incomplete: fix the cause (permissions, quota, network) and "
                "re-run with resume=True (--resume)."
            ) from err


def _attributes(group: zarr.Group) -> dict[str, Any]:
    """A group's attributes as plain JSON values."""
    return dict(group.attrs)


def _root_attrs(url: str, fs: Any, root: str, storage_options: dict[str, Any] | None) -> dict[str, Any] | None:
    """The root group's attributes, or None where there is no zarr group."""
    if not fs.exists(f"{root.rstrip('/')}/zarr.json"):
        return None
    with metadata_errors(url):
        return _attributes(zarr.open_group(url, mode="r", storage_options=storage_options))


def _export_locked(data: xr.DataArray, kind: str, url: str, fs: Any, root: str, plan: list[dict[str, Any]],
                   layout: dict[str, Any], name: str | None, overwrite: bool, resume: bool,
                   storage_options: dict[str, Any] | None, progress: bool) -> WriteSummary:
    """:func:`to_ome_zarr` once this job holds the store's writer marker."""
    attrs = _root_attrs(url, fs, root, storage_options)
    found = (attrs or {}).get(MARKER)
    marker: dict[str, Any] = dict(found) if isinstance(found, Mapping) else {}
    ours = marker.get("format") == FORMAT
    if attrs is not None and resume:
        if not ours:
            raise StoreMismatchError(
                f"cannot resume {url}: it is not an OME-Zarr export of xrfsr_dask. Choose another destination, "
                "or pass overwrite=True (--overwrite) to replace it."
            )
        _check_resumable(marker, layout, _labels(data), url)
        if marker.get("complete"):
            total = sum(int(np.prod(_grid(step))) for step in plan)
            return WriteSummary(url, total, 0, total)
        done = _intact(url, fs, root, plan, storage_options, progress)
    elif attrs is not None and not overwrite:
        if ours and not marker.get("complete"):
            raise IncompleteStoreError(
                f"{url} holds an unfinished OME-Zarr export. Pass resume=True (xrfsr export ... --resume) to "
                "finish it from the same data, or overwrite=True (--overwrite) to start over."
            )
        raise StoreExistsError(
            f"{url} already exists; pass overwrite=True (--overwrite) to replace it, or choose another destination."
        )
    else:
        if fs.exists(root):
            if not overwrite and fs.ls(root):
                raise StoreExistsError(
                    f"{url} exists and is not a zarr store; refusing to write into it. "
                    "Choose another destination or pass overwrite=True to replace it."
                )
            fs.rm(root, recursive=True)
        _create(data, kind, url, plan, layout, name, storage_options)
        done = set()
    return _fill(data, kind, url, fs, root, plan, layout["downsample"], done, storage_options, progress)


def _check_resumable(marker: Mapping[str, Any], layout: dict[str, Any], labels: dict[str, Any], url: str) -> None:
    for key, want in layout.items():
        have = marker.get("layout", {}).get(key)
        if have != want:
            raise StoreMismatchError(
                f"cannot resume {url}: its {key} is {have} but this export's is {want}. Resume with the same "
                "data and options, or pass overwrite=True (--overwrite) to start over."
            )
    stored = marker.get("labels", {})
    pairs = [(key, stored.get(key), labels.get(key)) for key in ("element", "angle_deg", "origin_nm")]
    # the pixel size: the levels' scales in the NGFF metadata were written from it
    pairs += [(key, stored.get("attrs", {}).get(key), labels["attrs"].get(key)) for key in ("step_nm", "voxel_nm")]
    for key, have, want in pairs:
        if have != want:
            raise StoreMismatchError(
                f"cannot resume {url}: its {key} ({have}) differs from the data's ({want}). "
                "Resume with the same data, or pass overwrite=True (--overwrite) to start over."
            )


def _create(data: xr.DataArray, kind: str, url: str, plan: list[dict[str, Any]], layout: dict[str, Any],
            name: str | None, storage_options: dict[str, Any] | None) -> None:
    """The group with its NGFF metadata and empty level arrays, marked incomplete."""
    labels = _labels(data)
    marker = {"complete": False, "format": FORMAT, "version": __version__, "kind": kind, "started": now(),
              "layout": layout, "labels": labels}
    ome = {"version": NGFF_VERSION, "multiscales": [
        _multiscale(data, kind, plan, layout["downsample"], name or ", ".join(labels["element"]))
    ]}
    attributes: dict[str, Any] = {"ome": ome, MARKER: marker}
    group = zarr.open_group(url, mode="w-", zarr_format=3, storage_options=storage_options, attributes=attributes)
    names = [_AXIS_NAME.get(str(d), str(d)) for d in data.dims]
    for step in plan:
        group.create_array(
            step["path"], shape=tuple(step["shape"]), dtype=data.dtype, chunks=tuple(step["chunks"]),
            shards=tuple(step["write"]) if layout["sharded"] else None,
            compressors=(ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec()), fill_value=np.nan, dimension_names=names,
        )


def _grid(step: Mapping[str, Any]) -> tuple[int, ...]:
    return tuple(-(-n // w) for n, w in zip(step["shape"], step["write"], strict=True))


def _region(index: tuple[int, ...], write: list[int]) -> tuple[slice, ...]:
    return tuple(slice(i * w, (i + 1) * w) for i, w in zip(index, write, strict=True))


def _torn(url: str, storage_options: dict[str, Any] | None, path: str, write: list[int],
          indices: list[tuple[int, ...]]) -> list[tuple[str, tuple[int, ...]]]:
    """Those of ``indices`` (one level) whose chunk or shard fails to read (checksum, truncated frame)."""
    array = zarr.open_array(url, path=path, mode="r", storage_options=storage_options)
    bad = []
    for index in indices:
        try:
            array[_region(index, write)]
        except (ValueError, RuntimeError):
            bad.append((path, index))
    return bad


def _intact(url: str, fs: Any, root: str, plan: list[dict[str, Any]], storage_options: dict[str, Any] | None,
            progress: bool) -> set[tuple[str, tuple[int, ...]]]:
    """The chunks of an unfinished export that read back intact; torn ones are deleted."""
    check = dask.delayed(_torn, pure=False)
    present, tasks = {}, []
    for step in plan:
        found = sorted(written_chunks(fs, root, step["path"]))
        present[step["path"]] = found
        tasks += [check(url, storage_options, step["path"], step["write"], found[i:i + VERIFY_BATCH])
                  for i in range(0, len(found), VERIFY_BATCH)]
    torn = {bad for found in _progress.compute(tasks, progress=progress, description=f"checking {url}")
            for bad in found}
    for path, index in torn:
        fs.rm(f"{root.rstrip('/')}/{path}/c/" + "/".join(map(str, index)))
    return {(path, index) for path, found in present.items() for index in found if (path, index) not in torn}


def _write_block(block: np.ndarray, *, array: zarr.Array, region: tuple[slice, ...]) -> int:
    array[region] = np.asarray(block)
    return 1


def _window(level: np.ndarray, area: int) -> dict[str, float]:
    """A display window of one channel in counts per level-0 pixel: range and 0.1 / 99.9 percentiles."""
    values = level[np.isfinite(level)] / area
    if values.size == 0:
        return {"min": 0.0, "max": 0.0, "start": 0.0, "end": 0.0}
    low, high = np.percentile(values, [0.1, 99.9])
    return {"min": float(values.min()), "max": float(values.max()), "start": float(low), "end": float(high)}


def _omero(url: str, step: Mapping[str, Any], downsample: str, elements: list[str],
           storage_options: dict[str, Any] | None) -> dict[str, Any]:
    coarsest = np.asarray(zarr.open_array(url, path=step["path"], mode="r", storage_options=storage_options)[...])
    area = int(np.prod(step["factor"])) if downsample == "sum" else 1
    channels = []
    for i, element in enumerate(elements):
        channels.append({"label": element, "color": _COLORS[i % len(_COLORS)], "active": True,
                         "window": _window(np.asarray(coarsest[i]), area)})
    return {"channels": channels, "rdefs": {"model": "color"}}


def _fill(data: xr.DataArray, kind: str, url: str, fs: Any, root: str, plan: list[dict[str, Any]], downsample: str,
          done: set[tuple[str, tuple[int, ...]]], storage_options: dict[str, Any] | None,
          progress: bool) -> WriteSummary:
    source = data.data if isinstance(data.data, dsa.Array) else dsa.from_array(data.data, chunks=plan[0]["write"])
    axes = tuple(data.dims.index(d) for d in _binned_dims(kind))
    tasks, total = [], 0
    for step, level in zip(plan, _pyramid(source, plan, axes, downsample), strict=True):
        # Every chunk is written, even an all-NaN one, so that the keys present are the chunks done.
        array = zarr.open_array(url, path=step["path"], mode="r+", storage_options=storage_options).with_config(
            {"write_empty_chunks": True}
        )
        write = dask.delayed(functools.partial(_write_block, array=array), pure=False)
        # Unoptimised, so that the levels share the tasks of the blocks they are binned from:
        # an optimised graph fuses those into each consumer, which would read the source once per level.
        blocks = level.to_delayed(optimize_graph=False)
        total += blocks.size
        for index in np.ndindex(blocks.shape):
            if (step["path"], index) not in done:
                tasks.append(write(blocks[index], region=_region(index, step["write"])))
    _progress.compute(tasks, progress=progress, description=f"exporting {url}")
    present = sum(len(written_chunks(fs, root, step["path"])) for step in plan)
    if present != total:
        raise IncompleteStoreError(
            f"{url}: {present} of {total} chunks present after writing; the export stays marked incomplete. "
            "Re-run with resume=True (--resume)."
        )
    group = zarr.open_group(url, mode="r+", storage_options=storage_options)
    attrs = _attributes(group)
    marker, ome = dict(attrs[MARKER]), dict(attrs["ome"])
    ome["omero"] = _omero(url, plan[-1], downsample, marker["labels"]["element"], storage_options)
    marker.update(complete=True, finished=now())
    group.attrs.update({"ome": ome, MARKER: marker})
    return WriteSummary(url, total, len(tasks), total - len(tasks))


def _level_array(url: str, step: Mapping[str, Any], labels: Mapping[str, Any], kind: str,
                 dataset: Mapping[str, Any], downsample: str, level: int,
                 storage_options: dict[str, Any] | None) -> xr.DataArray:
    array = zarr.open_array(url, path=step["path"], mode="r", storage_options=storage_options)
    dims = tuple(labels["dims"])
    lazy = dsa.from_array(array, chunks=tuple(array.shards or array.chunks),
                          name=f"ome-{dask.base.tokenize(url, step['path'], array.metadata.to_dict())}")
    scale, translation = (t[key] for t, key in zip(dataset["coordinateTransformations"], ("scale", "translation"),
                                                    strict=True))
    coords: dict[str, Any] = {"element": ("element", np.array(labels["element"], dtype=object))}
    if "line" in labels:
        coords["line"] = ("element", np.array(labels["line"], dtype=object), {"long_name": "emission line"})
    if "energy_kev" in labels:
        energy = np.array([np.nan if e is None else e for e in labels["energy_kev"]], dtype=np.float64)
        coords["energy_kev"] = ("element", energy, {"long_name": "emission energy", "units": "keV"})
    if "angle_deg" in labels:
        coords["angle"] = ("angle", np.array(labels["angle_deg"], dtype=np.float64),
                           {"units": ANGLE_UNITS, "long_name": "rotation angle"})
    for i, dim in enumerate(dims):
        if dim in _binned_dims(kind):
            values = translation[i] + scale[i] * np.arange(array.shape[i], dtype=np.float64)
            coords[dim] = (dim, values, {"units": "nm", "long_name": f"{dim} position"})
    attrs = dict(labels["attrs"])
    factor = step["factor"]
    binned = [f for d, f in zip(dims, factor, strict=True) if d in _binned_dims(kind)]
    attrs[_spacing_key(kind)] = [s * f for s, f in zip(attrs[_spacing_key(kind)], binned, strict=True)]
    area = int(np.prod(binned))
    if downsample == "sum" and kind != "volume" and attrs.get("dwell_s") is not None:
        attrs["dwell_s"] = attrs["dwell_s"] * area  # a bin integrates its pixels' dwell times
    if downsample == "mean" and area > 1:
        attrs["units"] = f"{attrs['units']} per level-0 pixel"
    out = xr.DataArray(lazy, dims=dims, coords=coords, name="counts", attrs=attrs)
    return add_provenance(out, "xrfsr_dask.io.open_pyramid", {"url": url, "level": level,
                                                              "bin": factor, "downsample": downsample})


def open_pyramid(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> list[xr.DataArray]:
    """Every level of an OME-Zarr export as lazy, labeled data, finest first.

    Parameters
    ----------
    url
        Local path or fsspec URL of a store written by :func:`to_ome_zarr`.
    storage_options
        Passed to fsspec.

    Returns
    -------
    list of xarray.DataArray
        One per level, dask-backed (only metadata is read here), each of the
        data model: nm coordinates at the level's bin centres, ``step_nm``
        (or ``voxel_nm``) times the bin, elements and angles as exported,
        and a provenance record naming the level.

    Raises
    ------
    SourceNotFoundError
        No zarr store at ``url``.
    IncompleteStoreError
        The export did not finish (re-run it with ``resume=True``).
    SchemaError
        The store is not an OME-Zarr export of xrfsr_dask (a plain store:
        :func:`~xrfsr_dask.io.open_xrf`; another tool's OME-Zarr: ome-zarr-py
        or napari-ome-zarr).
    """
    url, storage_options = location(url, storage_options)
    fs, root = fs_of(url, storage_options)
    attrs = _root_attrs(url, fs, root, storage_options)
    if attrs is None:
        raise SourceNotFoundError(
            f"no zarr store at {url} (no zarr.json there); check the path or URL and, for s3://, the storage "
            "options (endpoint, credentials)."
        )
    marker = attrs.get(MARKER)
    if not isinstance(marker, Mapping) or marker.get("format") != FORMAT:
        hint = ("it is a store of xrfsr_dask.save: open it with open_xrf, or export it with to_ome_zarr"
                if isinstance(marker, Mapping) else
                "it was written by another tool: read it with ome-zarr-py or napari-ome-zarr")
        raise SchemaError(f"{url} is not an OME-Zarr export of xrfsr_dask ({hint}).")
    if not marker.get("complete"):
        raise IncompleteStoreError(
            f"{url} is an unfinished OME-Zarr export: finish it by re-running the export with --resume "
            "(to_ome_zarr(..., resume=True))."
        )
    with metadata_errors(url):
        multiscale = attrs["ome"]["multiscales"][0]
        labels, layout = marker["labels"], marker["layout"]
        plan = _plan_from(layout, marker["kind"])
        out = [
            _level_array(url, step, labels, marker["kind"], dataset, layout["downsample"], k, storage_options)
            for k, (step, dataset) in enumerate(zip(plan, multiscale["datasets"], strict=True))
        ]
    try:
        return [validate(level) for level in out]
    except SchemaError as err:
        raise SchemaError(f"{url}: {err}") from err


def _plan_from(layout: Mapping[str, Any], kind: str) -> list[dict[str, Any]]:
    """The level plan of an export from its recorded layout."""
    dims = layout["dims"]
    chunks = dict(zip(dims, layout["chunks"], strict=True))
    shards = dict(zip(dims, layout["write"], strict=True)) if layout["sharded"] else None
    return _plan(dict(zip(dims, layout["shape"], strict=True)), kind, chunks, shards, layout["levels"])


def describe_pyramid(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What an OME-Zarr export holds, from its metadata and chunk keys: levels, elements, completeness.

    Unlike :func:`open_pyramid` it also describes an unfinished export.

    Returns
    -------
    dict
        JSON-ready: ``url``, ``format``, ``status``, ``kind``, ``dims``,
        ``downsample``, ``elements``, ``levels`` (per level: ``level``,
        ``shape``, ``spacing_nm`` per binned dim, ``chunks``, ``shards``
        or None, ``chunks_written`` and ``chunks_total``, counted in shards
        when sharded) and the operations in ``provenance``.

    Raises
    ------
    SourceNotFoundError
        No zarr store at ``url``.
    SchemaError
        The store is not an OME-Zarr export of xrfsr_dask.
    """
    url, storage_options = location(url, storage_options)
    fs, root = fs_of(url, storage_options)
    attrs = _root_attrs(url, fs, root, storage_options)
    if attrs is None:
        raise SourceNotFoundError(f"no zarr store at {url} (no zarr.json there); check the path or URL.")
    marker = attrs.get(MARKER)
    if not isinstance(marker, Mapping) or marker.get("format") != FORMAT:
        raise SchemaError(f"{url} is not an OME-Zarr export of xrfsr_dask; describe a store with describe().")
    with metadata_errors(url):
        layout, labels, kind = marker["layout"], marker["labels"], marker["kind"]
        datasets = attrs["ome"]["multiscales"][0]["datasets"]
        levels = []
        for k, (step, dataset) in enumerate(zip(_plan_from(layout, kind), datasets, strict=True)):
            scale = dataset["coordinateTransformations"][0]["scale"]
            levels.append({
                "level": k,
                "shape": step["shape"],
                "spacing_nm": {d: float(v) for d, v in zip(layout["dims"], scale, strict=True)
                               if d in _binned_dims(kind)},
                "chunks": step["chunks"],
                "shards": step["write"] if layout["sharded"] else None,
                "chunks_written": len(written_chunks(fs, root, step["path"])),
                "chunks_total": int(np.prod(_grid(step))),
            })
        written, total = sum(lv["chunks_written"] for lv in levels), sum(lv["chunks_total"] for lv in levels)
        state = "complete" if marker.get("complete") else "INCOMPLETE"
        return {
            "url": url,
            "format": f"OME-Zarr (NGFF {attrs['ome']['version']})",
            "status": f"{state} ({written} of {total} chunks written)",
            "kind": kind,
            "dims": layout["dims"],
            "downsample": layout["downsample"],
            "elements": labels["element"],
            "levels": levels,
            "provenance": [p["operation"] for p in labels["attrs"]["provenance"]],
        }


def open_ome_zarr(
    url: str,
    *,
    level: int = 0,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """One level of an OME-Zarr export as lazy, labeled data (see :func:`open_pyramid`).

    Parameters
    ----------
    url
        Local path or fsspec URL of a store written by :func:`to_ome_zarr`.
    level
        0 for the data as exported, ``k`` for ``2**k`` binning; negative
        values count from the coarsest (``-1``).
    storage_options
        Passed to fsspec.

    Returns
    -------
    xarray.DataArray
        Dask-backed.
    """
    pyramid = open_pyramid(url, storage_options=storage_options)
    if not -len(pyramid) <= level < len(pyramid):
        raise ValueError(f"level = {level} but {url} has levels 0 to {len(pyramid) - 1}.")
    return pyramid[level]


def level_for_view(
    pyramid: list[xr.DataArray],
    *,
    screen_px: int = 1024,
    y: slice | None = None,
    x: slice | None = None,
) -> int:
    """The coarsest level that still shows a region with at least one pixel per screen pixel.

    Parameters
    ----------
    pyramid
        Levels from :func:`open_pyramid`, finest first.
    screen_px
        Pixels the view has along its longer side.
    y, x
        The region in nm (``slice(start, stop)``); the whole extent when
        omitted.

    Returns
    -------
    int
        Index into ``pyramid``: level 0 when even it has fewer pixels across
        the region than the view.

    Examples
    --------
    For a 16384 x 16384 map, a 1024-pixel view of the whole map is level 4
    (1024 x 1024 pixels); a view of one 4096-pixel-wide quarter is level 2.
    """
    if screen_px < 1:
        raise ValueError(f"screen_px = {screen_px}; give the view's size in pixels (>= 1).")
    base = pyramid[0]
    spans = []
    for dim, region, step in zip(("y", "x"), (y, x), base.attrs[_spacing_key(kind_of(base))][-2:], strict=True):
        coord = np.asarray(base[dim].values, dtype=np.float64)
        start = coord[0] - step / 2 if region is None or region.start is None else float(region.start)
        stop = coord[-1] + step / 2 if region is None or region.stop is None else float(region.stop)
        spans.append(abs(stop - start))
    chosen = 0
    for k, level in enumerate(pyramid):
        step = level.attrs[_spacing_key(kind_of(level))][-2:]
        if max(span / s for span, s in zip(spans, step, strict=True)) >= screen_px:
            chosen = k
    return chosen
