"""Reading stores: checked, lazy reads (:func:`open_xrf`), what a store holds (:func:`describe`), and
:func:`verify`, which reads every chunk and names the bad ones."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
import zarr

from xrfsr_dask import _progress
from xrfsr_dask.errors import CorruptChunkError, IncompleteStoreError, SchemaError, SourceNotFoundError
from xrfsr_dask.io._lock import writer_lock
from xrfsr_dask.io._zarr import (
    MARKER,
    VERIFY_BATCH,
    StorageOptions,
    check_batch,
    chunk_error,
    chunk_grid,
    chunk_key,
    fs_of,
    in_memory_coords,
    location,
    metadata_errors,
    now,
    written_chunks,
)
from xrfsr_dask.io.status import store_status
from xrfsr_dask.schema import NAME, kind_of, validate

__all__ = ["VerifyReport", "describe", "open_xrf", "verify"]


class _CheckedChunks:
    """The stored counts as an array for ``dask.array.from_array``, naming the chunk when a read fails.

    In a store marked complete every chunk was written, so a block that reads
    NaN (the fill value of an absent chunk) is checked for absent chunks: a
    chunk deleted or lost in a copy is an error, not a silent NaN region.
    """

    def __init__(self, array: zarr.Array, url: str, storage_options: StorageOptions, complete: bool) -> None:
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
            fs, root = fs_of(self.url, self.storage_options)
            absent = [chunk_key(i) for i in self._indices(selection) if not fs.exists(f"{root}/{chunk_key(i)}")]
            if absent:
                raise CorruptChunkError(
                    f"{self.url}: chunk(s) {', '.join(absent)} are missing from a store marked complete (deleted, "
                    f"or lost in a copy). Run `xrfsr verify {self.url} --repair` (or verify(url, repair=True)) "
                    "to mark the store incomplete, then re-run the command that wrote it with --resume."
                )
        return np.asarray(block)

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
            reason = chunk_error(self.array, index)
            if reason is not None:
                bad.append((chunk_key(index), reason))
        return bad


def _checked(
    counts: xr.DataArray, url: str, storage_options: StorageOptions, complete: bool
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
    url, storage_options = location(url, storage_options)
    status = store_status(url, storage_options=storage_options)
    if not status.exists:
        raise SourceNotFoundError(
            f"no zarr store at {url} (no zarr.json there); check the path or URL "
            "and, for s3://, the storage options (endpoint, credentials)."
        )
    if status.format == "ome-zarr":
        raise SchemaError(
            f"{url} is an OME-Zarr export (a multiscale pyramid for viewers), not a store of the data model: "
            "open it with xrfsr_dask.io.open_pyramid (or open_ome_zarr for level 0, the data as exported), "
            "or view it in napari."
        )
    if status.written_by_xrfsr and not status.complete and not allow_incomplete:
        raise IncompleteStoreError(
            f"{url} is an unfinished write ({status.describe()}): finish it by re-running "
            "the command that wrote it with --resume (save(..., resume=True)), or pass "
            "allow_incomplete=True to inspect it."
        )
    with metadata_errors(url):
        ds = xr.open_zarr(
            url,
            consolidated=False,
            zarr_format=3,
            chunks=dict(chunks) if chunks else {},
            storage_options=storage_options,
        )
        counts = ds  # without a counts variable, validate raises, naming what the store holds instead
        if NAME in ds.data_vars:
            counts = in_memory_coords(_checked(ds[NAME], url, storage_options, status.complete is True))
    try:
        return validate(counts)
    except SchemaError as err:  # attributes edited or written by another tool: name the store
        raise SchemaError(f"{url}: {err}") from err


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
    url, storage_options = location(url, storage_options)
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
    url, storage_options = location(url, storage_options)
    status = store_status(url, storage_options=storage_options)
    if not status.exists:
        raise SourceNotFoundError(f"no zarr store at {url} (no zarr.json there); check the path or URL.")
    if repair and not status.written_by_xrfsr:
        raise ValueError(f"{url} was not written by xrfsr_dask; repair=True needs a store that save() can resume.")
    fs, root = fs_of(url, storage_options)
    array = zarr.open_array(url, path=NAME, mode="r", storage_options=storage_options)
    grid = chunk_grid(array.shape, array.chunks)
    present = sorted(written_chunks(fs, root))
    check = dask.delayed(check_batch, pure=False)
    tasks = [check(url, storage_options, present[i:i + VERIFY_BATCH]) for i in range(0, len(present), VERIFY_BATCH)]
    corrupt = tuple(bad for found in _progress.compute(tasks, progress=progress, description=f"verifying {url}")
                    for bad in found)
    missing: tuple[str, ...] = ()
    if status.complete:
        have = set(present)
        missing = tuple(chunk_key(i) for i in np.ndindex(grid) if i not in have)
    repaired = bool(repair and (corrupt or missing))
    if repaired:  # marked incomplete, a resume rewrites the removed and the missing chunks
        with writer_lock(fs, root, url, now()):
            group = zarr.open_group(url, mode="r+", storage_options=storage_options)
            marker = dict(cast(Mapping[str, Any], group.attrs[MARKER]))
            marker.update(complete=False, repaired=now(), removed=[key for key, _ in corrupt], missing=list(missing))
            group.attrs[MARKER] = marker
            for key, _ in corrupt:
                fs.rm(f"{root.rstrip('/')}/{key}")
    return VerifyReport(url, int(np.prod(grid)), len(present), corrupt, missing, repaired)
