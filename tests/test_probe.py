"""Probe fitting: known Gaussians, curve_fit agreement, bad input, backends."""

import math

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
from scipy.optimize import curve_fit
from scipy.special import erf

from xrfsr_dask import _gaussfit
from xrfsr_dask.phantoms import nmc_particle
from xrfsr_dask.probe import (
    FWHM_PER_SIGMA,
    STATUS,
    GaussianProbe,
    TailedProbe,
    combined_resolution_nm,
    fit_line,
    fit_probe,
)
from xrfsr_dask.simulate import simulate_scan


def _noisy_probes(fwhm, pixel, n, *, size=48, peak=2e4, background=30.0, angle=0.0, seed=0):
    """``n`` Poisson realisations of a probe at random sub-pixel centres, plus the centres."""
    rng = np.random.default_rng(seed)
    axis = np.arange(size) * pixel
    mid = axis[size // 2]
    centres = mid + rng.uniform(-2 * pixel, 2 * pixel, size=(n, 2))
    probe = GaussianProbe(fwhm, angle_deg=angle)
    clean = np.stack([probe.image(axis, axis, center_nm=tuple(c)) * peak + background for c in centres])
    return rng.poisson(clean).astype(np.float64), centres


def _curve_fit_one(image, pixel):
    """The same model fitted by scipy's curve_fit, in (A, yc, xc, σ1, σ2, θ, B)."""
    ny, nx = image.shape
    yy, xx = np.meshgrid(np.arange(ny) * pixel, np.arange(nx) * pixel, indexing="ij")

    def model(coords, amp, yc, xc, sa, sb, phi, off):
        y, x = coords
        u = (x - xc) * np.cos(phi) + (y - yc) * np.sin(phi)
        v = -(x - xc) * np.sin(phi) + (y - yc) * np.cos(phi)
        return amp * np.exp(-0.5 * (u**2 / sa**2 + v**2 / sb**2)) + off

    iy, ix = np.unravel_index(np.argmax(image), image.shape)
    p0 = [image.max() - image.min(), iy * pixel, ix * pixel, 4 * pixel, 3 * pixel, 0.3, image.min()]
    popt, pcov = curve_fit(model, (yy.ravel(), xx.ravel()), image.ravel(), p0=p0)
    return popt, np.sqrt(np.diag(pcov))


def test_combined_resolution_reproduces_the_paper():
    assert round(combined_resolution_nm(61.6, 72.0), 1) == 94.8
    assert round(combined_resolution_nm(24.7, 51.8), 1) == 57.4
    both = combined_resolution_nm([61.6, 24.7], [72.0, 51.8])
    np.testing.assert_allclose(both, [94.8, 57.4], atol=0.05)
    with pytest.raises(ValueError, match="probe_nm must be finite and >= 0"):
        combined_resolution_nm(-1.0, 50.0)


@pytest.mark.parametrize(("fwhm", "pixel"), [(61.6, 5.0), (24.7, 2.0)])
def test_noisy_probe_fwhm_recovered_within_one_percent(fwhm, pixel):
    images, centres = _noisy_probes(fwhm, pixel, 25, seed=int(fwhm))
    fit = fit_probe(images, pixel_nm=pixel)
    assert fit.converged.all()
    np.testing.assert_allclose(fit.fwhm_nm, fwhm, rtol=0.01)
    np.testing.assert_allclose(fit.fwhm_major_nm, fwhm, rtol=0.01)
    np.testing.assert_allclose(fit.center_y_nm, centres[:, 0], atol=0.05 * pixel)
    np.testing.assert_allclose(fit.center_x_nm, centres[:, 1], atol=0.05 * pixel)
    # The reported standard errors describe the actual scatter of the estimates.
    scatter = float(fit.fwhm_nm.std())
    assert 0.4 < scatter / float(fit.fwhm_major_nm_stderr.mean()) < 2.5
    assert fit.fwhm_nm.attrs["units"] == "nm"
    assert fit.attrs["provenance"][-1]["operation"] == "xrfsr_dask.probe.fit_probe"


def test_matches_scipy_curve_fit_on_the_same_images():
    images, _ = _noisy_probes((70.0, 45.0), 5.0, 8, angle=25.0, peak=3000.0, seed=3)
    fit = fit_probe(images, pixel_nm=5.0, errors="uniform")  # curve_fit's standard errors
    for i, image in enumerate(images):
        popt, perr = _curve_fit_one(image, 5.0)
        amp, yc, xc, sa, sb, phi, off = popt
        sa, sb = abs(sa), abs(sb)
        if sa < sb:
            sa, sb, phi = sb, sa, phi + math.pi / 2
        angle = (math.degrees(phi) + 90) % 180 - 90
        one = fit.isel(image=i)
        ours = [one.amplitude, one.center_y_nm, one.center_x_nm, one.sigma_major_nm,
                one.sigma_minor_nm, one.angle_deg, one.offset]
        np.testing.assert_allclose([float(v) for v in ours], [amp, yc, xc, sa, sb, angle, off], rtol=1e-3)
        np.testing.assert_allclose(float(one.sigma_major_nm_stderr), perr[3] if popt[3] ** 2 >= popt[4] ** 2
                                   else perr[4], rtol=0.02)
        np.testing.assert_allclose(float(one.center_x_nm_stderr), perr[2], rtol=0.02)


def _scatter_over_stderr(fit, names):
    return {name: float(fit[name].std() / fit[f"{name}_stderr"].mean()) for name in names}


def test_robust_standard_errors_describe_the_scatter_of_poisson_fits():
    # 400 Poisson realisations of one elliptical probe at a fixed centre: the scatter of each estimate
    # is its true standard error (known to ±3.5 % from 400 samples).
    rng = np.random.default_rng(11)
    axis = np.arange(48) * 5.0
    clean = GaussianProbe((70.0, 45.0), angle_deg=25.0).image(axis, axis, center_nm=(118.0, 121.0)) * 2e4 + 30
    images = rng.poisson(clean, size=(400, 48, 48)).astype(np.float64)
    names = ["amplitude", "offset", "center_y_nm", "center_x_nm", "fwhm_major_nm", "fwhm_minor_nm", "angle_deg"]
    robust = _scatter_over_stderr(fit_probe(images, pixel_nm=5.0), names)
    assert all(0.88 < ratio < 1.12 for ratio in robust.values()), robust
    # curve_fit's estimate assumes the background's noise at the peak too: 2-3 times too small there.
    uniform = _scatter_over_stderr(fit_probe(images, pixel_nm=5.0, errors="uniform"), names)
    assert uniform["amplitude"] > 2.5 and uniform["fwhm_major_nm"] > 1.8, uniform


def test_robust_standard_errors_of_a_knife_edge():
    rng = np.random.default_rng(12)
    x = np.arange(64) * 4.0
    edge = 500 * (1 + erf((x - 130) / (np.sqrt(2) * 24.7 / FWHM_PER_SIGMA))) / 2 + 20
    fit = fit_line(rng.poisson(edge, size=(800, 64)).astype(np.float64), kind="knife-edge", pixel_nm=4.0)
    ratios = _scatter_over_stderr(fit, ["amplitude", "offset", "center_nm", "fwhm_nm"])
    assert all(0.9 < ratio < 1.1 for ratio in ratios.values()), ratios
    assert fit.attrs["provenance"][-1]["parameters"]["errors"] == "robust"
    with pytest.raises(ValueError, match="errors must be 'robust' or 'uniform'"):
        fit_line(edge, kind="knife-edge", pixel_nm=4.0, errors="poisson")


def test_rotated_elliptical_probe_and_angle_convention():
    axis = np.arange(40) * 5.0
    image = GaussianProbe((60.0, 30.0), angle_deg=120.0).image(axis, axis, center_nm=(97.0, 101.0))
    fit = fit_probe(image * 500 + 5, pixel_nm=5.0)
    assert fit.converged
    assert float(fit.angle_deg) == pytest.approx(-60.0, abs=1e-6)  # 120 deg is -60 deg for an axis
    assert float(fit.fwhm_major_nm) == pytest.approx(60.0, rel=1e-8)
    assert float(fit.fwhm_minor_nm) == pytest.approx(30.0, rel=1e-8)
    assert float(fit.fwhm_nm) == pytest.approx(math.sqrt(60 * 30), rel=1e-8)
    probe = GaussianProbe.from_fit(fit)
    assert probe.fwhm_pair_nm == pytest.approx((60.0, 30.0)) and probe.angle_deg == pytest.approx(-60.0)


def test_anisotropic_pixels_are_fitted_in_nm():
    y, x = np.arange(50) * 4.0, np.arange(40) * 6.0
    probe = GaussianProbe((50.0, 35.0), angle_deg=30.0)
    da = xr.DataArray(
        probe.image(y, x, center_nm=(101.0, 118.0)) * 100,
        dims=("y", "x"),
        coords={"y": ("y", y, {"units": "nm"}), "x": ("x", x, {"units": "nm"})},
    )
    fit = fit_probe(da)
    assert float(fit.fwhm_major_nm) == pytest.approx(50.0, rel=1e-6)
    assert float(fit.fwhm_minor_nm) == pytest.approx(35.0, rel=1e-6)
    assert float(fit.angle_deg) == pytest.approx(30.0, abs=1e-4)
    assert (float(fit.center_y_nm), float(fit.center_x_nm)) == pytest.approx((101.0, 118.0))


def test_complex_probe_fits_its_intensity():
    axis = np.arange(32) * 5.0
    intensity = GaussianProbe(40.0).image(axis, axis, center_nm=(80.0, 70.0))
    field = np.sqrt(intensity) * np.exp(1j * 0.4 * np.add.outer(np.arange(32), np.arange(32)))
    assert float(fit_probe(field, pixel_nm=5.0).fwhm_nm) == pytest.approx(40.0, rel=1e-9)


def test_batch_marks_bad_items_and_fits_the_rest():
    axis = np.arange(32) * 5.0
    good = GaussianProbe(30.0).image(axis, axis, center_nm=(80.0, 75.0)) * 100
    nan = good.copy()
    nan[3, 4] = np.nan
    border = GaussianProbe(30.0).image(axis, axis, center_nm=(0.0, 80.0))
    batch = np.stack([good, np.zeros_like(good), nan, border, good])
    fit = fit_probe(batch, pixel_nm=5.0)
    assert fit.reason.values.tolist() == [
        "converged", "no_peak", "non_finite_input", "peak_at_border", "converged"
    ]
    assert fit.converged.values.tolist() == [True, False, False, False, True]
    np.testing.assert_allclose(fit.fwhm_nm.values[[0, 4]], 30.0, rtol=1e-9)
    assert np.isnan(fit.fwhm_nm.values[1:4]).all()
    assert fit.status.attrs["flag_meanings"].split() == list(STATUS)


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((16, 16)), "no peak above its background"),
        (np.full((16, 16), np.nan), "NaN or infinite"),
        (GaussianProbe(20.0).image(np.arange(16) * 5.0, np.arange(16) * 5.0, center_nm=(40.0, 0.0)),
         "brightest pixel on the border"),
        (np.ones((4, 4)), "at least 5 along each"),
    ],
    ids=["zeros", "nan", "border", "tiny"],
)
def test_single_bad_image_raises(image, match):
    with pytest.raises(ValueError, match=match):
        fit_probe(image, pixel_nm=5.0)


def test_input_errors_name_the_problem():
    axis = np.arange(16) * 0.005
    da = xr.DataArray(np.ones((16, 16)), dims=("y", "x"),
                      coords={"y": ("y", axis, {"units": "um"}), "x": ("x", axis, {"units": "um"})})
    with pytest.raises(ValueError, match="units 'um'.*convert"):
        fit_probe(da)
    with pytest.raises(ValueError, match="pass pixel_nm"):
        fit_probe(np.ones((16, 16)))
    with pytest.raises(ValueError, match="expected \\('y', 'x'\\)"):
        fit_probe(xr.DataArray(np.ones((16, 16)), dims=("a", "b")), pixel_nm=5.0)
    with pytest.raises(ValueError, match="max_iter must be a positive integer"):
        fit_probe(np.ones((16, 16)), pixel_nm=5.0, max_iter=0)
    with pytest.raises(ValueError, match="fwhm_nm must be one positive number"):
        GaussianProbe(-3.0)


def test_max_iterations_is_reported():
    images, _ = _noisy_probes(61.6, 5.0, 3, seed=9)
    fit = fit_probe(images, pixel_nm=5.0, max_iter=1)
    assert set(fit.reason.values.tolist()) == {"max_iterations"}
    assert (fit.iterations == 1).all()


def test_dask_input_stays_lazy_and_equals_numpy(no_dask_compute):
    images, _ = _noisy_probes(61.6, 5.0, 7, seed=4)
    da = xr.DataArray(dsa.from_array(images, chunks=(3, 20, 20)), dims=("angle", "y", "x"))
    with no_dask_compute():
        lazy = fit_probe(da, pixel_nm=5.0)
    assert isinstance(lazy.fwhm_nm.data, dsa.Array)
    eager = fit_probe(images, pixel_nm=5.0)
    xr.testing.assert_allclose(lazy.compute().drop_attrs(), eager.rename(image="angle").drop_attrs(), rtol=1e-12)


def test_batch_larger_than_one_working_set_equals_separate_calls():
    images, _ = _noisy_probes(61.6, 5.0, 1200, size=32, seed=5)
    split = fit_probe(images, pixel_nm=5.0)  # 1200 x 32 x 32 pixels: several solver batches
    single = xr.concat([fit_probe(images[i : i + 400], pixel_nm=5.0) for i in (0, 400, 800)], "image")
    np.testing.assert_allclose(split.fwhm_nm, single.fwhm_nm, rtol=1e-12)


@pytest.mark.parametrize("errors", ["robust", "uniform"])
def test_compiled_cpu_fit_equals_the_batched_solver(errors):
    # The CPU kernel (one image at a time) and the batched solver that CuPy runs, both on NumPy here:
    # the same algorithm, so the same estimates, errors and iteration counts to rounding.
    images, _ = _noisy_probes((70.0, 45.0), 5.0, 40, size=32, angle=25.0, peak=3000.0, seed=21)
    images[3, 5, 6] = np.inf
    images[4] = 7.0
    images[5, 0, 9] = 1e9
    axis = np.arange(32) - 15.5
    options = {"kind": "probe", "max_iter": 200, "xtol": 1.49012e-8, "ftol": 1.49012e-8, "errors": errors}
    compiled = _gaussfit.fit_arrays(images, [axis, axis], single=False, **options)
    status = _gaussfit._screen(np, images, peaked=True)
    good = status == 0
    start = _gaussfit._start2d(np, images[good], axis, axis)
    options.pop("kind")
    batched = _gaussfit.solve_batched(np, images[good].reshape(good.sum(), -1), start, [axis, axis],
                                      kind="probe", **options)
    assert [STATUS[int(code)] for code in compiled[3:6, 16]] == ["non_finite_input", "no_peak", "peak_at_border"]
    expected = status.astype(np.float64)
    expected[good] = batched[:, 16]
    np.testing.assert_array_equal(compiled[:, 16], expected)
    np.testing.assert_allclose(compiled[good, :15], batched[:, :15], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(compiled[good, 15], batched[:, 15])  # iterations
    assert np.isnan(compiled[~good, :15]).all()



def test_moment_start_of_a_clean_gaussian_is_within_a_percent_of_its_widths():
    # Pixels above a quarter of the peak, weighted by their values, have second moments smaller than σ² by
    # _lm.CUT_VARIANCE (1.859); a start that scales by 2 is 3.7 % wide and costs the fit one more iteration.
    axis = np.arange(96) - 47.3
    image = GaussianProbe((30.0, 18.0), angle_deg=30.0).image(axis, axis)[None] * 1000.0
    amp, yc, xc, sa, sb, phi, off = _gaussfit._start2d(np, image, axis, axis)[0]
    np.testing.assert_allclose([sa, sb], np.array([30.0, 18.0]) / FWHM_PER_SIGMA, rtol=0.01)
    assert np.rad2deg(phi) == pytest.approx(30.0, abs=0.5)
    assert abs(yc) < 0.1 and abs(xc) < 0.1 and abs(off) < 0.1

def test_gaussian_line_spread():
    x = np.arange(120) * 2.0
    rng = np.random.default_rng(1)
    sigma = 24.7 / FWHM_PER_SIGMA
    lines = rng.poisson(2e4 * np.exp(-0.5 * ((x - 118.0) / sigma) ** 2) + 20, size=(10, 120)).astype(float)
    fit = fit_line(xr.DataArray(lines, dims=("scan", "x"), coords={"x": ("x", x, {"units": "nm"})}))
    assert fit.converged.all()
    np.testing.assert_allclose(fit.fwhm_nm, 24.7, rtol=0.01)
    np.testing.assert_allclose(fit.center_nm, 118.0, atol=0.2)


@pytest.mark.parametrize("step", [4e4, -3e4], ids=["rising", "falling"])
def test_knife_edge_matches_curve_fit(step):
    x = np.arange(80) * 3.0
    sigma = 61.6 / FWHM_PER_SIGMA
    clean = step * (1 + erf((x - 121.0) / (math.sqrt(2) * sigma))) / 2 + 5e4
    edge = np.random.default_rng(2).poisson(clean).astype(float)
    fit = fit_line(edge, kind="knife-edge", pixel_nm=3.0)
    assert bool(fit.converged)
    assert float(fit.fwhm_nm) == pytest.approx(61.6, rel=0.02)

    def model(x, amp, x0, sig, off):
        return amp * (1 + erf((x - x0) / (math.sqrt(2) * sig))) / 2 + off

    popt, _ = curve_fit(model, x, edge, p0=[step, 120.0, 20.0, 5e4])
    ours = [float(fit.amplitude), float(fit.center_nm), float(fit.sigma_nm), float(fit.offset)]
    np.testing.assert_allclose(ours, [popt[0], popt[1], abs(popt[2]), popt[3]], rtol=1e-3)


def test_line_kind_is_checked():
    with pytest.raises(ValueError, match="kind must be 'gaussian' or 'knife-edge'"):
        fit_line(np.ones(20), kind="erf", pixel_nm=1.0)


@pytest.mark.gpu
def test_cupy_fit_equals_numpy():
    import cupy

    images, _ = _noisy_probes((61.6, 40.0), 5.0, 64, angle=15.0, seed=6)
    on_gpu = fit_probe(cupy.asarray(images), pixel_nm=5.0)
    on_cpu = fit_probe(images, pixel_nm=5.0)
    assert isinstance(on_gpu.fwhm_nm.data, np.ndarray)
    for name in ("fwhm_major_nm", "fwhm_minor_nm", "angle_deg", "center_x_nm", "amplitude"):
        np.testing.assert_allclose(on_gpu[name], on_cpu[name], rtol=1e-9)


def test_tailed_probe_splits_its_power_as_stated():
    core = GaussianProbe((60.0, 45.0), angle_deg=30.0)
    probe = TailedProbe(core, tail=0.1, tail_width=4.0, lobes=0.08, lobe_offset=1.6)
    grid = np.arange(-1200.0, 1200.5, 2.0)
    whole = probe.image(grid, grid, normalize="sum")
    # The core alone, weighted by its share, is 82 % of the power.
    core_share = (1 - 0.1 - 0.08) * core.image(grid, grid, normalize="sum")
    inner = np.hypot(*np.meshgrid(grid, grid, indexing="ij")) < 30.0
    # The mixture, component by component, each normalised to unit power.
    halo = GaussianProbe(4.0 * 60.0).image(grid, grid, normalize="sum")
    c, s_ = np.cos(np.radians(30.0)), np.sin(np.radians(30.0))
    lobes = np.mean([core.image(grid, grid, center_nm=(k * 96.0 * dy, k * 96.0 * dx), normalize="sum")
                     for dy, dx in ((s_, c), (c, -s_)) for k in (1.0, -1.0)], axis=0)
    np.testing.assert_allclose(whole, core_share + 0.1 * halo + 0.08 * lobes, rtol=1e-6, atol=1e-12)
    assert 0.0 < whole[inner].sum() - core_share[inner].sum() < 0.05  # tails and lobes add little at the centre
    assert probe.fwhm_pair_nm == (60.0, 45.0)
    # Side lobes along the major axis (30 degrees from +x), 1.6 FWHM = 96 nm out.
    y, x = 96.0 * np.sin(np.radians(30.0)), 96.0 * np.cos(np.radians(30.0))
    assert probe.image(np.array([y]), np.array([x]))[0, 0] > 5 * core.image(np.array([y]), np.array([x]))[0, 0]
    assert probe.reach_nm(4.0) >= 4.0 * 4.0 * 60.0 / FWHM_PER_SIGMA
    with pytest.raises(ValueError, match="together < 1"):
        TailedProbe(core, tail=0.6, lobes=0.5)


def test_a_scan_with_a_tailed_probe_keeps_the_counts():
    hr = nmc_particle((200, 200), pixel_nm=5.0, seed=2, background=50.0)
    probe = TailedProbe(GaussianProbe(50.0), tail=0.15, tail_width=5.0, lobes=0.1)
    lr = simulate_scan(hr, step_nm=50.0, probe=probe, scan_mode="fly")
    inner = (slice(None), slice(5, -5), slice(5, -5))
    hr_mean = hr.coarsen(y=10, x=10).mean().values[inner].mean()
    assert abs(float(lr.values[inner].mean()) / hr_mean - 1) < 0.02
    assert lr.attrs["provenance"][-1]["parameters"]["probe_tails"]["lobes"] == 0.1


def test_as_probe_reads_what_the_caller_gave_or_the_data():
    from xrfsr_dask import MissingMetadataError, xrf_maps
    from xrfsr_dask.probe import as_probe

    assert as_probe(np.float32(60.0)).fwhm_pair_nm == (60.0, 60.0)
    assert as_probe([70, 45]).fwhm_pair_nm == (70.0, 45.0)
    tailed = TailedProbe(GaussianProbe(50.0), tail=0.1)
    assert as_probe(tailed) is tailed
    maps = xrf_maps(np.ones((1, 8, 8)), elements=["Ni_K"], step_nm=50.0, probe_fwhm_nm=61.6)
    assert as_probe(None, maps).fwhm_pair_nm == (61.6, 61.6)
    with pytest.raises(MissingMetadataError, match=r"measured.attrs\['probe_fwhm_nm'\] is None.*Pass probe="):
        as_probe(None, maps.assign_attrs(probe_fwhm_nm=None), name="measured")
    with pytest.raises(TypeError, match="probe must be a FWHM in nm"):
        as_probe("60 nm")
    with pytest.raises(TypeError, match="probe must be a FWHM in nm"):
        as_probe(True)
