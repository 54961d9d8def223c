"""The plumbing every store job shares: locations, chunk keys and grids, metadata errors, the marker.

Internal to :mod:`xrfsr_dask.io`; the jobs are :mod:`~xrfsr_dask.io.writing`
(write and resume), :mod:`~xrfsr_dask.io.reading` (checked reads, describe,
verify) and :mod:`~xrfsr_dask.io.status` (completeness from metadata), and
:mod:`xrfsr_dask.io.store` describes the contract they keep together.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from collections.abc import Mapping
from typing import Any

import fsspec
import fsspec.implementations.local
import xarray as xr
import zarr

from xrfsr_dask.errors import StoreMetadataError, XrfsrError
from xrfsr_dask.schema import NAME

__all__ = [
    "DEFAULT_CHUNKS",
    "MARKER",
    "VERIFY_BATCH",
    "StorageOptions",
    "ZSTD_LEVEL",
    "check_batch",
    "chunk_error",
    "chunk_grid",
    "chunk_key",
    "fs_of",
    "in_memory_coords",
    "location",
    "metadata_errors",
    "now",
    "resolve_chunks",
    "written_chunks",
]

MARKER = "xrfsr_dask"
"""Key of the completeness marker in a store's root attributes."""
VERIFY_BATCH = 64
"""Chunks checked per task by :func:`~xrfsr_dask.io.verify` and by a resume."""
DEFAULT_CHUNKS: dict[str, int] = {"element": 1, "angle": 1, "z": 32, "y": 256, "x": 256}
"""Storage chunk per dim: one element x one angle x a square of pixels."""
ZSTD_LEVEL = 3
"""zstd level of every chunk (beside its CRC-32C checksum)."""
StorageOptions = dict[str, Any] | None
"""fsspec storage options as :func:`location` normalises them (what zarr takes)."""


def fs_of(url: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    """The fsspec file system and root path of ``url``."""
    return fsspec.core.url_to_fs(url, **dict(storage_options or {}))


def location(url: str, storage_options: Mapping[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """Normalised ``(url, storage_options)``.

    ``file://`` URLs become plain paths (zarr's LocalStore creates parent
    folders) and empty storage options become None (zarr refuses options for
    a local path).
    """
    if url.startswith("file://"):
        url = fsspec.implementations.local.LocalFileSystem._strip_protocol(url)
    return url, dict(storage_options) if storage_options else None


def chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    """Chunks per axis of an array of ``shape`` stored in ``chunks``."""
    return tuple(-(-n // c) for n, c in zip(shape, chunks, strict=True))


def written_chunks(fs: Any, root: str, path: str = NAME) -> set[tuple[int, ...]]:
    """Indices of the chunks of the array at ``path`` (``counts`` by default) present in the store.

    The listing is read afresh: a cached one (s3fs keeps them) would miss chunks written since.
    """
    prefix = f"{root.rstrip('/')}/{path}/c/"
    fs.invalidate_cache(prefix.rstrip("/"))
    keys = fs.find(prefix) if fs.exists(prefix.rstrip("/")) else []
    found = set()
    for key in keys:
        parts = key[len(prefix):].split("/")
        if all(p.isdigit() for p in parts):
            found.add(tuple(int(p) for p in parts))
    return found


def chunk_key(index: tuple[int, ...]) -> str:
    """Store key of the chunk of ``counts`` at ``index``."""
    return f"{NAME}/c/" + "/".join(str(i) for i in index)


def chunk_error(array: zarr.Array, index: tuple[int, ...]) -> str | None:
    """Why the chunk at ``index`` cannot be read, or None when it reads."""
    try:
        array.get_block_selection(index)
    except (ValueError, RuntimeError) as err:  # the codecs' errors: checksum, zstd frame, size
        return f"{type(err).__name__}: {err}"
    return None


def check_batch(url: str, storage_options: StorageOptions,
                indices: list[tuple[int, ...]]) -> list[tuple[str, str]]:
    """``(key, reason)`` of the chunks at ``indices`` that do not read back (one dask task's worth)."""
    array = zarr.open_array(url, path=NAME, mode="r", storage_options=storage_options)
    return [(chunk_key(i), reason) for i in indices if (reason := chunk_error(array, i)) is not None]




@contextlib.contextmanager
def metadata_errors(url: str) -> Any:
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
    out: dict[str, int] = {}
    for name, size in zip(obj.dims, obj.shape, strict=True):
        dim = str(name)
        want = int(chunks.get(dim, DEFAULT_CHUNKS[dim]))
        if want == -1:
            want = size
        if want < 1:
            raise ValueError(f"chunks[{dim!r}] = {want}; chunk sizes must be >= 1 (or -1 for the whole axis).")
        out[dim] = max(1, min(want, size))
    return out


def now() -> str:
    """UTC time stamp of marker records."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def in_memory_coords(obj: xr.DataArray) -> xr.DataArray:
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
