"""xrfsr_dask: resolution-enhanced scanning X-ray fluorescence microscopy at scale."""

import os

# PyTorch backs its large CPU buffers with transparent huge pages only when asked (NumPy does so by default).
# Without it each new multi-megabyte tensor is faulted in 4 KiB pages, which on a virtual machine costs as
# much as the convolutions between (half the CPU inference time, benchmarks/rdn_speed.py). PyTorch reads the
# setting at its first allocation; an explicit THP_MEM_ALLOC_ENABLE=0 is kept.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

from xrfsr_dask._version import __version__  # noqa: E402  # after the setting above, before torch allocates
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
from xrfsr_dask.io import (
    ingest,
    open_pyramid,
    open_xrf,
    read,
    read_series,
    save,
    store_status,
    to_ome_zarr,
    verify,
)
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
    "open_pyramid",
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
    "to_ome_zarr",
    "validate",
    "verify",
    "xrf_maps",
    "xrf_volume",
]
