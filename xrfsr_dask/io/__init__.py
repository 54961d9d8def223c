"""Storage (zarr v3 at any fsspec URL), OME-Zarr export, and ingest of beamline file formats."""

from xrfsr_dask.io._lock import unlock
from xrfsr_dask.io._zarr import DEFAULT_CHUNKS, resolve_chunks
from xrfsr_dask.io.ingest import detect_format, ingest, read, read_series
from xrfsr_dask.io.ome import describe_pyramid, level_for_view, open_ome_zarr, open_pyramid, to_ome_zarr
from xrfsr_dask.io.reading import VerifyReport, describe, open_xrf, verify
from xrfsr_dask.io.status import StoreStatus, store_status
from xrfsr_dask.io.writing import WriteOptions, WriteSummary, save

__all__ = [
    "DEFAULT_CHUNKS",
    "StoreStatus",
    "VerifyReport",
    "WriteOptions",
    "WriteSummary",
    "describe",
    "describe_pyramid",
    "detect_format",
    "ingest",
    "level_for_view",
    "open_ome_zarr",
    "open_pyramid",
    "open_xrf",
    "read",
    "read_series",
    "resolve_chunks",
    "save",
    "store_status",
    "to_ome_zarr",
    "unlock",
    "verify",
]
