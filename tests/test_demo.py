"""The end-to-end demo and its report, run once at the smallest size through the CLI."""

import json

import numpy as np
import pytest
from matplotlib.image import imread
from typer.testing import CliRunner

from xrfsr_dask import open_xrf, store_status
from xrfsr_dask.cli import app
from xrfsr_dask.demo import OPTICS

runner = CliRunner()

pytestmark = pytest.mark.filterwarnings("ignore:the maps .* are smaller than the network's receptive field")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "out"
    result = runner.invoke(app, ["demo", "--out", str(out), "--size", "32", "--angles", "24"])
    assert result.exit_code == 0, result.output
    return out, result.output, json.loads((out / "results.json").read_text())


def test_every_stage_reports_progress(demo):
    _, output, _ = demo
    stages = [line for line in output.splitlines() if line.startswith("[")]
    assert [s.split("·")[0].strip() for s in stages if "/21" in s][:3] == ["[1/21", "[2/21", "[3/21"]
    assert "done in" in output and "report/index.html" in output


def test_stores_are_complete_with_the_grids_of_each_optic(demo):
    out, _, results = demo
    for optic in OPTICS:
        folder = out / optic.name
        for name in ("truth", "lr_a", "lr_b", "hr_a", "hr_b", "lr_volume_a", "lr_volume_b", "hr_volume_a",
                     "hr_volume_b"):
            assert store_status(str(folder / f"{name}.zarr")).complete, name
        lr, hr = open_xrf(str(folder / "lr_a.zarr")), open_xrf(str(folder / "hr_a.zarr"))
        assert lr.shape == (4, 24, 8, 32) and hr.shape == (4, 24, 16, 64)
        np.testing.assert_allclose(lr.attrs["step_nm"], optic.step_nm)
        np.testing.assert_allclose(hr.attrs["step_nm"], optic.step_nm / 2)
        b = open_xrf(str(folder / "lr_b.zarr"))
        # Interleaved angles: dataset b sits half an angular step after a.
        np.testing.assert_allclose(b.angle.values - lr.angle.values, 180 / 24 / 2)
        volume = open_xrf(str(folder / "hr_volume_a.zarr"))
        assert volume.dims == ("element", "z", "y", "x") and volume.shape == (4, 16, 64, 64)
        assert results["optics"][optic.name]["hr_voxel_nm"] == optic.step_nm / 2


def test_numbers_are_physical(demo):
    _, _, results = demo
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
    out, _, results = demo
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
    import html

    out, _, results = demo
    page = (out / "report" / "index.html").read_text()
    assert "<h2>FSC of enhanced data</h2>" in page and "xrfsr_dask.consistency" in page
    for optic in OPTICS:
        notes = results["optics"][optic.name]["fsc_warnings"]
        # One warning, for the HR pair only: LR volumes and the FSC against the ground truth do not warn.
        assert len(notes) == 1
        assert notes[0].startswith(f"{optic.name}, FSC of the HR volumes a and b: FSC between two enhanced")
        assert "not the resolution" in notes[0]
        assert html.escape(notes[0]) in page
    for n in range(1, 7):
        assert f'src="S{n}.png"' in page
        image = imread(out / "report" / f"S{n}.png")
        assert min(image.shape[:2]) >= 300 and image[..., :3].std() > 0.05


def test_existing_output_is_refused_and_bad_sizes_named(demo):
    out, _, _ = demo
    result = runner.invoke(app, ["demo", "--out", str(out), "--size", "32"])
    assert result.exit_code == 2 and "--overwrite" in result.output
    assert (out / "report" / "index.html").exists()
    result = runner.invoke(app, ["demo", "--out", str(out.parent / "other"), "--size", "30"])
    assert result.exit_code == 2 and "multiple of 4" in result.output
