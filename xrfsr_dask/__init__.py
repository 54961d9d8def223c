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
from xrfsr_dask.io import open_xrf, save, store_status
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
    "open_xrf",
    "save",
    "store_status",
    "validate",
    "xrf_maps",
    "xrf_volume",
]
