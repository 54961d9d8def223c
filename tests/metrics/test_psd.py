"""PSD: flat white noise at σ²·V, a Gaussian blur's transfer function, dask oracle."""

import numpy as np
import pytest
import xarray as xr

from xrfsr_dask import xrf_volume
from xrfsr_dask.metrics import psd


@pytest.mark.parametrize(("shape", "spacing"), [((256, 192), (10.0, 10.0)), ((48, 64, 64), (40.0, 20.0, 20.0))])
def test_white_noise_is_flat_at_its_variance_times_the_pixel_volume(shape, spacing):
    sigma = 3.0
    noise = np.random.default_rng(0).normal(scale=sigma, size=shape)
    result = psd(noise, pixel_nm=spacing)
    level = sigma**2 * np.prod(spacing)
    # Each shell averages n/2 independent exponential variates: relative scatter 1/sqrt(n/2).
    scatter = 1 / np.sqrt(result.samples[1:] / 2)
    assert bool((np.abs(result.psd[1:] / level - 1) < 5 * scatter).all())
    assert float(result.psd[1:].mean()) == pytest.approx(level, rel=0.03)
    assert result.psd.attrs["units"] == f"nm^{len(shape)}"
    assert result.frequency.attrs["units"] == "1/nm"


def test_gaussian_blur_rolls_off_as_its_transfer_function():
    pixel, sigma_nm = 10.0, 25.0
    noise = np.random.default_rng(1).normal(size=(512, 512))
    fy = np.fft.fftfreq(512, pixel)[:, None]
    fx = np.fft.fftfreq(512, pixel)[None, :]
    transfer = np.exp(-2 * np.pi**2 * sigma_nm**2 * (fx**2 + fy**2))
    blurred = np.fft.ifft2(np.fft.fft2(noise) * transfer).real
    ratio = psd(blurred, pixel_nm=pixel).psd / psd(noise, pixel_nm=pixel).psd
    expected = np.exp(-4 * np.pi**2 * sigma_nm**2 * ratio.frequency**2)
    keep = expected > 1e-3
    np.testing.assert_allclose(ratio[keep], expected[keep], rtol=0.02)


def test_log_bins_cover_the_same_samples_and_stay_flat():
    noise = np.random.default_rng(2).normal(size=(256, 256))
    log = psd(noise, pixel_nm=5.0, bins="log", n_bins=20)
    filled = log.samples > 0
    assert np.all(np.diff(log.frequency) > 0) and log.frequency[0] > 0
    assert np.isnan(log.psd.where(~filled, drop=True)).all()
    np.testing.assert_allclose(log.psd.where(log.samples > 50, drop=True), 25.0, rtol=0.3)


def test_volume_batch_and_dask_equal_in_memory():
    rng = np.random.default_rng(3)
    data = rng.poisson(5.0, size=(2, 20, 24, 28)).astype(np.float32)
    volume = xrf_volume(data, elements=["Ni", "Mo"], voxel_nm=20.0)
    eager = psd(volume)
    lazy = psd(volume.chunk({"z": 7, "y": 24, "x": 28}), progress=False)
    assert eager.psd.dims == ("element", "frequency")
    assert eager.psd.attrs["units"] == "counts^2 nm^3"
    np.testing.assert_allclose(lazy.psd, eager.psd, rtol=1e-5)
    # Without a window the mean sits in the zero shell: psd[0] = mean² · N · V.
    n = 20 * 24 * 28
    mean = data.reshape(2, -1).mean(axis=1)
    np.testing.assert_allclose(eager.psd[:, 0], mean**2 * n * 20.0**3, rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="bins must be"):
        psd(np.ones((16, 16)), pixel_nm=1.0, bins="octave")
    with pytest.raises(ValueError, match="n_bins"):
        psd(np.ones((16, 16)), pixel_nm=1.0, bins="log", n_bins=1)
    with pytest.raises(ValueError, match="NaN or infinite"):
        psd(np.full((16, 16), np.nan), pixel_nm=1.0)
    with pytest.raises(ValueError, match="units 'um'"):
        psd(xr.DataArray(np.ones((8, 8)), dims=("y", "x"), coords={"y": ("y", np.arange(8.0), {"units": "um"})}),
            pixel_nm=1.0)


@pytest.mark.gpu
def test_cupy_psd_equals_numpy():
    import cupy

    noise = np.random.default_rng(4).normal(size=(40, 48, 56)).astype(np.float32)
    np.testing.assert_allclose(
        psd(cupy.asarray(noise), pixel_nm=10.0, bins="log").psd,
        psd(noise, pixel_nm=10.0, bins="log").psd,
        rtol=1e-5,
    )
