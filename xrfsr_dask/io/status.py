"""Completeness of a store, from its metadata and chunk keys only."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr

from xrfsr_dask.errors import StoreMetadataError
from xrfsr_dask.io._zarr import MARKER, chunk_grid, fs_of, location, metadata_errors, written_chunks
from xrfsr_dask.schema import NAME

__all__ = ["StoreStatus", "store_status"]


@dataclass(frozen=True)
class StoreStatus:
    """What a store at a URL holds, read from metadata only."""

    url: str
    exists: bool
    written_by_xrfsr: bool
    complete: bool | None
    chunks_written: int
    chunks_total: int
    format: str | None = None
    """What xrfsr_dask wrote there, when its marker says: ``"ome-zarr"`` for an export of
    :func:`~xrfsr_dask.io.to_ome_zarr`; None for a store of the data model (and for other writers)."""

    def describe(self) -> str:
        """One line for messages and ``xrfsr info``."""
        if not self.exists:
            return "no zarr store"
        if not self.written_by_xrfsr:
            return "complete: unknown (not written by xrfsr_dask)"
        state = "complete" if self.complete else "INCOMPLETE"
        return f"{state} ({self.chunks_written} of {self.chunks_total} chunks written)"


def store_status(url: str, *, storage_options: Mapping[str, Any] | None = None) -> StoreStatus:
    """Completeness of the store at ``url``, from its metadata and chunk keys.

    Nothing but ``zarr.json`` documents and the key listing is read.

    Raises
    ------
    StoreMetadataError
        A ``zarr.json`` there cannot be parsed or describes no valid array.
    """
    url, storage_options = location(url, storage_options)
    fs, root = fs_of(url, storage_options)
    if not fs.exists(f"{root}/zarr.json"):
        return StoreStatus(url, False, False, None, 0, 0)
    _check_root(url, fs.cat_file(f"{root}/zarr.json"))
    with metadata_errors(url):
        group = zarr.open_group(url, mode="r", storage_options=storage_options)
        marker = group.attrs.get(MARKER)
        array = group[NAME] if NAME in group else None
        total = int(np.prod(chunk_grid(array.shape, array.chunks))) if isinstance(array, zarr.Array) else 0
    written = 0
    if array is not None:
        written = len(written_chunks(fs, root))
    if not isinstance(marker, Mapping):
        return StoreStatus(url, True, False, None, written, total)
    kind = marker.get("format")
    return StoreStatus(url, True, True, bool(marker.get("complete")), written, total,
                       kind if isinstance(kind, str) else None)


def _check_root(url: str, document: bytes) -> None:
    """Refuse a root ``zarr.json`` that is not a zarr v3 group document (zarr reads junk there as an empty group)."""
    try:
        meta = json.loads(document)
    except (UnicodeDecodeError, json.JSONDecodeError):
        meta = None
    if not (isinstance(meta, dict) and meta.get("zarr_format") == 3 and meta.get("node_type") == "group"):
        raise StoreMetadataError(
            f"{url}: its root zarr.json is not a zarr v3 group document (it needs zarr_format 3 and node_type "
            f"'group'; found {document[:80]!r}): the store was damaged or edited by hand. Restore zarr.json from a "
            "copy, or write the data again (overwrite=True)."
        )
