"""xrfsr_dask: resolution-enhanced scanning X-ray fluorescence microscopy at scale."""

from xrfsr_dask._version import __version__
from xrfsr_dask.errors import (
    CorruptChunkError,
    DeviceError,
    EnhancedFSCWarning,
    GridMismatchError,
    IncompleteStoreError,
    IngestError,
    LabelMismatchError,
    MissingMetadataError,
    NonFiniteCountsError,
    SchemaError,
    SourceNotFoundError,
    StoreExistsError,
    StoreLockedError,
    StoreMetadataError,
    StoreMismatchError,
    StoreWriteError,
    XrfsrError,
    XrfsrWarning,
)
from xrfsr_dask.families import structure_maps
from xrfsr_dask.io import ingest, open_xrf, read, read_series, save, store_status, verify
from xrfsr_dask.metrics import frc, fsc, psd, psnr, ssim
from xrfsr_dask.phantoms import nmc_particle, nmc_volume
from xrfsr_dask.probe import GaussianProbe, TailedProbe, combined_resolution_nm, fit_line, fit_probe
from xrfsr_dask.schema import add_provenance, validate, xrf_maps, xrf_volume
from xrfsr_dask.simulate import simulate_scan, spectrum_cube
from xrfsr_dask.tomo.projection import project

__all__ = [
    "CorruptChunkError",
    "DeviceError",
    "EnhancedFSCWarning",
    "GaussianProbe",
    "GridMismatchError",
    "IncompleteStoreError",
    "IngestError",
    "LabelMismatchError",
    "MissingMetadataError",
    "NonFiniteCountsError",
    "SchemaError",
    "SourceNotFoundError",
    "StoreExistsError",
    "StoreLockedError",
    "StoreMetadataError",
    "StoreMismatchError",
    "StoreWriteError",
    "TailedProbe",
    "XrfsrError",
    "XrfsrWarning",
    "__version__",
    "add_provenance",
    "combined_resolution_nm",
    "fit_line",
    "fit_probe",
    "frc",
    "fsc",
    "ingest",
    "nmc_particle",
    "nmc_volume",
    "open_xrf",
    "project",
    "psd",
    "psnr",
    "read",
    "read_series",
    "save",
    "simulate_scan",
    "spectrum_cube",
    "ssim",
    "structure_maps",
    "store_status",
    "validate",
    "verify",
    "xrf_maps",
    "xrf_volume",
]
