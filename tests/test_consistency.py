"""Data consistency of enhanced maps with their measurement: the scan operator, the Poisson check, refinement."""

import math

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from typer.testing import CliRunner

import xrfsr_dask as xs
from xrfsr_dask.cli import app
from xrfsr_dask.consistency import (
    ScanOperator,
    consistency,
    consistency_to_zarr,
    consistency_url,
    expected_deviance,
    poisson_deviance,
    refine,
    refine_array,
)
from xrfsr_dask.enhance import enhance, enhance_to_zarr
from xrfsr_dask.errors import (
    GridMismatchError,
    LabelMismatchError,
    MissingMetadataError,
    SchemaError,
    StoreExistsError,
    XrfsrWarning,
)
from xrfsr_dask.model import build_rdn, save_model
from xrfsr_dask.model.rdn import upsample_bicubic
from xrfsr_dask.probe import GaussianProbe

STEP, PROBE = 50.0, 60.0


def _scan(counts, *, size=200, elements=("Ni_K", "Co_K"), seed=1, background=100.0):
    hr = xs.nmc_particle((size, size), pixel_nm=STEP / 2, elements=list(elements), counts=counts,
                         background=background)
    lr = xs.simulate_scan(hr, step_nm=STEP, probe=PROBE, scan_mode="fly", noise=True, seed=seed)
    return hr, lr


def _bicubic(lr, like):
    return like.copy(data=upsample_bicubic(torch.from_numpy(lr.values[None]), 2)[0].numpy())


@pytest.fixture(scope="module")
def scan():
    """Truth on the 25 nm grid and its 50 nm fly scan: 100 x 100 scan pixels of a few hundred counts."""
    return _scan(400.0)


@pytest.fixture(scope="module")
def bright():
    """The same particle with Ni at about a thousand counts per scan pixel (Co a few hundred)."""
    return _scan(2000.0, size=128, background=50.0)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    torch.manual_seed(11)
    return str(save_model(build_rdn("tiny"), tmp_path_factory.mktemp("models") / "tiny"))


# --------------------------------------------------------------------------- the operator


@pytest.mark.parametrize("ratio", [2, 3])
@pytest.mark.parametrize("scan_mode", ["step", "fly"])
@pytest.mark.parametrize("fast_axis", ["x", "y"])
def test_forward_is_the_noise_free_scan(ratio, scan_mode, fast_axis):
    rng = np.random.default_rng(ratio)
    hr = xs.xrf_maps(rng.gamma(2.0, 50.0, size=(2, 14 * ratio, 11 * ratio)), elements=["Ni_K", "Co_K"],
                     step_nm=STEP / ratio)
    probe = GaussianProbe((70.0, 45.0), angle_deg=30.0)
    lr = xs.simulate_scan(hr, step_nm=STEP, probe=probe, scan_mode=scan_mode, fast_axis=fast_axis).values
    op = ScanOperator.from_scan(probe, step_nm=(STEP, STEP), ratio=(ratio, ratio), scan_mode=scan_mode,
                                fast_axis=fast_axis)
    np.testing.assert_allclose(op.forward(hr.values), lr, rtol=1e-5)


@pytest.mark.parametrize("ratio", [(1, 1), (2, 2), (3, 3), (4, 2), (2, 3)])
@pytest.mark.parametrize("scan_mode", ["step", "fly"])
def test_adjoint_is_exact(ratio, scan_mode):
    rng = np.random.default_rng(sum(ratio))
    op = ScanOperator.from_scan(GaussianProbe((80.0, 50.0), angle_deg=20.0), step_nm=(STEP, 1.5 * STEP),
                                ratio=ratio, scan_mode=scan_mode, fast_axis="y")
    x = rng.normal(size=(2, 3, 9 * ratio[0] + 1, 7 * ratio[1]))  # a trailing fine row outside the scan
    y = rng.normal(size=(2, 3, *op.lr_shape(x.shape)))
    lhs, rhs = np.sum(op.forward(x) * y), np.sum(x * op.adjoint(y, x.shape[-2:]))
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


def test_operator_refuses_bad_geometry():
    with pytest.raises(ValueError, match="odd sizes"):
        ScanOperator(np.ones((4, 5)), (2, 2))
    with pytest.raises(ValueError, match="two integers >= 1"):
        ScanOperator(np.ones((5, 5)), (2, 0))
    with pytest.raises(ValueError, match="y has LR shape"):
        ScanOperator(np.ones((5, 5)) / 25, (2, 2)).adjoint(np.ones((3, 3)), (8, 8))


# --------------------------------------------------------------------------- Poisson statistics


def test_deviance_and_its_expectation():
    assert poisson_deviance(np.array([0.0, 5.0]), np.array([0.0, 5.0])) == pytest.approx([2e-6, 0.0], abs=1e-12)
    rng = np.random.default_rng(0)
    for mu in (0.05, 0.5, 3.0, 30.0, 300.0):
        draws = rng.poisson(mu, size=400_000)
        mc = poisson_deviance(draws, np.full(draws.shape, mu))
        assert float(expected_deviance(np.array(mu))) == pytest.approx(mc.mean(), abs=4 * mc.std() / 630)
    assert float(expected_deviance(np.array(2e4))) == pytest.approx(1 + 1 / 12e4, rel=1e-6)


# --------------------------------------------------------------------------- the check: known answers


def test_the_truth_is_consistent(scan):
    hr, lr = scan
    check = consistency(hr, lr).compute()
    assert check.pixels.min() >= 10_000
    assert np.all((check.mean_deviance > 0.9) & (check.mean_deviance < 1.1))
    np.testing.assert_allclose(check.expected_mean_deviance, 1.0, atol=0.01)
    assert float(abs(check.excess_deviance).max()) < 0.1
    np.testing.assert_allclose(check.count_ratio, 1.0, atol=0.003)
    np.testing.assert_allclose(check.total_count_ratio, check.count_ratio, atol=1e-3)
    assert bool(check.consistent.all())
    assert check.deviance.dims == lr.dims and check.deviance.attrs["units"] == "1"
    assert check.expected.attrs["units"] == "counts"
    record = check.attrs["provenance"][-1]
    assert record["operation"] == "xrfsr_dask.consistency.consistency"
    assert record["parameters"]["probe_fwhm_nm"] == [PROBE, PROBE]
    assert check.attrs["ratio"] == [2, 2] and check.attrs["scan_mode"] == "fly"


def test_a_bright_feature_shows_where_it_is(scan):
    hr, lr = scan
    spot = hr.copy(data=hr.values.copy())
    spot.values[0, 121:123, 60:62] += 4000.0  # fine pixels 121-122, 60-61: LR pixel (60.5, 30.5)
    deviance = consistency(spot, lr).deviance.sel(element="Ni_K").values
    iy, ix = np.unravel_index(np.argmax(deviance), deviance.shape)
    assert abs(iy - 60.5) <= 1.5 and abs(ix - 30.5) <= 1.5
    assert deviance[iy, ix] > 100


def test_a_five_percent_flux_change_is_detected(scan):
    hr, lr = scan
    truth = consistency(hr, lr).compute()
    brighter = consistency(hr.copy(data=hr.values * 1.05), lr).compute()
    np.testing.assert_allclose(brighter.count_ratio, 1.05, atol=0.005)
    np.testing.assert_allclose(brighter.total_count_ratio, 1.05, atol=0.005)
    assert np.all(brighter.mean_deviance > truth.mean_deviance + 0.3)
    assert np.all(brighter.excess_deviance > 0.25)  # 5 % of ~400 counts is about one noise sigma
    assert not bool(brighter.consistent.any())


def test_bicubic_is_blurred_twice_and_flagged(bright):
    hr, lr = bright
    truth = consistency(hr, lr).compute().sel(element="Ni_K")
    bicubic = consistency(_bicubic(lr, hr), lr).compute().sel(element="Ni_K")
    assert float(bicubic.mean_deviance) > 2 * float(truth.mean_deviance)
    assert bool(truth.consistent) and not bool(bicubic.consistent)


def test_dask_equals_numpy_on_odd_chunks(scan):
    hr, lr = scan
    eager = consistency(hr, lr).compute()
    lazy = consistency(hr.chunk(y=46, x=58), lr.chunk(y=23, x=29))
    assert lazy.expected.chunks[1:] == ((23, 23, 23, 23, 8), (29, 29, 29, 13))
    lazy = lazy.compute()
    for name in ("expected", "deviance", "mean_deviance", "count_ratio", "total_count_ratio"):
        np.testing.assert_allclose(lazy[name], eager[name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_building_the_graph_computes_nothing(scan, no_dask_compute):
    hr, lr = scan
    with no_dask_compute():
        consistency(hr.chunk(y=64, x=64), lr.chunk(y=32, x=32))
        refine(hr.chunk(y=64, x=64), lr.chunk(y=32, x=32), iterations=3)


def test_a_series_and_a_stated_probe(scan):
    hr, lr = scan
    probe = GaussianProbe((80.0, 50.0))
    wide = xs.simulate_scan(hr, step_nm=STEP, probe=probe, scan_mode="fly", noise=True, seed=2)

    def stack(a):
        return xs.xrf_maps(np.stack([a.values, a.values], axis=1), elements=["Ni_K", "Co_K"],
                           step_nm=a.attrs["step_nm"], origin_nm=(float(a.y[0]), float(a.x[0])),
                           angles=[0.0, 90.0], probe_fwhm_nm=a.attrs["probe_fwhm_nm"], scan_mode="fly")

    stated = consistency(stack(hr), stack(wide), probe=(80.0, 50.0)).mean_deviance.values
    assert stated.shape == (2, 2) and np.all((stated > 0.9) & (stated < 1.1))
    # The metadata's round 63 nm probe (the geometric mean) does not describe an elliptical one as well.
    assert np.all(consistency(stack(hr), stack(wide)).mean_deviance.values > stated)


def test_a_cropped_enhanced_map_is_compared_where_it_covers(scan):
    hr, lr = scan
    check = consistency(hr.isel(y=slice(11, 150), x=slice(20, 120)), lr)
    assert check.attrs["crop"] == {"y": [6, 75], "x": [10, 60]} and check.deviance.shape == (2, 69, 50)
    assert float(check.x[0]) == float(lr.x[10])


# --------------------------------------------------------------------------- the check: bad input


def test_bad_inputs_are_named(scan):
    hr, lr = scan
    with pytest.raises(GridMismatchError, match=r"ratio 1.5 is not an integer"):
        consistency(xs.xrf_maps(np.ones((2, 30, 30)), elements=["Ni_K", "Co_K"], step_nm=STEP / 1.5), lr)
    shifted = hr.assign_coords(x=hr.x + 10.0)
    with pytest.raises(GridMismatchError, match="do not tile the scan pixels along x"):
        consistency(shifted, lr)
    with pytest.raises(GridMismatchError, match="covers no whole pixel"):
        consistency(hr.assign_coords(y=hr.y + 1e5), lr)
    unknown = lr.copy()
    unknown.attrs = {**lr.attrs, "probe_fwhm_nm": None}
    with pytest.raises(MissingMetadataError, match=r"probe_fwhm_nm.*Pass probe="):
        consistency(hr, unknown)
    assert float(consistency(hr, unknown, probe=PROBE).mean_deviance[0]) < 1.1
    with pytest.raises(LabelMismatchError, match=r"missing from enhanced: \['Co_K'\]"):
        consistency(hr.sel(element=["Ni_K"]), lr)
    flipped = consistency(hr.sel(element=["Co_K", "Ni_K"]), lr)  # order does not matter
    assert list(flipped.element.values) == ["Ni_K", "Co_K"]
    with pytest.raises(SchemaError, match="both must be maps"):
        consistency(hr.expand_dims(angle=[0.0], axis=1).assign_coords(angle=("angle", [0.0], {"units": "deg"})), lr)
    with pytest.raises(ValueError, match="halo must be an integer >= 4"):
        consistency(hr, lr, halo=2)
    per_second = lr.copy()
    per_second.attrs = {**lr.attrs, "units": "counts/s"}
    with pytest.warns(XrfsrWarning, match="not 'counts'"):
        consistency(hr, per_second)


# --------------------------------------------------------------------------- storage and the command line


def test_check_store_beside_the_enhanced_one(scan, tmp_path):
    hr, lr = scan
    xs.save(hr, str(tmp_path / "hr.zarr"), chunks={"y": 96, "x": 96}, progress=False)
    xs.save(lr, str(tmp_path / "lr.zarr"), chunks={"y": 48, "x": 48}, progress=False)
    url = consistency_url(str(tmp_path / "hr.zarr"))
    assert url == str(tmp_path / "hr.consistency.zarr")
    written = consistency_to_zarr(str(tmp_path / "hr.zarr"), str(tmp_path / "lr.zarr"))
    group = zarr.open_group(url, mode="r")
    assert group.attrs["xrfsr_dask"]["complete"] is True
    stored = xr.open_zarr(url, zarr_format=3, consolidated=False)
    np.testing.assert_allclose(stored.mean_deviance, consistency(hr, lr).mean_deviance, rtol=1e-6)
    assert stored.attrs["provenance"][-1]["operation"] == "xrfsr_dask.consistency.consistency"
    assert written.deviance.attrs["units"] == "1"
    with pytest.raises(StoreExistsError, match="overwrite=True"):
        consistency_to_zarr(str(tmp_path / "hr.zarr"), str(tmp_path / "lr.zarr"))


def test_cli_check_prints_a_verdict(scan, tmp_path):
    hr, lr = scan
    for name, data in (("hr", hr), ("lr", lr), ("flux", hr.copy(data=hr.values * 1.05))):
        xs.save(data, str(tmp_path / f"{name}.zarr"), progress=False)
    good = CliRunner().invoke(app, ["check", str(tmp_path / "hr.zarr"), str(tmp_path / "lr.zarr")])
    assert good.exit_code == 0, good.output
    assert "Ni_K: mean deviance" in good.output and "per scan pixel" in good.output
    assert "verdict: consistent" in good.output
    bad = CliRunner().invoke(app, ["check", str(tmp_path / "flux.zarr"), str(tmp_path / "lr.zarr"),
                                   "--probe-fwhm", "60", "--out", str(tmp_path / "c.zarr")])
    assert bad.exit_code == 1 and "verdict: NOT consistent: Ni_K, Co_K" in bad.output
    assert "count ratio 1.05" in bad.output and (tmp_path / "c.zarr").exists()


def test_enhance_to_zarr_writes_the_check(scan, tiny_path, tmp_path):
    _, lr = scan
    small = lr.isel(y=slice(0, 40), x=slice(0, 40))
    xs.save(small, str(tmp_path / "lr.zarr"), progress=False)
    enhance_to_zarr(str(tmp_path / "lr.zarr"), str(tmp_path / "hr.zarr"), tiny_path, check=True, progress=False)
    check = xr.open_zarr(str(tmp_path / "hr.consistency.zarr"), zarr_format=3, consolidated=False)
    assert check.deviance.shape == (2, 40, 40) and np.isfinite(check.mean_deviance.values).all()


def test_cli_enhance_refines_automatically_and_names_a_bad_refine(scan, tiny_path, tmp_path):
    _, lr = scan
    small = lr.isel(y=slice(0, 40), x=slice(0, 40))
    xs.save(small, str(tmp_path / "lr.zarr"), progress=False)
    done = CliRunner().invoke(app, ["enhance", str(tmp_path / "lr.zarr"), str(tmp_path / "hr.zarr"), "--model",
                                    tiny_path, "--refine", "auto", "--no-progress"])
    assert done.exit_code == 0, done.output
    written = xs.open_xrf(str(tmp_path / "hr.zarr"))
    record = written.attrs["provenance"][-1]
    assert record["operation"] == "xrfsr_dask.consistency.refine" and record["parameters"]["iterations"] == "auto"
    assert set(record["parameters"]["stopped_at"]) == {"Ni_K", "Co_K"}
    bad = CliRunner().invoke(app, ["enhance", str(tmp_path / "lr.zarr"), str(tmp_path / "other.zarr"), "--model",
                                   tiny_path, "--refine", "some"])
    assert bad.exit_code != 0 and "'some' is neither a whole number of iterations" in bad.output
    assert not (tmp_path / "other.zarr").exists()


def test_a_nan_pixel_of_the_enhanced_map_leaves_out_only_its_footprint(scan):
    hr, lr = scan
    holed = hr.copy(data=hr.values.copy())
    holed.values[:, 100, 100] = np.nan
    whole = consistency(holed, lr).compute()
    chunked = consistency(holed.chunk(y=64, x=64), lr.chunk(y=32, x=32)).compute()
    full = consistency(hr, lr).compute()
    for check in (whole, chunked):
        lost = int(full.pixels.values[0] - check.pixels.values[0])
        assert 1 <= lost <= 64  # the scan pixels whose probe footprint (4 sigma, plus the fly motion) covers it
        assert np.isnan(check.deviance.values[0, 50, 50]) and np.isfinite(check.deviance.values[0, 10, 10])
        np.testing.assert_allclose(check.mean_deviance, full.mean_deviance, rtol=0.02)
    assert bool(whole.consistent.all())


def test_an_element_without_counts_is_consistent_with_a_prediction_of_none(scan):
    hr, lr = scan
    empty = consistency(hr * 0.0, lr * 0.0).compute()
    assert bool(empty.consistent.all()) and np.isnan(empty.count_ratio.values).all()
    flagged = consistency(hr * 0.0 + 1.0, lr * 0.0).compute()  # predicts a count per pixel where none were seen
    assert not bool(flagged.consistent.any())


# --------------------------------------------------------------------------- refinement


@pytest.mark.parametrize("weight", [0.0, 0.3, 3.0])
def test_refinement_lowers_the_likelihood_monotonically(bright, weight):
    hr, lr = bright
    op = ScanOperator.from_scan(PROBE, step_nm=(STEP, STEP), ratio=(2, 2), scan_mode="fly")
    x, history = refine_array(_bicubic(lr, hr).values, lr.values, op, iterations=8, weight=weight, history=True)
    nll = np.array(history["nll"])
    objective = nll + np.array(history["penalty"])
    assert len(nll) == 9 and nll[-1] < nll[0]
    assert np.all(np.diff(nll) <= 1e-12 * abs(nll[0]))  # the likelihood of the measurement rises each step
    assert np.all(np.diff(objective) <= 1e-12 * abs(objective[0]))  # the MAP objective falls (MM guarantee)
    assert x.min() >= 0


def test_an_infinite_weight_keeps_the_network_output(bright):
    hr, lr = bright
    x0 = _bicubic(lr, hr)
    kept = refine(x0, lr, iterations=5, weight=math.inf).values
    np.testing.assert_array_equal(kept, np.maximum(x0.values, 0))
    nearly = refine(x0, lr, iterations=5, weight=1e9).values
    np.testing.assert_allclose(nearly, np.maximum(x0.values, 0), rtol=1e-5, atol=1e-3)


def test_refining_bicubic_moves_its_deviance_toward_one(bright):
    hr, lr = bright
    x0 = _bicubic(lr, hr)
    before = consistency(x0, lr).mean_deviance.sel(element=["Ni_K", "Co_K"]).values
    refined = refine(x0, lr, iterations=10, weight=1.0)
    after = consistency(refined, lr).mean_deviance.sel(element=["Ni_K", "Co_K"]).values
    assert np.all(after < before) and np.all(abs(after - 1) < abs(before - 1))
    record = refined.attrs["provenance"][-1]
    assert record["operation"] == "xrfsr_dask.consistency.refine"
    assert record["parameters"]["iterations"] == 10 and record["parameters"]["weight"] == 1.0


@pytest.mark.parametrize("weight", [0.1, 1.0])
def test_refinement_restores_the_measured_counts(scan, weight):
    hr, lr = scan
    refined = refine(hr.copy(data=hr.values * 1.05), lr, iterations=20, weight=weight)
    check = consistency(refined, lr).compute()
    # A flux error of the input shrinks to weight/(1 + weight) of itself: the measurement weighs 1, the input
    # `weight`.
    np.testing.assert_allclose(check.count_ratio, (1 + 1.05 * weight) / (1 + weight), atol=0.002)
    np.testing.assert_allclose(check.total_count_ratio, check.count_ratio, atol=0.002)
    if weight <= 0.1:
        np.testing.assert_allclose(check.count_ratio, 1.0, atol=0.01)


def test_refinement_keeps_counts_non_negative():
    rng = np.random.default_rng(3)
    x0 = rng.normal(5.0, 20.0, size=(1, 48, 48))  # a network output with negative pixels
    y = rng.poisson(3.0, size=(1, 24, 24)).astype(float)
    y[0, :4, :4] = 0
    op = ScanOperator.from_scan(PROBE, step_nm=(STEP, STEP), ratio=(2, 2), scan_mode="step")
    for weight in (0.0, 0.1, 10.0):
        assert refine_array(x0, y, op, iterations=15, weight=weight).min() >= 0


@pytest.mark.parametrize(("iterations", "weight"), [(5, 0.0), (20, 0.3)])
def test_stitched_refinement_equals_whole_map_refinement(bright, iterations, weight):
    hr, lr = bright
    x0 = _bicubic(lr, hr)
    whole = refine(x0, lr, iterations=iterations, weight=weight).values
    stitched = refine(x0.chunk(y=46, x=38), lr.chunk(y=23, x=19), iterations=iterations, weight=weight)
    assert len(stitched.chunks[1]) >= 2 and len(stitched.chunks[2]) >= 2  # seams in both directions
    span = float(whole.max() - whole.min())
    assert np.abs(stitched.values - whole).max() < 1e-5 * span


def test_auto_refinement_stops_where_the_deviance_meets_the_noise(bright):
    hr, lr = bright
    x0 = _bicubic(lr, hr)  # blurred twice: far more deviance than noise gives
    before = consistency(x0, lr).compute()
    assert bool((before.excess_deviance > 0.5).all())
    refined = refine(x0, lr, iterations="auto", weight=0.1)
    after = consistency(refined, lr).compute()
    # The discrepancy principle: stopped where the deviance is what Poisson noise alone gives, not below it.
    np.testing.assert_allclose(after.mean_deviance, after.expected_mean_deviance, rtol=0.03)
    stops = refined.attrs["provenance"][-1]["parameters"]["stopped_at"]
    assert set(stops) == {"Ni_K", "Co_K"} and all(0 < n < xs.consistency.AUTO_MAX_ITERATIONS for n in stops.values())
    assert any(n != round(n) for n in stops.values())  # the last update is taken in part


def test_auto_refinement_keeps_a_consistent_map():
    hr, lr = _scan(3.0, size=96, background=1.0)  # a few counts per pixel: the truth is within the noise
    assert bool((consistency(hr, lr).excess_deviance <= 0).all())
    refined = refine(hr, lr, iterations="auto")
    np.testing.assert_array_equal(refined.values, hr.values.astype(np.float32))
    assert refined.attrs["provenance"][-1]["parameters"]["stopped_at"] == {"Ni_K": 0.0, "Co_K": 0.0}


def test_auto_refinement_stitches_like_the_whole_map(bright):
    hr, lr = bright
    x0 = _bicubic(lr, hr)
    whole = refine(x0, lr, iterations="auto", weight=0.3)
    stitched = refine(x0.chunk(y=46, x=38), lr.chunk(y=23, x=19), iterations="auto", weight=0.3)
    assert len(stitched.chunks[1]) >= 2 and len(stitched.chunks[2]) >= 2
    stops = whole.attrs["provenance"][-1]["parameters"]["stopped_at"]
    assert stitched.attrs["provenance"][-1]["parameters"]["stopped_at"] == pytest.approx(stops, abs=1e-3)
    span = float(whole.values.max() - whole.values.min())
    assert np.abs(stitched.values - whole.values).max() < 1e-5 * span
    op = ScanOperator.from_scan(PROBE, step_nm=(STEP, STEP), ratio=(2, 2), scan_mode="fly")
    bare, history = refine_array(x0.values, lr.values, op, iterations="auto", weight=0.3, history=True)
    assert history["iterations"] == pytest.approx(list(stops.values()), abs=1e-3)
    np.testing.assert_allclose(bare, whole.values, atol=1e-5 * span)


def test_auto_refinement_stops_each_projection_of_a_series_on_its_own(bright):
    hr, lr = bright
    x0 = _bicubic(lr, hr)

    def stack(first, second):
        return xs.xrf_maps(np.stack([first.values, second.values], axis=1), elements=["Ni_K", "Co_K"],
                           step_nm=first.attrs["step_nm"], origin_nm=(float(first.y[0]), float(first.x[0])),
                           angles=[0.0, 90.0], probe_fwhm_nm=lr.attrs["probe_fwhm_nm"], scan_mode="fly")

    enhanced = stack(x0, hr)  # angle 0: bicubic (blurred twice); angle 90: the truth, as consistent as noise allows
    measured = stack(lr, lr)
    whole = refine(enhanced, measured, iterations="auto")
    stops = whole.attrs["provenance"][-1]["parameters"]["stopped_at"]
    assert set(stops) == {"Ni_K", "Co_K"} and all(len(v) == 2 for v in stops.values())
    assert all(v[0] > 1 and v[1] < 1 for v in stops.values())  # the blurred projection refines, the truth barely
    chunked = refine(enhanced.chunk(angle=1, y=46, x=38), measured.chunk(angle=1, y=23, x=19), iterations="auto")
    again = chunked.attrs["provenance"][-1]["parameters"]["stopped_at"]
    np.testing.assert_allclose([again[e] for e in stops], [stops[e] for e in stops], atol=1e-3)
    span = float(whole.values.max() - whole.values.min())
    assert np.abs(chunked.values - whole.values).max() < 1e-5 * span


def test_refine_options_are_checked(scan):
    hr, lr = scan
    with pytest.raises(ValueError, match="iterations must be an integer >= 0 or 'auto'"):
        refine(hr, lr, iterations=-1)
    with pytest.raises(ValueError, match="iterations must be an integer >= 0 or 'auto'.*'Auto'"):
        refine(hr, lr, iterations="Auto")
    with pytest.raises(ValueError, match="weight must be a number >= 0"):
        refine(hr, lr, weight=-1.0)
    with pytest.raises(ValueError, match="halo must be an integer >= 4"):
        refine(hr, lr, halo=1)


def test_enhance_names_bad_refine_options(scan, tiny_path):
    _, lr = scan
    with pytest.raises(ValueError, match=r"refine must be a whole number of iterations >= 0.*'auto'.*2.5"):
        enhance(lr, tiny_path, refine=2.5)
    with pytest.raises(ValueError, match=r"refine must be .*'often'"):
        enhance(lr, tiny_path, refine="often")
    with pytest.raises(ValueError, match=r"refine_weight must be a number >= 0.*-1"):
        enhance(lr, tiny_path, refine=3, refine_weight=-1.0)


def test_enhance_refines_after_the_network(scan, tiny_path):
    _, lr = scan
    small = lr.isel(y=slice(0, 48), x=slice(0, 48))
    refined = enhance(small, tiny_path, refine=4, refine_weight=0.5)
    expected = refine(enhance(small, tiny_path), small, iterations=4, weight=0.5)
    np.testing.assert_allclose(refined.values, expected.values, rtol=1e-6, atol=1e-4)
    operations = [r["operation"] for r in refined.attrs["provenance"][-2:]]
    assert operations == ["xrfsr_dask.enhance.enhance", "xrfsr_dask.consistency.refine"]


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
def test_cupy_matches_numpy(bright):
    import cupy

    hr, lr = bright
    op = ScanOperator.from_scan(PROBE, step_nm=(STEP, STEP), ratio=(2, 2), scan_mode="fly")
    x0 = _bicubic(lr, hr).values
    np.testing.assert_allclose(op.forward(cupy.asarray(x0)).get(), op.forward(x0), rtol=1e-10, atol=1e-9)
    y = lr.values.astype(np.float64)
    np.testing.assert_allclose(op.adjoint(cupy.asarray(y), x0.shape[-2:]).get(), op.adjoint(y, x0.shape[-2:]),
                               rtol=1e-10, atol=1e-9)
    gpu = refine_array(cupy.asarray(x0), cupy.asarray(y), op, iterations=10, weight=0.3).get()
    np.testing.assert_allclose(gpu, refine_array(x0, y, op, iterations=10, weight=0.3), rtol=1e-8, atol=1e-6)
    check = consistency(hr.copy(data=cupy.asarray(hr.values)), lr.copy(data=cupy.asarray(lr.values))).compute()
    np.testing.assert_allclose(check.mean_deviance.values, consistency(hr, lr).mean_deviance.values, rtol=1e-8)
