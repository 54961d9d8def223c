"""XRF tomography: projection, flux normalisation, rotation centre, alignment and reconstruction.

The projection series ``(element, angle, y, x)`` is parallel beam with the
rotation axis along ``y``; slices are reconstructed independently, in dask
tasks over blocks of sinogram rows, by one of several backends behind one
interface: a gridrec-class NUFFT filtered back-projection (FINUFFT on the
CPU, cuFINUFFT on a GPU), ASTRA Toolbox, and a built-in PyTorch path with
FBP, SIRT and MLEM. TomoPy is a peer in the benchmark, not a backend: its
gridrec image sits half a pixel off the rotation axis with a scale that
depends on its internal padding.
"""

from xrfsr_dask.tomo._backends import ALGORITHMS, BACKENDS, available_backends
from xrfsr_dask.tomo._filters import FILTERS
from xrfsr_dask.tomo.align import Alignment, align
from xrfsr_dask.tomo.center import RotationCenter, find_center
from xrfsr_dask.tomo.preprocess import normalize
from xrfsr_dask.tomo.projection import project
from xrfsr_dask.tomo.reconstruct import DEFAULT_ITERATIONS, reconstruct, reconstruct_to_zarr

__all__ = [
    "ALGORITHMS",
    "BACKENDS",
    "DEFAULT_ITERATIONS",
    "FILTERS",
    "Alignment",
    "RotationCenter",
    "align",
    "available_backends",
    "find_center",
    "normalize",
    "project",
    "reconstruct",
    "reconstruct_to_zarr",
]
