"""The end-to-end demo and its report, run once at the smallest size through the CLI.

The smallest size is the bundled model's receptive field (rounded up to a
multiple of 4), read from the model itself, so the test follows the model
the demo uses. The suite turns :class:`~xrfsr_dask.errors.XrfsrWarning` into
errors, so a projection smaller than the receptive field fails the run.
"""

import html
import json
import math
import warnings

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from xrfsr_dask import open_xrf, store_status
from xrfsr_dask.cli import app
from xrfsr_dask.consistency import AUTO_MAX_ITERATIONS
from xrfsr_dask.demo import AREA_UNITS, MODEL, OPTICS, REFINE_ITERATIONS, VOLUME_UNITS
from xrfsr_dask.errors import XrfsrWarning
from xrfsr_dask.model import load_model

runner = CliRunner()

FIELD = 2 * load_model(MODEL).config.receptive_radius + 1
"""The receptive field of the demo's model in LR pixels."""
SIZE = 4 * math.ceil(FIELD / 4)
ANGLES = 24


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = runner.invoke(app, ["demo", "--out", str(out), "--size", str(SIZE), "--angles", str(ANGLES)])
    assert result.exit_code == 0, result.output
    return out, result.output, json.loads((out / "results.json").read_text()), caught


def test_no_library_warnings_and_projections_cover_the_receptive_field(demo):
    _, output, results, caught = demo
    ours = [str(w.message) for w in caught if issubclass(w.category, XrfsrWarning)]
    assert not ours, ours
    assert "receptive field" not in output
    settings = results["settings"]
    assert settings["receptive_field_px"] == FIELD
    assert min(settings["rows"], settings["size"]) >= FIELD


def test_every_stage_reports_progress(demo):
    _, output, _, _ = demo
    stages = [line for line in output.splitlines() if line.startswith("[")]
    assert [s.split("·")[0].strip() for s in stages if "/23" in s][:3] == ["[1/23", "[2/23", "[3/23"]
    assert "done in" in output and "report/index.html" in output


def test_stores_are_complete_with_the_grids_of_each_optic(demo):
    out, _, results, _ = demo
    rows = results["settings"]["rows"]
    for optic in OPTICS:
        folder = out / optic.name
        for name in ("truth", "lr_a", "lr_b", "hr_a", "hr_b", "lr_volume_a", "lr_volume_b", "hr_volume_a",
                     "hr_volume_b"):
            assert store_status(str(folder / f"{name}.zarr")).complete, name
        lr, hr = open_xrf(str(folder / "lr_a.zarr")), open_xrf(str(folder / "hr_a.zarr"))
        assert lr.shape == (4, ANGLES, rows, SIZE) and hr.shape == (4, ANGLES, 2 * rows, 2 * SIZE)
        np.testing.assert_allclose(lr.attrs["step_nm"], optic.step_nm)
        np.testing.assert_allclose(hr.attrs["step_nm"], optic.step_nm / 2)
        b = open_xrf(str(folder / "lr_b.zarr"))
        # Interleaved angles: dataset b sits half an angular step after a.
        np.testing.assert_allclose(b.angle.values - lr.angle.values, 180 / ANGLES / 2)
        volume = open_xrf(str(folder / "hr_volume_a.zarr"))
        assert volume.dims == ("element", "z", "y", "x") and volume.shape == (4, 2 * rows, 2 * SIZE, 2 * SIZE)
        assert results["optics"][optic.name]["hr_voxel_nm"] == optic.step_nm / 2


def test_numbers_are_physical(demo):
    _, _, results, _ = demo
    for optic in OPTICS:
        numbers = results["optics"][optic.name]
        # The probe fit recovers the simulated probe (geometric-mean FWHM) within 3 %.
        assert abs(numbers["probe_fit_nm"]["geometric_mean"] / optic.probe_nm - 1) < 0.03
        # No resolution is finer than the Nyquist limit of its grid: a half period of one voxel, a full
        # period of two; the full period is twice the half period.
        assert "half period 1/(2f)" in numbers["resolution_convention"]
        for grid, voxel in (("lr", optic.step_nm), ("hr", optic.step_nm / 2)):
            for key in (grid, f"{grid}_truth"):
                half, full = numbers[f"{key}_half_period_nm"], numbers[f"{key}_full_period_nm"]
                assert half is None or half >= voxel * 0.999
                assert half is None or full == pytest.approx(2 * half)
        # Against the ground truth, the enhanced volume resolves finer detail than the measured one.
        assert numbers["hr_truth_half_period_nm"] < 0.9 * numbers["lr_truth_half_period_nm"]
        # The combined resolution uses the LR half period, as the paper does.
        expected = np.hypot(numbers["probe_fit_nm"]["geometric_mean"], numbers["lr_half_period_nm"])
        assert numbers["combined_half_period_nm"] == pytest.approx(expected)
        assert set(numbers["per_element"]["Ni_K"]) == {
            f"{grid}_{t}_half_period_nm" for grid in ("lr", "hr") for t in ("half-bit", "one-bit", "truth")}
        psnr = numbers["psnr_db"]
        assert psnr["lr"]["paper"] == pytest.approx(2 * psnr["lr"]["standard"])


def test_report_has_the_six_figures_and_the_paper_table(demo):
    out, _, results, _ = demo
    page = (out / "report" / "index.html").read_text()
    for number in ("61.6 nm", "24.7 nm", "72.0 nm", "51.8 nm", "22.0 nm", "24.5 nm", "94.8 nm", "57.4 nm",
                   "41.6 dB", "41.3 dB", "32.7 dB", "20.6 dB"):
        assert number in page, number
    fzp = results["optics"]["FZP"]
    assert f"{fzp['probe_fit_nm']['geometric_mean']:.1f} nm (major " in page
    assert "LR resolution, FSC half-bit, half period 1/(2f)" in page
    assert f"{fzp['lr_half_period_nm']:.1f} nm" in page


def test_fsc_between_enhanced_datasets_is_recorded_and_shown(demo):
    """The demo runs the paper's HR FSC (two enhanced datasets): the library's warning is kept, not lost."""
    out, _, results, _ = demo
    page = (out / "report" / "index.html").read_text()
    assert "<h2>FSC of enhanced data</h2>" in page and "xrfsr_dask.consistency" in page
    for optic in OPTICS:
        notes = results["optics"][optic.name]["fsc_warnings"]
        # One warning, for the HR pair only: LR volumes and the FSC against the ground truth do not warn.
        assert len(notes) == 1
        assert notes[0].startswith(f"{optic.name}, FSC of the HR volumes a and b: FSC between two enhanced")
        assert "not the resolution" in notes[0]
        assert html.escape(notes[0]) in page
    for name in [f"S{n}" for n in range(1, 7)] + ["C1"]:
        assert f'src="{name}.png"' in page
        image = imread(out / "report" / f"{name}.png")
        assert min(image.shape[:2]) >= 300 and image[..., :3].std() > 0.05
    assert "What the FSC between two enhanced datasets shows" in page and "What it does not show" in page
    assert "Why this run's numbers differ from the paper's" in page


def test_one_physical_scale_for_lr_hr_and_truth(demo):
    """Volumes in counts per (10 nm)³: equal content gives equal means and equal low-frequency PSDs."""
    _, _, results, _ = demo
    for optic in OPTICS:
        numbers = results["optics"][optic.name]
        assert numbers["units"] == {"maps": AREA_UNITS, "volumes": VOLUME_UNITS}
        density = numbers["mean_density"]
        # FBP keeps the mean: LR and HR voxels of different sizes read the truth's density within 2 %.
        for grid in ("lr", "hr"):
            assert density[grid] == pytest.approx(density["truth"], rel=0.02), grid
        # Per unit volume, HR and LR spectra agree where both hold the particle's shape (not 4x apart).
        assert 0.7 < numbers["psd_hr_over_lr_low_frequency"] < 1.3


def test_consistency_numbers_are_recorded_and_sane(demo):
    _, _, results, _ = demo
    assert results["settings"]["refine_iterations"] == REFINE_ITERATIONS
    for optic in OPTICS:
        check = results["optics"][optic.name]["consistency"]
        assert check["refine_iterations"] == REFINE_ITERATIONS and check["projections"] == min(16, ANGLES)
        stops = check["refine_stops"]
        assert 0 <= stops["min"] <= stops["shown"] <= stops["max"] <= AUTO_MAX_ITERATIONS
        for name in ("truth", "hr", "refined"):
            assert math.isfinite(check["mean_deviance"][name]) and check["mean_deviance"][name] > 0
            assert 0.8 < check["count_ratio"][name] < 1.2
            assert 0.8 < check["total_count_ratio"][name] < 1.2
        # The noise-free projection the scan saw is consistent with it: its deviance is Poisson noise.
        truth_excess = check["mean_deviance"]["truth"] - check["expected_mean_deviance"]["truth"]
        assert abs(truth_excess) < 0.25
        # MAP-EM lowers the negative log-likelihood, hence the mean deviance, at every step.
        assert check["mean_deviance"]["refined"] <= check["mean_deviance"]["hr"] + 1e-6
        ladder = [entry["mean_deviance"] for entry in check["refine_ladder"]]
        assert all(b <= a + 1e-6 for a, b in zip(ladder, ladder[1:], strict=False))
        for name in ("hr", "refined"):
            assert math.isfinite(check["edge_overshoot_percent"][name])
            assert math.isfinite(check["error_vs_truth_percent"][name])
        assert len(check["edge_excess_percent"]["distance_nm"]) == len(check["edge_excess_percent"]["hr"])


def test_report_has_the_consistency_figure_table_and_truth_slices(demo):
    out, _, results, _ = demo
    page = (out / "report" / "index.html").read_text()
    assert "<h2>Consistency with the measured counts</h2>" in page
    for column in ("mean deviance", "Poisson noise alone", "count ratio (forward / measured)", "total-count ratio",
                   "RMS error against the truth", "edge overshoot (% of step height)"):
        assert f"<th>{html.escape(column)}</th>" in page, column
    for optic in OPTICS:
        check = results["optics"][optic.name]["consistency"]
        assert f"HR {check['mean_deviance']['hr']:.3f}" in page
        assert f"refined {check['total_count_ratio']['refined']:.4f}" in page
        assert f"{check['edge_overshoot_percent']['hr']:+.1f} %" in page
    assert f"enhance(..., refine={REFINE_ITERATIONS!r})" in html.unescape(page)
    # S5 has a ground-truth row beside LR and HR, on one physical scale; S5, S6 and C1 state the units.
    assert "ground truth averaged onto the HR voxels" in page and "counts per (10 nm)³" in page
    s5 = imread(out / "report" / "S5.png")
    assert s5.shape[0] > 600  # three rows of slices per optic


def test_existing_output_is_refused_and_bad_sizes_named(demo):
    out, _, _, _ = demo
    result = runner.invoke(app, ["demo", "--out", str(out), "--size", str(SIZE)])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "report" / "index.html").exists()
    result = runner.invoke(app, ["demo", "--out", str(out.parent / "other"), "--size", "30"])
    assert result.exit_code == 2 and "multiple of 4" in result.output
    if FIELD > 32:
        result = runner.invoke(app, ["demo", "--out", str(out.parent / "other"), "--size", "32"])
        assert result.exit_code == 2 and "receptive field" in result.output and f"--size {SIZE}" in result.output


def test_the_demo_enhances_with_the_bundled_default_for_series():
    from xrfsr_dask.demo import MODEL
    from xrfsr_dask.model import DEFAULT_MODELS

    assert MODEL == DEFAULT_MODELS["series"]
