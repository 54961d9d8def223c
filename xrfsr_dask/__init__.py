"""xrfsr_dask: resolution-enhanced scanning X-ray fluorescence microscopy at scale."""

from xrfsr_dask._version import __version__
from xrfsr_dask.errors import (
    IncompleteStoreError,
    IngestError,
    NonFiniteCountsError,
    SchemaError,
    SourceNotFoundError,
    StoreExistsError,
    StoreMismatchError,
    XrfsrError,
    XrfsrWarning,
)
from xrfsr_dask.io import ingest, open_xrf, read, read_series, save, store_status
from xrfsr_dask.schema import add_provenance, validate, xrf_maps, xrf_volume

__all__ = [
    "IncompleteStoreError",
    "IngestError",
    "NonFiniteCountsError",
    "SchemaError",
    "SourceNotFoundError",
    "StoreExistsError",
    "StoreMismatchError",
    "XrfsrError",
    "XrfsrWarning",
    "__version__",
    "add_provenance",
    "ingest",
    "open_xrf",
    "read",
    "read_series",
    "save",
    "store_status",
    "validate",
    "xrf_maps",
    "xrf_volume",
]
