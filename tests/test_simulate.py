"""Forward simulation: normalisation, sampling geometry, step vs fly, noise, chunk invariance."""

import math

import numpy as np
import pytest

from xrfsr_dask import SchemaError, xrf_maps, xrf_volume
from xrfsr_dask.phantoms import nmc_particle
from xrfsr_dask.probe import FWHM_PER_SIGMA, GaussianProbe
from xrfsr_dask.simulate import probe_kernel, simulate_scan, spectrum_cube
from xrfsr_dask.testing import particles


def _hr(values, pixel=10.0, elements=("Ni_K", "Co_K")):
    return xrf_maps(np.asarray(values, dtype=np.float32), elements=list(elements)[: len(values)], step_nm=pixel)


def _moments(kernel, pixel):
    y = (np.arange(kernel.shape[0]) - kernel.shape[0] // 2) * pixel[0]
    x = (np.arange(kernel.shape[1]) - kernel.shape[1] // 2) * pixel[1]
    return float((kernel.sum(1) * y**2).sum()), float((kernel.sum(0) * x**2).sum())


def test_step_kernel_has_the_probe_variance():
    kernel = probe_kernel(61.6, pixel_nm=(5.0, 5.0))
    var_y, var_x = _moments(kernel, (5.0, 5.0))
    sigma = 61.6 / FWHM_PER_SIGMA
    assert kernel.sum() == pytest.approx(1.0)
    assert var_y == pytest.approx(sigma**2, rel=2e-3) and var_x == pytest.approx(sigma**2, rel=2e-3)


@pytest.mark.parametrize("fast_axis", ["x", "y"])
def test_fly_kernel_adds_one_step_of_motion_along_the_fast_axis(fast_axis):
    sigma, step = 24.7 / FWHM_PER_SIGMA, 51.8
    kernel = probe_kernel(24.7, pixel_nm=(2.0, 2.0), scan_mode="fly", fast_axis=fast_axis, step_nm=(step, step))
    var_y, var_x = _moments(kernel, (2.0, 2.0))
    fast, slow = (var_x, var_y) if fast_axis == "x" else (var_y, var_x)
    # A Gaussian convolved with a box of width s has variance sigma^2 + s^2 / 12.
    assert fast == pytest.approx(sigma**2 + step**2 / 12, rel=5e-3)
    assert slow == pytest.approx(sigma**2, rel=5e-3)


@pytest.mark.parametrize("scan_mode", ["step", "fly"])
def test_uniform_map_keeps_its_level_and_scale_multiplies(scan_mode):
    hr = _hr(np.full((2, 60, 70), 40.0))
    lr = simulate_scan(hr, step_nm=50.0, probe=60.0, scan_mode=scan_mode, scale=2.5)
    assert lr.shape == (2, 12, 14)
    np.testing.assert_allclose(lr.values, 100.0, rtol=1e-6)


@pytest.mark.parametrize(("step", "scan_mode"), [(50.0, "step"), (33.0, "fly"), (20.0, "step")])
def test_linear_ramp_is_sampled_at_the_scan_coordinates(step, scan_mode):
    # A symmetric, normalised blur leaves a linear ramp unchanged, so away from
    # the edges every LR value equals its own x coordinate: the sampling geometry.
    x = np.arange(200) * 10.0
    hr = _hr(np.broadcast_to(x, (1, 40, 200)).copy(), elements=["Ni_K"])
    lr = simulate_scan(hr, step_nm=step, probe=60.0, scan_mode=scan_mode)
    inner = lr.sel(x=slice(200, 1700))
    np.testing.assert_allclose(inner.values[0], np.broadcast_to(inner.x.values, inner.shape[1:]), rtol=1e-5)
    assert float(lr.x[1] - lr.x[0]) == pytest.approx(step)
    assert float(lr.x[0]) == pytest.approx((step - 10.0) / 2)


def test_point_source_images_the_probe():
    hr = np.zeros((1, 81, 81), np.float32)
    hr[0, 40, 40] = 1.0
    lr = simulate_scan(_hr(hr, pixel=5.0, elements=["Ni_K"]), step_nm=5.0,
                       probe=GaussianProbe((40.0, 25.0), angle_deg=30.0))
    from xrfsr_dask.probe import fit_probe

    fit = fit_probe(lr.isel(element=0))
    assert float(fit.fwhm_major_nm) == pytest.approx(40.0, rel=1e-3)
    assert float(fit.fwhm_minor_nm) == pytest.approx(25.0, rel=1e-3)
    assert float(fit.angle_deg) == pytest.approx(30.0, abs=0.1)


def test_fly_scan_is_blurrier_along_the_fast_axis_only():
    hr = nmc_particle((320, 320), pixel_nm=10.0, seed=2, elements=["Ni_K"])
    step = simulate_scan(hr, step_nm=50.0, probe=60.0, scan_mode="step").values[0]
    fly = simulate_scan(hr, step_nm=50.0, probe=60.0, scan_mode="fly").values[0]
    ratio_x = (np.diff(fly, axis=1) ** 2).mean() / (np.diff(step, axis=1) ** 2).mean()
    ratio_y = (np.diff(fly, axis=0) ** 2).mean() / (np.diff(step, axis=0) ** 2).mean()
    # Gradient energy: the motion blur removes it along x, hardly along y.
    assert ratio_x < 0.92
    assert ratio_y > 0.94
    assert ratio_y - ratio_x > 0.05


def test_dask_equals_in_memory_and_builds_lazily(no_dask_compute):
    # Empty space around the particle: FFT round-off there must not change the noise.
    hr = nmc_particle((230, 190), pixel_nm=10.0, seed=5, elements=["Ni_K", "Mo_L"])
    kwargs = {"step_nm": (30.0, 40.0), "probe": 60.0, "scan_mode": "fly", "jitter_nm": 8.0, "noise": True, "seed": 11}
    eager = simulate_scan(hr, **kwargs)
    with no_dask_compute():
        lazy = simulate_scan(hr.chunk({"element": 1, "y": 47, "x": 61}), **kwargs)
    assert lazy.chunks is not None
    np.testing.assert_allclose(lazy.values, eager.values, rtol=1e-6)
    assert lazy.attrs["provenance"] == eager.attrs["provenance"][:-1] + [lazy.attrs["provenance"][-1]]


def test_poisson_noise_has_poisson_statistics_and_follows_the_seed():
    hr = _hr(np.full((1, 400, 400), 30.0), elements=["Ni_K"])
    expected = simulate_scan(hr, step_nm=10.0, probe=30.0).values
    noisy = simulate_scan(hr, step_nm=10.0, probe=30.0, noise=True, seed=1).values
    assert np.all(noisy == np.round(noisy))
    z = (noisy - expected) / np.sqrt(expected)
    assert abs(z.mean()) < 0.01 and z.var() == pytest.approx(1.0, abs=0.02)
    again = simulate_scan(hr, step_nm=10.0, probe=30.0, noise=True, seed=1).values
    other = simulate_scan(hr, step_nm=10.0, probe=30.0, noise=True, seed=2).values
    assert np.array_equal(noisy, again) and not np.array_equal(noisy, other)


def test_jitter_moves_every_element_the_same_way():
    plane = particles((200, 200), 1, seed=3)[0]
    hr = _hr(np.stack([plane, plane]), pixel=10.0)
    still = simulate_scan(hr, step_nm=40.0, probe=40.0)
    shaken = simulate_scan(hr, step_nm=40.0, probe=40.0, jitter_nm=15.0, seed=4)
    assert np.array_equal(shaken.values[0], shaken.values[1])
    assert np.abs(shaken.values - still.values).max() > 1.0


def test_series_keep_their_angles_and_attrs():
    counts = np.stack([particles((80, 80), 2, seed=s) for s in range(3)], axis=1)
    hr = xrf_maps(counts, elements=["Ni_K", "Mo_L"], step_nm=10.0, angles=[0.0, 60.0, 120.0])
    lr = simulate_scan(hr, step_nm=40.0, probe=(60.0, 40.0), scan_mode="fly", dwell_s=0.02)
    assert lr.dims == ("element", "angle", "y", "x") and lr.shape == (2, 3, 20, 20)
    assert lr.angle.values.tolist() == [0.0, 60.0, 120.0]
    assert lr.attrs["scan_mode"] == "fly" and lr.attrs["step_nm"] == [40.0, 40.0]
    assert lr.attrs["probe_fwhm_nm"] == pytest.approx(math.sqrt(60 * 40))
    assert lr.attrs["dwell_s"] == 0.02
    operations = [p["operation"] for p in lr.attrs["provenance"]]
    assert operations == ["xrfsr_dask.xrf_maps", "xrfsr_dask.simulate.simulate_scan"]


def test_bad_input_is_refused():
    hr = _hr(np.ones((1, 40, 40)), elements=["Ni_K"])
    with pytest.raises(ValueError, match="step_nm along y is 5.0 nm but the HR pixel is 10.0 nm"):
        simulate_scan(hr, step_nm=5.0, probe=60.0)
    with pytest.raises(ValueError, match="scan_mode must be 'step' or 'fly'; got 'zigzag'"):
        simulate_scan(hr, step_nm=50.0, probe=60.0, scan_mode="zigzag")
    with pytest.raises(ValueError, match="jitter_nm and scale must be >= 0"):
        simulate_scan(hr, step_nm=50.0, probe=60.0, jitter_nm=-1.0)
    with pytest.raises(ValueError, match="fwhm_nm must be one positive number"):
        simulate_scan(hr, step_nm=50.0, probe=0.0)
    volume = xrf_volume(np.ones((1, 4, 40, 40)), elements=["Ni_K"], voxel_nm=10.0)
    with pytest.raises(SchemaError, match=r"simulate_scan takes maps .* got a volume .* Project a volume first "
                                          r"\(xrfsr_dask\.tomo\.project\)"):
        simulate_scan(volume, step_nm=50.0, probe=60.0)


def test_spectrum_cube_puts_each_element_at_its_line_with_detector_width():
    maps = _hr(np.stack([np.full((4, 5), 100.0), np.full((4, 5), 50.0)]), elements=["Mn_K", "Mo_L"])
    cube = spectrum_cube(maps, resolution_ev=130.0)
    assert cube.dims == ("energy", "y", "x") and cube.energy.attrs["units"] == "keV"
    np.testing.assert_allclose(cube.sum("energy").values, 150.0, rtol=1e-6)
    spectrum = cube.isel(y=0, x=0)
    mn = spectrum.sel(energy=slice(5.4, 6.4))
    centre = float((mn * mn.energy).sum() / mn.sum())
    width = math.sqrt(float((mn * (mn.energy - centre) ** 2).sum() / mn.sum()))
    assert centre == pytest.approx(5.899, abs=1e-3)
    assert width * 2.355 == pytest.approx(0.130, rel=0.01)
    assert float(spectrum.energy[int(spectrum.argmax("energy"))]) == pytest.approx(5.90, abs=0.01)
    with pytest.raises(ValueError, match="emission-line energy"):
        spectrum_cube(_hr(np.ones((1, 4, 4)), elements=["scatter"]))
