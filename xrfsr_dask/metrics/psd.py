"""Radially (2-D) or shell (3-D) averaged power spectral density.

The PSD shows how much of a map's or volume's variance sits at each spatial
frequency: a sharper image keeps power at high frequency until the noise
floor, a blurred one rolls off. Wu et al. (2023) compare the PSDs of LR and
enhanced volumes (Supplementary Fig. 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from xrfsr_dask import _progress
from xrfsr_dask.metrics import _inputs
from xrfsr_dask.metrics._spectral import Shells, spectrum_sums
from xrfsr_dask.metrics._spectral import window as make_window
from xrfsr_dask.schema import add_provenance

__all__ = ["psd"]


def psd(
    x: Any,
    *,
    pixel_nm: float | Sequence[float] | None = None,
    bins: Literal["linear", "log"] = "linear",
    shell_width: float = 1.0,
    n_bins: int = 48,
    window: str | tuple | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Shell-averaged power spectral density of maps (2-D) or volumes (3-D).

    Parameters
    ----------
    x
        A DataArray with spatial dims ``y, x`` or ``z, y, x`` in nm (3-D when
        it has a ``z`` dim) and any batch dims (``element``, ``angle``); or a
        bare 2-D/3-D NumPy, CuPy or dask array with ``pixel_nm``.
    pixel_nm
        Pixel (voxel) size in nm, one number or one per spatial axis; only
        needed without coordinates.
    bins
        ``"linear"``: shells ``shell_width`` frequency steps wide, as in
        :func:`~xrfsr_dask.metrics.frc`. ``"log"``: ``n_bins`` shells with
        log-spaced edges from the first frequency step to Nyquist, for
        log–log plots.
    shell_width, n_bins
        Bin width (linear) or number of bins (log).
    window
        Apodisation, as for :func:`~xrfsr_dask.metrics.frc` (mean subtracted
        first); without a window the mean stays in the zero-frequency shell.
    progress
        Show a progress bar while dask input is computed.

    Returns
    -------
    xarray.Dataset
        ``psd`` (batch..., frequency): mean periodogram
        ``|FFT(x)|² · V / N`` over each shell, where ``N`` is the number of
        samples and ``V`` the pixel area (nm²) or voxel volume (nm³), so its
        units are ``(units of x)² · nm²`` (or ``nm³``) and white noise of
        variance σ² has a flat PSD of ``σ² · V``. ``samples`` holds the Fourier
        samples per shell; ``frequency`` is the shell centre in 1/nm (the
        geometric centre for log bins). Empty shells are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> noise = np.random.default_rng(1).normal(scale=2.0, size=(128, 128))
    >>> spectrum = psd(noise, pixel_nm=10.0, progress=False)
    >>> bool(abs(float(spectrum.psd[1:].mean()) / (4.0 * 10.0**2) - 1) < 0.05)
    True
    """
    spatial = ("z", "y", "x") if isinstance(x, xr.DataArray) and "z" in x.dims else ("y", "x")
    if not isinstance(x, xr.DataArray) and getattr(x, "ndim", None) == 3:
        spatial = ("z", "y", "x")
    batch = _inputs.as_batch(x, "x", spatial, pixel_nm)
    if bins == "linear":
        shells = Shells.linear(batch.shape, batch.spacing_nm, shell_width)
    elif bins == "log":
        if not (isinstance(n_bins, int) and n_bins >= 2):
            raise ValueError(f"n_bins must be an integer >= 2; got {n_bins!r}.")
        shells = Shells.log(batch.shape, batch.spacing_nm, n_bins)
    else:
        raise ValueError(f"bins must be 'linear' or 'log'; got {bins!r}.")
    apodise = make_window(window, batch.shape, np.dtype(np.float64))
    tasks = []
    for _, item in batch.blocks():
        tasks.append(spectrum_sums([_inputs.prepare(item, apodise)], shells, "power"))
    if batch.is_dask:
        tasks = _progress.compute(tasks, progress=progress, description="PSD")
    sums = np.stack(tasks).reshape(batch.data.shape[: len(batch.batch_dims)] + (2, shells.count))
    count, power = np.moveaxis(sums, -2, 0)
    _inputs.check_finite(power, "x")
    scale = math.prod(batch.spacing_nm) / math.prod(batch.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        density = power / count * scale
    units = batch.data.attrs.get("units", "1")
    volume_units = f"nm^{len(spatial)}"
    if units == "1":
        psd_units = volume_units
    else:
        psd_units = f"{units}^2 {volume_units}" if units.isalpha() else f"({units})^2 {volume_units}"
    ds = xr.Dataset(
        {
            "psd": (
                [*batch.batch_dims, "frequency"],
                density,
                {"units": psd_units, "long_name": "power spectral density"},
            ),
            "samples": ("frequency", count.reshape(-1, shells.count)[0].round().astype(np.int64),
                      {"units": "1", "long_name": "Fourier samples in shell"}),
        },
        coords={
            "frequency": ("frequency", shells.centres, {"units": "1/nm", "long_name": "spatial frequency"}),
            **batch.batch_coords(),
        },
        attrs={
            "spacing_nm": list(batch.spacing_nm),
            "bins": bins,
            "window": "none" if window is None else str(window),
        },
    )
    return add_provenance(
        ds,
        "xrfsr_dask.metrics.psd",
        {"bins": bins, "shell_width": shell_width, "n_bins": n_bins, "window": ds.attrs["window"]},
    )
