"""PSNR and SSIM against scikit-image, the paper's PSNR variant, batches, bad input."""

import numpy as np
import pytest
import xarray as xr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from xrfsr_dask import xrf_maps
from xrfsr_dask.metrics import psnr, ssim


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = rng.random((64, 80))
    return a, a + 0.05 * rng.normal(size=a.shape)


@pytest.mark.parametrize("data_range", [None, 1.0, 4.0])
def test_psnr_matches_scikit_image(pair, data_range):
    a, b = pair
    peak = a.max() - a.min() if data_range is None else data_range
    assert psnr(a, b, data_range=data_range) == pytest.approx(
        peak_signal_noise_ratio(a, b, data_range=peak), rel=1e-12
    )


def test_paper_variant_is_twice_the_standard_value(pair):
    a, b = pair
    standard = psnr(a, b, data_range=1.0)
    assert psnr(a, b, data_range=1.0, variant="paper") == pytest.approx(2 * standard, rel=1e-12)
    mse = np.mean((a - b) ** 2)
    assert psnr(a, b, data_range=1.0, variant="paper") == pytest.approx(20 * np.log10(1 / mse), rel=1e-12)
    assert psnr(a, a) == np.inf


def test_per_element_psnr_and_dask(pair):
    a, b = pair
    maps_a = xrf_maps(np.stack([a, 3 * a]), elements=["Ni", "Co"], step_nm=20.0)
    maps_b = xrf_maps(np.stack([b, 3 * b]), elements=["Ni", "Co"], step_nm=20.0)
    values = psnr(maps_a, maps_b)
    assert values.dims == ("element",) and values.attrs["units"] == "dB"
    np.testing.assert_allclose(values, psnr(a, b), rtol=1e-12)
    lazy = psnr(maps_a.chunk({"y": 16}), maps_b.chunk({"y": 16}))
    np.testing.assert_allclose(lazy, values, rtol=1e-12)


@pytest.mark.parametrize("shape", [(64, 80), (24, 30, 36)])
def test_ssim_matches_scikit_image(shape):
    rng = np.random.default_rng(1)
    a = rng.random(shape)
    b = a + 0.1 * rng.normal(size=shape)
    expected = structural_similarity(
        a, b, data_range=a.max() - a.min(), gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(a, b) == pytest.approx(expected, rel=1e-10)
    assert ssim(a, a) == pytest.approx(1.0)


def test_ssim_batch_and_dask(pair):
    a, b = pair
    maps_a = xrf_maps(np.stack([a, a]), elements=["Ni", "Co"], step_nm=20.0)
    maps_b = xrf_maps(np.stack([b, a]), elements=["Ni", "Co"], step_nm=20.0)
    eager = ssim(maps_a, maps_b)
    np.testing.assert_allclose(eager, [ssim(a, b), 1.0], rtol=1e-12)
    lazy = ssim(maps_a.chunk({"element": 1, "y": 20}), maps_b.chunk({"element": 1, "y": 20}))
    np.testing.assert_allclose(lazy, eager, rtol=1e-12)


def test_bad_input(pair):
    a, b = pair
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(a, b[:-1])
    with pytest.raises(ValueError, match="variant"):
        psnr(a, b, variant="db")
    with pytest.raises(ValueError, match="a is constant"):
        psnr(np.ones_like(a), b)
    with pytest.raises(ValueError, match="NaN or infinite"):
        ssim(a, np.where(b > 0.5, np.nan, b))
    with pytest.raises(TypeError, match="one of each"):
        psnr(xr.DataArray(a), b)
    with pytest.raises(ValueError, match="too small"):
        ssim(a[:8, :8], b[:8, :8])
    maps_a = xrf_maps(a[None], elements=["Ni"], step_nm=20.0)
    with pytest.raises(ValueError, match="different 'x' coordinates"):
        psnr(maps_a, maps_a.assign_coords(x=maps_a.x + 5.0))


@pytest.mark.gpu
def test_cupy_ssim_and_psnr_equal_numpy(pair):
    import cupy

    a, b = pair
    assert ssim(cupy.asarray(a), cupy.asarray(b)) == pytest.approx(ssim(a, b), rel=1e-9)
    assert psnr(cupy.asarray(a), cupy.asarray(b)) == pytest.approx(psnr(a, b), rel=1e-12)
