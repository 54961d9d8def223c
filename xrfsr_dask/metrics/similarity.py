"""Pixel-wise agreement of two maps or volumes: PSNR and SSIM.

Wu et al. (2023) report a PSNR between two independent tomography datasets
(Supplementary Fig. 6) written as ``20·log10(MAX/MSE)`` with ``MAX = 1``.
That is not the usual definition, ``10·log10(MAX²/MSE)``. :func:`psnr`
computes the standard one by default and the paper's by name
(``variant="paper"``), so numbers can be compared with either.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import xarray as xr

from xrfsr_dask._backend import array_module, function

__all__ = ["psnr", "ssim"]

SPATIAL = ("z", "y", "x")


def _pair(a: Any, b: Any) -> tuple[xr.DataArray, xr.DataArray, list[str]]:
    """Both inputs as DataArrays on the same dims, and the dims to reduce over."""
    if isinstance(a, xr.DataArray) != isinstance(b, xr.DataArray):
        raise TypeError("a and b must both be DataArrays or both be arrays; got one of each.")
    if not isinstance(a, xr.DataArray):
        a, b = xr.DataArray(a), xr.DataArray(b)
        if a.dims != b.dims:
            raise ValueError(f"a and b differ in dimensionality: {a.shape} vs {b.shape}.")
        reduce = list(a.dims)
    else:
        if set(a.dims) != set(b.dims):
            raise ValueError(f"a and b have different dims: {a.dims} vs {b.dims}.")
        b = b.transpose(*a.dims)
        reduce = [d for d in a.dims if d in SPATIAL] or list(a.dims)
    if a.shape != b.shape:
        raise ValueError(
            f"a and b differ in shape: {dict(a.sizes)} vs {dict(b.sizes)}; compare on the same grid."
        )
    for dim in a.dims:
        numeric = dim in a.coords and dim in b.coords and a[dim].dtype.kind in "fiu"
        if numeric and not np.allclose(a[dim].values, b[dim].values, rtol=1e-6, atol=1e-9):
            raise ValueError(
                f"a and b have different {dim!r} coordinates; register them or, if they are "
                f"the same grid, b = b.assign_coords({dim}=a.{dim})."
            )
    return a, b.assign_coords({d: a[d] for d in a.dims if d in a.coords}), reduce


def _finite(x: xr.DataArray, name: str) -> None:
    if not hasattr(x.data, "dask") and not bool(np.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values; fill them first (e.g. {name}.fillna(0)).")


def _result(values: xr.DataArray, units: str, long_name: str) -> Any:
    values = values.compute() if hasattr(values.data, "dask") else values
    values.attrs = {"units": units, "long_name": long_name}
    return float(values) if values.ndim == 0 else values


def psnr(
    a: Any,
    b: Any,
    *,
    data_range: float | None = None,
    variant: Literal["standard", "paper"] = "standard",
) -> Any:
    """Peak signal-to-noise ratio of ``b`` against the reference ``a``, in dB.

    Parameters
    ----------
    a, b
        Reference and test: arrays of equal shape, or DataArrays whose dims
        other than ``z, y, x`` (``element``, ``angle``) are kept, giving one
        PSNR per map or volume.
    data_range
        ``MAX``, the range of the data; default ``max(a) - min(a)`` per map.
    variant
        ``"standard"``: ``10·log10(MAX² / MSE)``, the usual definition (and
        ``skimage.metrics.peak_signal_noise_ratio``'s). ``"paper"``: the
        formula printed by Wu et al. (2023), ``20·log10(MAX / MSE)`` with the
        data scaled so that ``MAX = 1`` (``a`` and ``b`` divided by
        ``data_range``); this equals exactly twice the standard value in dB.

    Returns
    -------
    float or xarray.DataArray
        PSNR in dB (``inf`` for identical inputs).

    References
    ----------
    Wu, L. et al. npj Comput. Mater. 9, 43 (2023), Supplementary Fig. 6.
    https://doi.org/10.1038/s41524-023-00995-9

    Examples
    --------
    >>> import numpy as np
    >>> a = np.linspace(0, 1, 100)
    >>> round(psnr(a, a + 0.01), 1), round(psnr(a, a + 0.01, variant="paper"), 1)
    (40.0, 80.0)
    """
    if variant not in ("standard", "paper"):
        raise ValueError(f"variant must be 'standard' or 'paper'; got {variant!r}.")
    a, b, reduce = _pair(a, b)
    _finite(a, "a")
    _finite(b, "b")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    mse = ((a64 - b64) ** 2).mean(reduce)
    if data_range is None:
        peak = a64.max(reduce) - a64.min(reduce)
        if bool((peak == 0).any()):
            raise ValueError("a is constant, so its range is 0; pass data_range= explicitly.")
    else:
        if not (np.isfinite(data_range) and data_range > 0):
            raise ValueError(f"data_range must be a positive number; got {data_range!r}.")
        peak = data_range
    with np.errstate(divide="ignore"):
        db = 10 * np.log10(peak**2 / mse)
    if variant == "paper":
        db = 2 * db
    return _result(db, "dB", f"PSNR ({variant})")


def _gaussian_filter(x: Any, sigma: float, truncate: float) -> Any:
    return function("gaussian_filter", x)(x, sigma=sigma, truncate=truncate, mode="reflect")


def _mean_ssim(x: Any, y: Any, *, data_range: float | None, sigma: float) -> Any:
    """Mean SSIM of two same-shape arrays (Gaussian window, population covariance)."""
    xp = array_module(x, y)
    x = x.astype(xp.float64)
    y = y.astype(xp.float64)
    truncate = 3.5
    peak = float(x.max() - x.min()) if data_range is None else data_range
    if peak == 0:
        raise ValueError("a is constant, so its range is 0; pass data_range= explicitly.")
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mx, my = _gaussian_filter(x, sigma, truncate), _gaussian_filter(y, sigma, truncate)
    vx = _gaussian_filter(x * x, sigma, truncate) - mx * mx
    vy = _gaussian_filter(y * y, sigma, truncate) - my * my
    vxy = _gaussian_filter(x * y, sigma, truncate) - mx * my
    score = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    pad = int(truncate * sigma + 0.5)
    inner = score[tuple(slice(pad, n - pad) for n in score.shape)]
    return inner.mean()


def ssim(
    a: Any,
    b: Any,
    *,
    data_range: float | None = None,
    sigma: float = 1.5,
) -> Any:
    """Mean structural similarity of ``b`` against the reference ``a`` (Wang et al. 2004).

    Parameters
    ----------
    a, b
        As for :func:`psnr`: arrays (2-D or 3-D) or DataArrays with a batch.
    data_range
        Range of the data; default ``max(a) - min(a)`` per map.
    sigma
        Standard deviation of the Gaussian window in pixels (truncated at 3.5σ).

    Returns
    -------
    float or xarray.DataArray
        Mean SSIM in [-1, 1] over the map, leaving out a border of the window's
        radius; one value per batch item for DataArrays.

    Notes
    -----
    This is the Gaussian-window SSIM with population covariance, ``K1 = 0.01``,
    ``K2 = 0.03``: the same numbers as ``skimage.metrics.structural_similarity(
    a, b, data_range=..., gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False)``, written once for NumPy and CuPy (CuPy
    input is filtered with ``cupyx.scipy.ndimage`` on the GPU). Dask input is
    computed one whole map or volume at a time.

    References
    ----------
    Wang, Z., Bovik, A. C., Sheikh, H. R. & Simoncelli, E. P. Image quality
    assessment: from error visibility to structural similarity. IEEE Trans.
    Image Process. 13, 600–612 (2004). https://doi.org/10.1109/TIP.2003.819861
    """
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive number of pixels; got {sigma!r}.")
    a, b, reduce = _pair(a, b)
    _finite(a, "a")
    _finite(b, "b")
    pad = int(3.5 * sigma + 0.5)
    small = {d: a.sizes[d] for d in reduce if a.sizes[d] <= 2 * pad}
    if small:
        raise ValueError(f"maps too small for a window of sigma={sigma}: {small}; need > {2 * pad} pixels.")
    if hasattr(a.data, "dask") or hasattr(b.data, "dask"):
        a, b = a.chunk({d: -1 for d in reduce}), b.chunk({d: -1 for d in reduce})
    score = xr.apply_ufunc(
        lambda x, y: _score_batch(x, y, len(reduce), data_range, sigma),
        a,
        b,
        input_core_dims=[reduce, reduce],
        dask="parallelized",
        output_dtypes=[np.float64],
    )
    return _result(score, "1", "SSIM")


def _score_batch(x: Any, y: Any, ndim: int, data_range: float | None, sigma: float) -> Any:
    """SSIM of every item of a batch whose last ``ndim`` axes are the map."""
    xp = array_module(x, y)
    batch = x.shape[: x.ndim - ndim]
    flat_x = x.reshape((-1,) + x.shape[x.ndim - ndim :])
    flat_y = y.reshape((-1,) + y.shape[y.ndim - ndim :])
    scores = [_mean_ssim(i, j, data_range=data_range, sigma=sigma) for i, j in zip(flat_x, flat_y, strict=True)]
    return xp.asarray(xp.stack(scores) if scores else xp.zeros(0)).reshape(batch)
