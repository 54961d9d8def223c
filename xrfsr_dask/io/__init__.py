"""Storage (zarr v3 at any fsspec URL) and ingest of beamline file formats."""

from xrfsr_dask.io.store import (
    DEFAULT_CHUNKS,
    StoreStatus,
    WriteSummary,
    open_xrf,
    resolve_chunks,
    save,
    store_status,
)

__all__ = [
    "DEFAULT_CHUNKS",
    "StoreStatus",
    "WriteSummary",
    "open_xrf",
    "resolve_chunks",
    "save",
    "store_status",
]
