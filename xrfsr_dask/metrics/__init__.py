"""Resolution and similarity metrics: FRC/FSC with threshold curves, PSD, PSNR, SSIM.

All of them take labeled DataArrays with coordinates in nm (any extra dims,
such as ``element``, are a batch) or bare arrays with the pixel size, run on
NumPy or CuPy according to the input, and handle dask arrays larger than
memory chunk by chunk. Results are :class:`xarray.Dataset` objects with
frequencies in 1/nm and resolutions in nm.
"""

from xrfsr_dask.metrics.fsc import THRESHOLDS, frc, fsc, split_even_odd, threshold_curve
from xrfsr_dask.metrics.psd import psd
from xrfsr_dask.metrics.similarity import psnr, ssim

__all__ = ["THRESHOLDS", "frc", "fsc", "psd", "psnr", "split_even_odd", "ssim", "threshold_curve"]
