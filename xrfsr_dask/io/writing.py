"""Writing stores: :func:`save`, chunk by chunk, marked complete last, resumable, one writer at a time."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict, cast

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
    StoreExistsError,
    StoreMetadataError,
    StoreMismatchError,
    StoreWriteError,
    XrfsrError,
)
from xrfsr_dask.io._lock import writer_lock
from xrfsr_dask.io._zarr import (
    MARKER,
    VERIFY_BATCH,
    ZSTD_LEVEL,
    StorageOptions,
    check_batch,
    chunk_grid,
    chunk_key,
    fs_of,
    in_memory_coords,
    location,
    metadata_errors,
    now,
    resolve_chunks,
    written_chunks,
)
from xrfsr_dask.io.status import StoreStatus, store_status
from xrfsr_dask.schema import NAME, kind_of, validate

__all__ = ["WriteOptions", "WriteSummary", "save", "write_options"]


class WriteOptions(TypedDict, total=False):
    """How a store is written: the options every writer takes, passed through as one keyword set.

    :func:`save` takes them by name; ``enhance_to_zarr``,
    ``reconstruct_to_zarr``, ``ingest`` and the CLI pass them on as
    ``**write`` (checked by :func:`write_options`).
    """

    overwrite: bool
    """Replace an existing store; without it an existing store is refused."""
    resume: bool
    """Finish an incomplete store written earlier from the same data: only missing chunks are written."""
    storage_options: Mapping[str, Any] | None
    """Passed to fsspec (for S3: ``key``, ``secret``, ``endpoint_url``, ...)."""
    progress: bool
    """Show a progress bar (``distributed.progress`` under a Client)."""


def write_options(caller: str, write: Mapping[str, Any]) -> WriteOptions:
    """``write`` checked as :class:`WriteOptions`: unknown names and ``overwrite`` with ``resume`` are refused.

    ``caller`` is the function named in the message, as Python names it for
    an unexpected keyword.
    """
    unknown = sorted(set(write) - set(WriteOptions.__annotations__))
    if unknown:
        raise TypeError(
            f"{caller}() got unexpected keyword argument(s) {unknown}; the writer options are "
            f"{sorted(WriteOptions.__annotations__)}."
        )
    if write.get("overwrite") and write.get("resume"):
        raise ValueError("pass overwrite=True or resume=True, not both.")
    return WriteOptions(**write)  # type: ignore[typeddict-item]


@dataclass(frozen=True)
class WriteSummary:
    """What :func:`save` did."""

    url: str
    chunks_total: int
    chunks_written: int
    chunks_skipped: int


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
    for dim in data.dims:
        if not np.array_equal(existing[dim].values.astype(data[dim].dtype), data[dim].values):
            raise StoreMismatchError(
                f"cannot resume {url}: coordinate {dim!r} differs from the data's. "
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
    url, storage_options = location(url, storage_options)
    if overwrite and resume:
        raise ValueError("pass overwrite=True or resume=True, not both.")
    chunk_map = resolve_chunks(data, chunks)
    chunk_shape = tuple(chunk_map[str(d)] for d in data.dims)
    fs, root = fs_of(url, storage_options)
    with writer_lock(fs, root, url, now()):
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
    overwrite: bool, resume: bool, storage_options: StorageOptions, progress: bool,
) -> WriteSummary:
    """:func:`save` once this job holds the store's writer marker."""
    try:
        status = store_status(url, storage_options=storage_options)
    except StoreMetadataError:
        if not overwrite or resume:
            raise
        status = StoreStatus(url, True, False, None, 0, 0)  # unreadable: replaced like any other store
    if status.exists and resume and status.written_by_xrfsr:
        with metadata_errors(url):
            existing = xr.open_zarr(url, consolidated=False, storage_options=storage_options, chunks=None)[NAME]
            if chunks is None:  # resume with the chunks the store was created with
                chunk_shape = tuple(existing.encoding["chunks"])
        _check_matches(existing, data, chunk_shape, url)
        if status.complete:
            total = int(np.prod(chunk_grid(data.shape, chunk_shape)))
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
    url: str, storage_options: StorageOptions, fs: Any, root: str, progress: bool
) -> set[tuple[int, ...]]:
    """The chunks of an unfinished store that read back intact; torn ones are deleted.

    A process killed while a chunk was being written to a file system can
    leave that chunk truncated (S3 writes whole objects, so there it cannot
    happen). Resuming checks every chunk present and writes the torn ones again.
    """
    present = sorted(written_chunks(fs, root))
    check = dask.delayed(check_batch, pure=False)
    tasks = [check(url, storage_options, present[i:i + VERIFY_BATCH]) for i in range(0, len(present), VERIFY_BATCH)]
    torn = {key for found in _progress.compute(tasks, progress=progress, description=f"checking {url}")
            for key, _ in found}
    for key in torn:
        fs.rm(f"{root.rstrip('/')}/{key}")
    return {index for index in present if chunk_key(index) not in torn}


def _create(
    data: xr.DataArray, url: str, chunk_shape: tuple[int, ...], storage_options: StorageOptions
) -> None:
    """Write metadata and coordinates, with the store marked incomplete."""
    # The counts become a lazy placeholder that is never computed: only the
    # coordinates (in memory) are written here.
    placeholder = data.copy(data=dsa.empty(data.shape, chunks=chunk_shape, dtype=data.dtype))
    ds = in_memory_coords(placeholder).to_dataset()
    ds.attrs = {MARKER: {"complete": False, "version": __version__, "kind": kind_of(data), "started": now()}}
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
    storage_options: StorageOptions,
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
    fs, root = fs_of(url, storage_options)
    present = len(written_chunks(fs, root))
    if present != total:
        raise IncompleteStoreError(
            f"{url}: {present} of {total} chunks present after writing; the store stays "
            "marked incomplete. Re-run with resume=True (--resume)."
        )
    group = zarr.open_group(url, mode="r+", storage_options=storage_options)
    marker = dict(cast(Mapping[str, Any], group.attrs[MARKER]))
    marker.update(complete=True, finished=now())
    group.attrs[MARKER] = marker
    return WriteSummary(url, total, len(tasks), total - len(tasks))
