"""zarr v3 stores at any fsspec URL: save, open, completeness, resume.

A store written by :func:`save` holds one array ``counts`` (and its
coordinates) and a marker in the root group's attributes::

    {"xrfsr_dask": {"complete": false, "version": ..., "started": ...}}

``complete`` turns true only after every chunk has landed and been counted,
so a store that a crash, a kill or a full disk interrupted never looks
finished. :func:`open_xrf` refuses such a store with
:class:`~xrfsr_dask.errors.IncompleteStoreError`; ``save(..., resume=True)``
checks the chunks already there (a kill can leave the one being written
torn), writes the missing and torn ones, and then marks the store complete.

Every chunk passes through a zstd compressor and a CRC-32C checksum codec,
so a corrupted chunk fails loudly on read instead of returning wrong counts:
reading it raises :class:`~xrfsr_dask.errors.CorruptChunkError` with its key.
One job writes a store at a time: :func:`save` holds a writer marker beside
the store while it writes, and a second writer is refused with
:class:`~xrfsr_dask.errors.StoreLockedError` (``xrfsr_dask.io._lock``).
:func:`verify` checks every chunk of a store and, with ``repair=True``,
deletes the bad ones and marks the store incomplete, so that re-running the
command that wrote it with ``--resume`` rewrites exactly those.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as dsa
import fsspec
import fsspec.implementations.local
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from xrfsr_dask import _progress
from xrfsr_dask._version import __version__
from xrfsr_dask.errors import (
    CorruptChunkError,
    IncompleteStoreError,
    SchemaError,
    SourceNotFoundError,
    StoreExistsError,
    StoreMetadataError,
    StoreMismatchError,
    StoreWriteError,
    XrfsrError,
)
from xrfsr_dask.io._lock import writer_lock
from xrfsr_dask.schema import NAME, kind_of, validate

__all__ = [
    "DEFAULT_CHUNKS",
    "StoreStatus",
    "VerifyReport",
    "WriteSummary",
    "describe",
    "open_xrf",
    "resolve_chunks",
    "save",
    "store_status",
    "verify",
]

MARKER = "xrfsr_dask"
VERIFY_BATCH = 64
"""Chunks checked per task by :func:`verify`."""
# Storage chunk per dim: one element x one angle x a square of pixels.
DEFAULT_CHUNKS: dict[str, int] = {"element": 1, "angle": 1, "z": 32, "y": 256, "x": 256}
ZSTD_LEVEL = 3


@dataclass(frozen=True)
class StoreStatus:
    """What a store at a URL holds, read from metadata only."""

    url: str
    exists: bool
    written_by_xrfsr: bool
    complete: bool | None
    chunks_written: int
    chunks_total: int

    def describe(self) -> str:
        """One line for messages and ``xrfsr info``."""
        if not self.exists:
            return "no zarr store"
        if not self.written_by_xrfsr:
            return "complete: unknown (not written by xrfsr_dask)"
        state = "complete" if self.complete else "INCOMPLETE"
        return f"{state} ({self.chunks_written} of {self.chunks_total} chunks written)"


@dataclass(frozen=True)
class WriteSummary:
    """What :func:`save` did."""

    url: str
    chunks_total: int
    chunks_written: int
    chunks_skipped: int


def _fs(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    return fsspec.core.url_to_fs(url, **dict(storage_options or {}))


def _location(url: str, storage_options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """Normalised ``(url, storage_options)``.

    ``file://`` URLs become plain paths (zarr's LocalStore creates parent
    folders) and empty storage options become None (zarr refuses options for
    a local path).
    """
    if url.startswith("file://"):
        url = fsspec.implementations.local.LocalFileSystem._strip_protocol(url)
    return url, dict(storage_options) if storage_options else None


def _chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-(-n // c) for n, c in zip(shape, chunks, strict=True))


def _written_chunks(fs: Any, root: str) -> set[tuple[int, ...]]:
    """Indices of the chunks of ``counts`` present in the store."""
    prefix = f"{root.rstrip('/')}/{NAME}/c/"
    keys = fs.find(prefix) if fs.exists(prefix.rstrip("/")) else []
    found = set()
    for key in keys:
        parts = key[len(prefix):].split("/")
        if all(p.isdigit() for p in parts):
            found.add(tuple(int(p) for p in parts))
    return found


def store_status(url: str, *, storage_options: Mapping[str, Any] | None = None) -> StoreStatus:
    """Completeness of the store at ``url``, from its metadata and chunk keys.

    Nothing but ``zarr.json`` documents and the key listing is read.

    Raises
    ------
    StoreMetadataError
        A ``zarr.json`` there cannot be parsed or describes no valid array.
    """
    url, storage_options = _location(url, storage_options)
    fs, root = _fs(url, storage_options)
    if not fs.exists(f"{root}/zarr.json"):
        return StoreStatus(url, False, False, None, 0, 0)
    with _metadata_errors(url):
        group = zarr.open_group(url, mode="r", storage_options=storage_options)
        marker = group.attrs.get(MARKER)
        array = group[NAME] if NAME in group else None
        total = 0 if array is None else int(np.prod(_chunk_grid(array.shape, array.chunks)))
    written = 0
    if array is not None:
        written = len(_written_chunks(fs, root))
    if not isinstance(marker, Mapping):
        return StoreStatus(url, True, False, None, written, total)
    return StoreStatus(url, True, True, bool(marker.get("complete")), written, total)


@contextlib.contextmanager
def _metadata_errors(url: str) -> Any:
    """Report a store whose metadata zarr or xarray cannot make sense of as :class:`StoreMetadataError`.

    Garbage or hand-edited ``zarr.json`` documents (bad JSON, an unknown dtype
    or codec, a shape that disagrees with the coordinates, missing dimension
    names) fail deep inside zarr or xarray with a bare ``ValueError``,
    ``TypeError`` or ``KeyError``; this names the store instead. The
    library's own errors pass through.
    """
    try:
        yield
    except XrfsrError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, ZeroDivisionError) as err:
        raise StoreMetadataError(
            f"{url}: its zarr metadata cannot be read ({type(err).__name__}: {err}). A zarr.json document "
            "there is damaged or was edited by hand; restore the store from a copy, or re-create it from its "
            "source with overwrite=True (--overwrite)."
        ) from err


def resolve_chunks(obj: xr.DataArray, chunks: Mapping[str, int] | None) -> dict[str, int]:
    """Storage chunk size per dim: ``chunks`` over :data:`DEFAULT_CHUNKS`.

    A size of ``-1`` means the whole axis; sizes are clipped to the axis.
    """
    chunks = dict(chunks or {})
    unknown = sorted(set(chunks) - set(obj.dims))
    if unknown:
        raise ValueError(
            f"chunks names dims {unknown} that the data does not have; its dims are {obj.dims}."
        )
    out = {}
    for dim, size in zip(obj.dims, obj.shape, strict=True):
        want = int(chunks.get(dim, DEFAULT_CHUNKS[dim]))
        if want == -1:
            want = size
        if want < 1:
            raise ValueError(f"chunks[{dim!r}] = {want}; chunk sizes must be >= 1 (or -1 for the whole axis).")
        out[dim] = max(1, min(want, size))
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_matches(existing: xr.DataArray, data: xr.DataArray, chunks: tuple[int, ...], url: str) -> None:
    """Refuse to resume into a store whose layout differs from ``data``."""
    stored_chunks = tuple(existing.encoding.get("chunks") or ())
    checks = [
        ("dims", existing.dims, data.dims),
        ("shape", existing.shape, data.shape),
        ("dtype", existing.dtype, data.dtype),
        ("chunks", stored_chunks, chunks),
    ]
    for name, have, want in checks:
        if have != want:
            raise StoreMismatchError(
                f"cannot resume {url}: its {name} is {have} but the data's is {want}. "
                "Resume with the same inputs and chunks, or pass overwrite=True (--overwrite) to start over."
            )
    for name in data.dims:
        if not np.array_equal(existing[name].values.astype(data[name].dtype), data[name].values):
            raise StoreMismatchError(
                f"cannot resume {url}: coordinate {name!r} differs from the data's. "
                "Resume with the same inputs, or pass overwrite=True (--overwrite) to start over."
            )


def _write_block(block: np.ndarray, *, array: zarr.Array, region: tuple[slice, ...]) -> int:
    array[region] = np.asarray(block)
    return 1


def save(
    data: xr.DataArray,
    url: str,
    *,
    chunks: Mapping[str, int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> WriteSummary:
    """Write XRF data to a zarr v3 store, chunk by chunk, marking it complete last.

    Parameters
    ----------
    data
        Maps, series or volume of the data model (validated first); NumPy or
        dask backed. Dask data is computed chunk by chunk as it is written.
    url
        Local path or fsspec URL (``file://``, ``s3://bucket/key.zarr``,
        ``memory://``).
    chunks
        Storage chunk size per dim (``-1``: whole axis); unnamed dims take
        :data:`DEFAULT_CHUNKS`. When resuming without ``chunks``, the store's
        own chunks are used.
    overwrite
        Replace an existing store. Without it an existing store is refused.
    resume
        Finish an incomplete store written earlier from the same data:
        only chunks not yet present are computed and written. A store that
        is already complete is left as it is.
    storage_options
        Passed to fsspec (for S3: ``key``, ``secret``, ``endpoint_url``, ...).
    progress
        Show a progress bar (``distributed.progress`` under a Client).

    Returns
    -------
    WriteSummary
        Chunks in the store, chunks written now, chunks skipped as present.

    Raises
    ------
    StoreExistsError
        ``url`` holds a store and neither ``overwrite`` nor ``resume`` was given.
    IncompleteStoreError
        ``url`` holds an unfinished write and neither flag was given.
    StoreMismatchError
        ``resume`` into a store whose shape, chunks or coordinates differ.
    StoreLockedError
        Another job is writing ``url`` (see :func:`~xrfsr_dask.io.unlock`).
    StoreWriteError
        The storage refused a write for good (permissions, quota, a network
        that stays down). Transient faults are retried with exponential
        backoff first, by botocore (up to 5 attempts by default; set
        ``storage_options={"config_kwargs": {"retries": {...}}}``) and by
        s3fs for dropped connections. The store stays marked incomplete.
    """
    data = validate(data)
    url, storage_options = _location(url, storage_options)
    if overwrite and resume:
        raise ValueError("pass overwrite=True or resume=True, not both.")
    chunk_map = resolve_chunks(data, chunks)
    chunk_shape = tuple(chunk_map[d] for d in data.dims)
    fs, root = _fs(url, storage_options)
    with writer_lock(fs, root, url, _now()):
        try:
            return _save_locked(data, url, chunks, chunk_shape, fs, root, overwrite, resume, storage_options,
                                progress)
        except OSError as err:
            if isinstance(err, XrfsrError):
                raise
            raise StoreWriteError(
                f"writing {url} failed: {type(err).__name__}: {err} (reading the input or writing the store). "
                "Transient faults (timeouts, dropped connections, 5xx) are retried with backoff by the storage "
                "layer before this; this one persisted. The store stays marked incomplete: fix the cause "
                "(permissions, quota, network) and re-run with resume=True (--resume)."
            ) from err


def _save_locked(
    data: xr.DataArray, url: str, chunks: Mapping[str, int] | None, chunk_shape: tuple[int, ...], fs: Any, root: str,
    overwrite: bool, resume: bool, storage_options: Mapping[str, Any] | None, progress: bool,
) -> WriteSummary:
    """:func:`save` once this job holds the store's writer marker."""
    try:
        status = store_status(url, storage_options=storage_options)
    except StoreMetadataError:
        if not overwrite or resume:
            raise
        status = StoreStatus(url, True, False, None, 0, 0)  # unreadable: replaced like any other store
    if status.exists and resume and status.written_by_xrfsr:
        with _metadata_errors(url):
            existing = xr.open_zarr(url, consolidated=False, storage_options=storage_options, chunks=None)[NAME]
            if chunks is None:  # resume with the chunks the store was created with
                chunk_shape = tuple(existing.encoding["chunks"])
        _check_matches(existing, data, chunk_shape, url)
        if status.complete:
            total = int(np.prod(_chunk_grid(data.shape, chunk_shape)))
            return WriteSummary(url, total, 0, total)
        done = _intact_chunks(url, storage_options, fs, root, progress)
    elif status.exists and not overwrite:
        if status.written_by_xrfsr and not status.complete:
            raise IncompleteStoreError(
                f"{url} holds an unfinished write ({status.describe()}). Pass resume=True "
                "(xrfsr ... --resume) to finish it from the same inputs, or overwrite=True "
                "(--overwrite) to start over."
            )
        raise StoreExistsError(
            f"{url} already exists ({status.describe()}); pass overwrite=True "
            "(--overwrite) to replace it, or choose another destination."
        )
    else:
        if fs.exists(root):
            if not overwrite and fs.ls(root):
                raise StoreExistsError(
                    f"{url} exists and is not a zarr store; refusing to write into it. "
                    "Choose another destination or pass overwrite=True to replace it."
                )
            fs.rm(root, recursive=True)
        _create(data, url, chunk_shape, storage_options)
        done = set()
    return _fill(data, url, chunk_shape, done, storage_options, progress)


def _intact_chunks(
    url: str, storage_options: Mapping[str, Any] | None, fs: Any, root: str, progress: bool
) -> set[tuple[int, ...]]:
    """The chunks of an unfinished store that read back intact; torn ones are deleted.

    A process killed while a chunk was being written to a file system can
    leave that chunk truncated (S3 writes whole objects, so there it cannot
    happen). Resuming checks every chunk present and writes the torn ones again.
    """
    present = sorted(_written_chunks(fs, root))
    check = dask.delayed(_check_batch, pure=False)
    tasks = [check(url, storage_options, present[i:i + VERIFY_BATCH]) for i in range(0, len(present), VERIFY_BATCH)]
    torn = {key for found in _progress.compute(tasks, progress=progress, description=f"checking {url}")
            for key, _ in found}
    for key in torn:
        fs.rm(f"{root.rstrip('/')}/{key}")
    return {index for index in present if _chunk_key(index) not in torn}


def _create(
    data: xr.DataArray, url: str, chunk_shape: tuple[int, ...], storage_options: Mapping[str, Any] | None
) -> None:
    """Write metadata and coordinates, with the store marked incomplete."""
    # The counts become a lazy placeholder that is never computed: only the
    # coordinates (in memory) are written here.
    placeholder = data.copy(data=dsa.empty(data.shape, chunks=chunk_shape, dtype=data.dtype))
    ds = _in_memory_coords(placeholder).to_dataset()
    ds.attrs = {MARKER: {"complete": False, "version": __version__, "kind": kind_of(data), "started": _now()}}
    encoding = {
        NAME: {
            "chunks": chunk_shape,
            "compressors": (ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec()),
        }
    }
    # compute=False writes metadata and coordinates only; the counts are
    # written block by block in _fill so that a resumed run can skip blocks.
    ds.to_zarr(
        url,
        mode="w-",
        compute=False,
        zarr_format=3,
        consolidated=False,
        encoding=encoding,
        storage_options=storage_options,
    )


def _fill(
    data: xr.DataArray,
    url: str,
    chunk_shape: tuple[int, ...],
    done: set[tuple[int, ...]],
    storage_options: Mapping[str, Any] | None,
    progress: bool,
) -> WriteSummary:
    # Every chunk is written, even one equal to the fill value (all NaN), so
    # that the chunk keys present are exactly the chunks done (for resume).
    array = zarr.open_array(url, path=NAME, mode="r+", storage_options=storage_options).with_config(
        {"write_empty_chunks": True}
    )
    source = data.data if isinstance(data.data, dsa.Array) else dsa.from_array(data.data, chunks=chunk_shape)
    blocks = source.rechunk(chunk_shape).to_delayed()
    # The array is bound in a partial: as a task argument dask would traverse
    # the zarr.Array dataclass field by field on every call.
    write = dask.delayed(functools.partial(_write_block, array=array), pure=False)
    tasks = []
    for index in np.ndindex(blocks.shape):
        if index in done:
            continue
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunk_shape, strict=True))
        tasks.append(write(blocks[index], region=region))
    _progress.compute(tasks, progress=progress, description=f"writing {url}")
    total = int(np.prod(blocks.shape))
    fs, root = _fs(url, storage_options)
    present = len(_written_chunks(fs, root))
    if present != total:
        raise IncompleteStoreError(
            f"{url}: {present} of {total} chunks present after writing; the store stays "
            "marked incomplete. Re-run with resume=True (--resume)."
        )
    group = zarr.open_group(url, mode="r+", storage_options=storage_options)
    marker = dict(group.attrs[MARKER])
    marker.update(complete=True, finished=_now())
    group.attrs[MARKER] = marker
    return WriteSummary(url, total, len(tasks), total - len(tasks))


def _chunk_key(index: tuple[int, ...]) -> str:
    return f"{NAME}/c/" + "/".join(str(i) for i in index)


def _chunk_error(array: zarr.Array, index: tuple[int, ...]) -> str | None:
    """Why the chunk at ``index`` cannot be read, or None when it reads."""
    try:
        array.get_block_selection(index)
    except (ValueError, RuntimeError) as err:  # the codecs' errors: checksum, zstd frame, size
        return f"{type(err).__name__}: {err}"
    return None


class _CheckedChunks:
    """The stored counts as an array for ``dask.array.from_array``, naming the chunk when a read fails.

    In a store marked complete every chunk was written, so a block that reads
    NaN (the fill value of an absent chunk) is checked for absent chunks: a
    chunk deleted or lost in a copy is an error, not a silent NaN region.
    """

    def __init__(self, array: zarr.Array, url: str, storage_options: Mapping[str, Any] | None, complete: bool) -> None:
        self.array, self.url, self.storage_options, self.complete = array, url, storage_options, complete
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, selection: tuple[slice, ...]) -> np.ndarray:
        try:
            block = self.array[selection]
        except (ValueError, RuntimeError) as err:
            bad = self._bad_chunks(selection)
            if not bad:  # every chunk reads now: a transient failure, not corruption
                raise
            listed = "; ".join(f"{key} ({reason})" for key, reason in bad)
            raise CorruptChunkError(
                f"{self.url}: corrupt chunk(s) {listed}. Run `xrfsr verify {self.url} --repair` (or "
                "verify(url, repair=True)) to remove them, then re-run the command that wrote the store "
                "with --resume to rewrite them."
            ) from err
        if self.complete and np.isnan(block).any():
            fs, root = _fs(self.url, self.storage_options)
            absent = [_chunk_key(i) for i in self._indices(selection) if not fs.exists(f"{root}/{_chunk_key(i)}")]
            if absent:
                raise CorruptChunkError(
                    f"{self.url}: chunk(s) {', '.join(absent)} are missing from a store marked complete (deleted, "
                    f"or lost in a copy). Run `xrfsr verify {self.url} --repair` (or verify(url, repair=True)) "
                    "to mark the store incomplete, then re-run the command that wrote it with --resume."
                )
        return block

    def _indices(self, selection: tuple[slice, ...]) -> Any:
        """Indices of the chunks that ``selection`` touches."""
        ranges = [
            range(sl.start // c, -(-sl.stop // c)) if isinstance(sl, slice) else range(sl // c, sl // c + 1)
            for sl, c in zip(selection, self.array.chunks, strict=True)
        ]
        return itertools.product(*ranges)

    def _bad_chunks(self, selection: tuple[slice, ...]) -> list[tuple[str, str]]:
        bad = []
        for index in self._indices(selection):
            reason = _chunk_error(self.array, index)
            if reason is not None:
                bad.append((_chunk_key(index), reason))
        return bad


def _checked(
    counts: xr.DataArray, url: str, storage_options: Mapping[str, Any] | None, complete: bool
) -> xr.DataArray:
    array = zarr.open_array(url, path=NAME, mode="r", storage_options=storage_options)
    chunks = counts.data.chunks if isinstance(counts.data, dsa.Array) else array.chunks
    name = f"open-xrf-{dask.base.tokenize(url, array.metadata.to_dict(), chunks, complete)}"
    reader = _CheckedChunks(array, url, storage_options, complete)
    data = dsa.from_array(reader, chunks=chunks, name=name, asarray=True)
    return counts.copy(data=data)


def open_xrf(
    url: str,
    *,
    chunks: Mapping[str, int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    allow_incomplete: bool = False,
) -> xr.DataArray:
    """Open a zarr store as a lazy, validated ``counts`` DataArray.

    Parameters
    ----------
    url
        Local path or fsspec URL of the store.
    chunks
        Dask chunk size per dim; by default the storage chunks.
    storage_options
        Passed to fsspec.
    allow_incomplete
        Open a store whose write has not finished (for inspection); missing
        chunks read as NaN.

    Returns
    -------
    xarray.DataArray
        Dask-backed: only metadata and coordinates are read here.

    Raises
    ------
    SourceNotFoundError
        No zarr store at ``url``.
    IncompleteStoreError
        The store was not marked complete and ``allow_incomplete`` is false.
    StoreMetadataError
        The store's ``zarr.json`` documents are damaged (unparseable, or
        describing an array zarr or xarray cannot open).
    """
    url, storage_options = _location(url, storage_options)
    status = store_status(url, storage_options=storage_options)
    if not status.exists:
        raise SourceNotFoundError(
            f"no zarr store at {url} (no zarr.json there); check the path or URL "
            "and, for s3://, the storage options (endpoint, credentials)."
        )
    if status.written_by_xrfsr and not status.complete and not allow_incomplete:
        raise IncompleteStoreError(
            f"{url} is an unfinished write ({status.describe()}): finish it by re-running "
            "the command that wrote it with --resume (save(..., resume=True)), or pass "
            "allow_incomplete=True to inspect it."
        )
    with _metadata_errors(url):
        ds = xr.open_zarr(
            url,
            consolidated=False,
            zarr_format=3,
            chunks=dict(chunks) if chunks else {},
            storage_options=storage_options,
        )
        counts = ds  # without a counts variable, validate raises, naming what the store holds instead
        if NAME in ds.data_vars:
            counts = _in_memory_coords(_checked(ds[NAME], url, storage_options, status.complete is True))
    try:
        return validate(counts)
    except SchemaError as err:  # attributes edited or written by another tool: name the store
        raise SchemaError(f"{url}: {err}") from err


def _in_memory_coords(obj: xr.DataArray) -> xr.DataArray:
    """Load the (small, 1-D) coordinates; store strings as ``object`` like the constructors.

    zarr v3 returns variable-length strings as NumPy ``StringDType``.
    """
    loaded = {}
    for name, coord in obj.coords.items():
        coord = coord.compute()
        if coord.dtype.kind == "T":
            coord = coord.astype(object)
        loaded[name] = coord
    return obj.assign_coords(loaded)



def _element_entry(counts: xr.DataArray, i: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": str(counts.element.values[i])}
    if "line" in counts.coords:
        entry["line"] = str(counts.coords["line"].values[i])
    if "energy_kev" in counts.coords:
        energy = float(counts.coords["energy_kev"].values[i])
        entry["energy_kev"] = None if np.isnan(energy) else energy
    return entry


def describe(url: str, *, storage_options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a store holds, from metadata only: layout, elements, physical sizes, completeness.

    Returns
    -------
    dict
        JSON-ready: ``url``, ``status``, ``kind``, ``dims``, ``shape``,
        ``chunks``, ``dtype``, ``elements`` (name, line, energy in keV),
        ``spacing_nm`` and ``extent_nm`` per spatial dim, ``angles_deg``
        (count, min, max) for a series, the scan attributes and the list of
        operations in ``provenance``.
    """
    url, storage_options = _location(url, storage_options)
    status = store_status(url, storage_options=storage_options)
    counts = open_xrf(url, storage_options=storage_options, allow_incomplete=True)
    kind = kind_of(counts)
    spatial = ("z", "y", "x") if kind == "volume" else ("y", "x")
    spacing = counts.attrs["voxel_nm" if kind == "volume" else "step_nm"]
    out: dict[str, Any] = {
        "url": url,
        "status": status.describe(),
        "kind": kind,
        "dims": list(counts.dims),
        "shape": list(counts.shape),
        "chunks": list(counts.encoding.get("chunks", ())),
        "dtype": str(counts.dtype),
        "units": counts.attrs["units"],
        "elements": [_element_entry(counts, i) for i in range(counts.sizes["element"])],
        "spacing_nm": dict(zip(spatial, spacing, strict=True)),
        "extent_nm": {d: float(counts.sizes[d] * s) for d, s in zip(spatial, spacing, strict=True)},
    }
    if kind == "series":
        angles = counts.angle.values
        out["angles_deg"] = {"count": int(angles.size), "min": float(angles.min()), "max": float(angles.max())}
    for key in ("scan_mode", "fast_axis", "probe_fwhm_nm", "dwell_s"):
        if key in counts.attrs:
            out[key] = counts.attrs[key]
    out["provenance"] = [p["operation"] for p in counts.attrs["provenance"]]
    return out


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found: every chunk of ``counts`` read and its checksum checked."""

    url: str
    chunks_total: int
    chunks_checked: int
    corrupt: tuple[tuple[str, str], ...]
    missing: tuple[str, ...]
    repaired: bool

    @property
    def ok(self) -> bool:
        """No corrupt chunk, and no chunk missing from a store marked complete."""
        return not self.corrupt and not self.missing

    def describe(self) -> str:
        """A summary line, then one line per bad chunk."""
        head = (f"{self.url}: {self.chunks_checked} of {self.chunks_total} chunks checked, "
                f"{len(self.corrupt)} corrupt, {len(self.missing)} missing")
        lines = [head + (" (corrupt chunks removed; the store is marked incomplete)" if self.repaired else "")]
        lines += [f"  corrupt  {key}: {reason}" for key, reason in self.corrupt]
        lines += [f"  missing  {key}" for key in self.missing]
        return "\n".join(lines)


def _check_batch(url: str, storage_options: Mapping[str, Any] | None,
                 indices: list[tuple[int, ...]]) -> list[tuple[str, str]]:
    array = zarr.open_array(url, path=NAME, mode="r", storage_options=storage_options)
    return [(_chunk_key(i), reason) for i in indices if (reason := _chunk_error(array, i)) is not None]


def verify(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    repair: bool = False,
    progress: bool = True,
) -> VerifyReport:
    """Read every chunk of a store, checking its CRC-32C checksum, and name the bad ones.

    Parameters
    ----------
    url
        Local path or fsspec URL of a store written by :func:`save`.
    storage_options
        Passed to fsspec.
    repair
        Delete the corrupt chunks and mark the store incomplete, so that the
        command that wrote it, re-run with ``--resume`` (``resume=True``),
        rewrites exactly those chunks. Nothing else is touched.
    progress
        Show a progress bar (checks run as dask tasks, on the cluster when
        a ``distributed.Client`` is active).

    Returns
    -------
    VerifyReport
        Chunks checked, corrupt chunks with the reason, chunks missing from
        a store marked complete; ``report.ok`` is True when there are none.

    Raises
    ------
    SourceNotFoundError
        No zarr store at ``url``.
    ValueError
        ``repair=True`` on a store not written by xrfsr_dask (it has no
        completeness marker to reset, so no resume could rewrite the chunks).
    """
    url, storage_options = _location(url, storage_options)
    status = store_status(url, storage_options=storage_options)
    if not status.exists:
        raise SourceNotFoundError(f"no zarr store at {url} (no zarr.json there); check the path or URL.")
    if repair and not status.written_by_xrfsr:
        raise ValueError(f"{url} was not written by xrfsr_dask; repair=True needs a store that save() can resume.")
    fs, root = _fs(url, storage_options)
    array = zarr.open_array(url, path=NAME, mode="r", storage_options=storage_options)
    grid = _chunk_grid(array.shape, array.chunks)
    present = sorted(_written_chunks(fs, root))
    check = dask.delayed(_check_batch, pure=False)
    tasks = [check(url, storage_options, present[i:i + VERIFY_BATCH]) for i in range(0, len(present), VERIFY_BATCH)]
    corrupt = tuple(bad for found in _progress.compute(tasks, progress=progress, description=f"verifying {url}")
                    for bad in found)
    missing: tuple[str, ...] = ()
    if status.complete:
        have = set(present)
        missing = tuple(_chunk_key(i) for i in np.ndindex(grid) if i not in have)
    repaired = bool(repair and (corrupt or missing))
    if repaired:  # marked incomplete, a resume rewrites the removed and the missing chunks
        with writer_lock(fs, root, url, _now()):
            group = zarr.open_group(url, mode="r+", storage_options=storage_options)
            marker = dict(group.attrs[MARKER])
            marker.update(complete=False, repaired=_now(), removed=[key for key, _ in corrupt], missing=list(missing))
            group.attrs[MARKER] = marker
            for key, _ in corrupt:
                fs.rm(f"{root.rstrip('/')}/{key}")
    return VerifyReport(url, int(np.prod(grid)), len(present), corrupt, missing, repaired)
