"""The xrfsr command line: ingest and info, locally and on S3; errors exit 2 with one line."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from xrfsr_dask import open_xrf
from xrfsr_dask.cli import app
from xrfsr_dask.testing import grid_positions, particles, write_maps_h5, write_pyxrf_h5

runner = CliRunner()


@pytest.fixture
def pyxrf_file(tmp_path):
    maps = particles((16, 20), 3, seed=4)
    y, x = grid_positions((16, 20), (0.05, 0.04))
    return write_pyxrf_h5(tmp_path / "scan2D_7.h5", maps, ["Ni_K", "Co_K", "compton"], y_pos=y, x_pos=x,
                          scalers={"i0": np.full((16, 20), 5e4)}), maps


@pytest.fixture
def maps_file(tmp_path):
    maps = particles((12, 10), 2, seed=6)
    return write_maps_h5(tmp_path / "2xfm_0001.h5", maps, ["Fe", "Mo_L"], y_axis=0.0002 * np.arange(12),
                         x_axis=0.0002 * np.arange(10)), maps


def test_ingest_then_info_local(tmp_path, pyxrf_file):
    path, maps = pyxrf_file
    dst = str(tmp_path / "out.zarr")
    result = runner.invoke(app, ["ingest", str(path), dst, "--chunks", "y=8,x=8", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "12 chunks written, 0 already present, 12 in all; complete." in result.output
    np.testing.assert_array_equal(open_xrf(dst).values, maps[:2])
    result = runner.invoke(app, ["info", dst])
    assert result.exit_code == 0, result.output
    assert "complete (12 of 12 chunks written)" in result.output
    assert "maps ('element', 'y', 'x') shape (2, 16, 20) float32" in result.output
    assert "spacing   y 50 nm, x 40 nm" in result.output
    assert "Ni_K 7.478 keV, Co_K 6.930 keV" in result.output
    info = json.loads(runner.invoke(app, ["info", dst, "--json"]).output)
    assert info["extent_nm"] == {"y": 800.0, "x": 800.0}


def test_ingest_maps_and_pyxrf_to_s3(s3_bucket, pyxrf_file, maps_file):
    prefix, options = s3_bucket
    opts = [a for k, v in options.items() for a in ("-o", f"{k}={v}")]
    cases = [(pyxrf_file, "p.zarr", ["Ni_K", "Co_K"]), (maps_file, "m.zarr", ["Fe", "Mo_L"])]
    for (path, maps), name, expected in cases:
        url = f"{prefix}/{name}"
        result = runner.invoke(app, ["ingest", str(path), url, "--no-progress", *opts])
        assert result.exit_code == 0, result.output
        back = open_xrf(url, storage_options=options)
        assert list(back.element.values) == expected
        np.testing.assert_array_equal(back.values, maps[: len(expected)])
        result = runner.invoke(app, ["info", url, *opts])
        assert result.exit_code == 0, result.output
        assert "status    complete" in result.output and url in result.output


def test_existing_destination_refused_without_overwrite(tmp_path, pyxrf_file):
    path, maps = pyxrf_file
    dst = str(tmp_path / "out.zarr")
    assert runner.invoke(app, ["ingest", str(path), dst, "--no-progress"]).exit_code == 0
    result = runner.invoke(app, ["ingest", str(path), dst, "--no-progress", "--normalize", "i0"])
    assert result.exit_code == 2
    assert result.output.startswith("error: ") and "already exists" in result.output and "--overwrite" in result.output
    assert open_xrf(dst).attrs["units"] == "counts"
    result = runner.invoke(app, ["ingest", str(path), dst, "--no-progress", "--normalize", "i0", "--overwrite"])
    assert result.exit_code == 0, result.output
    assert open_xrf(dst).attrs["units"] == "counts at mean i0"


def test_missing_input_and_bad_options(tmp_path):
    result = runner.invoke(app, ["ingest", str(tmp_path / "gone.h5"), str(tmp_path / "o.zarr")])
    assert result.exit_code == 2 and "input file not found" in result.output and "gone.h5" in result.output
    assert not (tmp_path / "o.zarr").exists()
    result = runner.invoke(app, ["info", str(tmp_path / "none.zarr")])
    assert result.exit_code == 2 and "no zarr store at" in result.output
    result = runner.invoke(app, ["ingest", "a.h5", "b.zarr", "--chunks", "y=big"])
    assert result.exit_code == 2 and "chunk sizes must be integers" in result.output


def test_phantom_then_simulate_is_the_library_result(tmp_path):
    from xrfsr_dask.simulate import simulate_scan

    hr_url, lr_url = str(tmp_path / "hr.zarr"), str(tmp_path / "lr.zarr")
    assert runner.invoke(app, ["phantom", hr_url, "--size", "128", "--seed", "3"]).exit_code == 0
    result = runner.invoke(app, ["simulate", hr_url, lr_url, "--step-nm", "40", "--probe-nm", "60,45",
                                 "--mode", "fly", "--jitter-nm", "5", "--seed", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "fly scan, step 40 nm" in result.output
    lr = open_xrf(lr_url).load()
    expected = simulate_scan(open_xrf(hr_url), step_nm=40.0, probe=(60.0, 45.0), scan_mode="fly",
                             jitter_nm=5.0, noise=True, seed=2)
    np.testing.assert_array_equal(lr.values, expected.values)
    assert lr.attrs["scan_mode"] == "fly" and lr.attrs["step_nm"] == [40.0, 40.0]
    bad = runner.invoke(app, ["simulate", hr_url, str(tmp_path / "x.zarr"), "--step-nm", "5", "--no-progress"])
    assert bad.exit_code == 2 and "scan step must be at least the HR pixel" in bad.output
    assert not (tmp_path / "x.zarr").exists()


def test_probe_command_prints_fwhm_and_combined_resolution(tmp_path):
    import tifffile

    from xrfsr_dask.probe import GaussianProbe

    axis = np.arange(48) * 5.0
    np.save(tmp_path / "fzp.npy", GaussianProbe(61.6).image(axis, axis, center_nm=(120.0, 115.0)) * 900 + 4)
    result = runner.invoke(app, ["probe", str(tmp_path / "fzp.npy"), "--pixel-nm", "5", "--step-nm", "72"])
    assert result.exit_code == 0, result.output
    assert "equivalent 61.6 nm" in result.output and "with a 72 nm step: 94.8 nm" in result.output
    stack = np.stack([GaussianProbe(24.7).image(axis / 2, axis / 2, center_nm=(60.0, 58.0))] * 2)
    tifffile.imwrite(tmp_path / "mll.tif", stack.astype(np.float32))
    rows = json.loads(runner.invoke(app, ["probe", str(tmp_path / "mll.tif"), "--pixel-nm", "2.5",
                                          "--step-nm", "51.8", "--json"]).output)
    assert [round(r["combined_nm"], 1) for r in rows] == [57.4, 57.4]
    missing = runner.invoke(app, ["probe", str(tmp_path / "fzp.npy")])
    assert missing.exit_code != 0 and "--pixel-nm" in missing.output


def test_fsc_command_prints_crossings_and_writes_the_figure(tmp_path, monkeypatch):
    from xrfsr_dask import GaussianProbe, nmc_particle, save, simulate_scan
    from xrfsr_dask.metrics import frc

    truth = nmc_particle((128, 128), pixel_nm=10.0, seed=5)
    scans = [simulate_scan(truth, step_nm=20.0, probe=GaussianProbe(50.0), noise=True, seed=s) for s in (1, 2)]
    for name, scan in zip("ab", scans, strict=True):
        save(scan, str(tmp_path / f"{name}.zarr"), progress=False)
    a, b, figure = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr"), tmp_path / "out" / "frc.png"
    result = runner.invoke(app, ["fsc", a, b, "--element", "Ni_K,Mo_L", "--figure", str(figure)])
    assert result.exit_code == 0, result.output
    expected = frc(scans[0].sel(element=["Ni_K", "Mo_L"]), scans[1].sel(element=["Ni_K", "Mo_L"]), progress=False)
    ni = expected.sel(element="Ni_K", threshold="half-bit")
    half, full = float(ni.resolution_half_period_nm), float(ni.resolution_full_period_nm)
    assert "resolution as half period 1/(2f)" in result.output
    assert f"Ni_K: half-bit {half:.1f} nm (full period {full:.1f} nm)" in result.output
    assert "warning:" not in result.output
    assert figure.stat().st_size > 10_000
    # An existing figure is not replaced without --overwrite: one error line like every other command's.
    again = runner.invoke(app, ["fsc", a, b, "--figure", str(figure)])
    assert again.exit_code == 2
    assert again.stderr == f"error: --figure {figure} exists; pass --overwrite to replace it, or another --figure.\n"
    # The default name is never refused: a second run writes beside the first.
    monkeypatch.chdir(tmp_path)
    first_run, second_run = (runner.invoke(app, ["fsc", a, b, "--threshold", "0.0001"]) for _ in range(2))
    assert first_run.exit_code == 0 and second_run.exit_code == 0, second_run.output
    assert "figure: fsc.png" in first_run.output and "figure: fsc-2.png" in second_run.output
    # No curve falls below 1e-4: the resolution is bounded by the last shell, about one 20 nm step.
    bound = 1 / (2 * float(expected.frequency.max()))
    assert 19.0 < bound <= 20.0
    assert f"0.0001 not crossed (≤ {bound:.1f} nm, the Nyquist limit)" in first_run.output
    printed = json.loads(
        runner.invoke(
            app, ["fsc", a, b, "--figure", str(figure), "--overwrite", "--json", "--threshold", "one-bit"]
        ).stdout
    )
    rows = printed["crossings"]
    assert {r["threshold"] for r in rows} == {"one-bit"} and len(rows) == 4
    assert "1/(2f)" in printed["convention"] and printed["warnings"] == []
    for row in rows:
        assert row["resolution_half_period_nm"] == pytest.approx(1 / (2 * row["crossing_frequency"]))
        assert row["resolution_full_period_nm"] == pytest.approx(1 / row["crossing_frequency"])
    wrong = runner.invoke(app, ["fsc", a, b, "--element", "Fe_K", "--figure", str(tmp_path / "x.png")])
    assert wrong.exit_code != 0 and "Fe_K" in wrong.output


def test_fsc_command_warns_when_both_stores_were_enhanced(tmp_path):
    from xrfsr_dask import add_provenance, nmc_particle, save, simulate_scan

    truth = nmc_particle((96, 96), pixel_nm=10.0, seed=5, elements=["Ni_K"])
    for name, seed in (("a", 1), ("b", 2)):
        scan = simulate_scan(truth, step_nm=20.0, probe=50.0, noise=True, seed=seed)
        # What xrfsr_dask.enhance.enhance records (computing a real enhancement is not the point here).
        scan = add_provenance(scan, "xrfsr_dask.enhance.enhance", {"model": "rdn-small-x2", "scale": 2})
        save(scan, str(tmp_path / f"{name}.zarr"), progress=False)
    a, b = str(tmp_path / "a.zarr"), str(tmp_path / "b.zarr")
    result = runner.invoke(app, ["fsc", a, b, "--figure", str(tmp_path / "frc.png")])
    assert result.exit_code == 0, result.output
    assert f"warning: a = {a}, b = {b}: FRC between two enhanced datasets" in result.stderr
    assert "not the resolution" in result.stderr and "xrfsr_dask.consistency" in result.stderr
    assert "Ni_K: half-bit" in result.stdout
    printed = json.loads(
        runner.invoke(app, ["fsc", a, b, "--figure", str(tmp_path / "frc.png"), "--overwrite", "--json"]).stdout
    )
    assert len(printed["warnings"]) == 1 and "reproducible" in printed["warnings"][0]


def test_export_to_ome_zarr_local_and_s3(tmp_path, s3_bucket):
    from xrfsr_dask import open_pyramid, save, xrf_maps

    counts = np.random.default_rng(2).poisson(10.0, size=(2, 20, 24)).astype(np.float32)
    maps = xrf_maps(counts, elements=["Ni_K", "Co_K"], step_nm=50.0)
    src = str(tmp_path / "m.zarr")
    save(maps, src, progress=False)
    dst = str(tmp_path / "m.ome.zarr")
    result = runner.invoke(app, ["export", src, dst, "--chunks", "y=8,x=8", "--no-progress"])
    assert result.exit_code == 0, result.output
    # levels 20 x 24 -> 10 x 12 -> 5 x 6: 2 * (3 * 3 + 2 * 2 + 1)
    assert f"{dst}: 28 chunks written, 0 already present; complete." in result.output
    levels = open_pyramid(dst)
    np.testing.assert_array_equal(levels[0].values, counts)
    np.testing.assert_array_equal(levels[2].values.sum(axis=(1, 2)), counts.sum(axis=(1, 2)))
    again = runner.invoke(app, ["export", src, dst])
    assert again.exit_code == 2 and "already exists; pass overwrite=True (--overwrite)" in again.output
    info = runner.invoke(app, ["info", dst])
    assert info.exit_code == 0, info.output
    assert "OME-Zarr (NGFF 0.5), sum of the level-0 pixels per bin" in info.output
    assert "complete (28 of 28 chunks written)" in info.output and "elements  Ni_K, Co_K" in info.output
    assert "level 2   shape (2, 5, 6), 200 x 200 nm, chunks (1, 5, 6)" in info.output
    wrong = runner.invoke(app, ["export", src, str(tmp_path / "x"), "--format", "tiff"])
    assert wrong.exit_code == 2 and "unknown format 'tiff'" in wrong.output

    prefix, options = s3_bucket
    opts = [a for k, v in options.items() for a in ("-o", f"{k}={v}")]
    s3_src, url = f"{prefix}/m.zarr", f"{prefix}/m.ome.zarr"
    save(maps, s3_src, storage_options=options, progress=False)
    result = runner.invoke(app, ["export", s3_src, url, "--chunks", "y=8,x=8", "--shards", "y=16,x=16",
                                 "--downsample", "mean", "--no-progress", *opts])
    assert result.exit_code == 0, result.output
    coarse = open_pyramid(url, storage_options=options)[-1]
    np.testing.assert_allclose(coarse.values[:, 0, 0], counts[:, :4, :4].mean(axis=(1, 2)), rtol=1e-6)


def test_cli_reference_page_lists_every_command_and_its_options():
    import importlib.util
    from pathlib import Path

    import typer

    path = Path(__file__).parent.parent / "docs" / "_hooks" / "cli_reference.py"
    spec = importlib.util.spec_from_file_location("cli_reference", path)
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = hook.on_page_markdown(f"# CLI\n\n{hook.MARKER}\n")
    group = typer.main.get_command(app)
    names = list(group.commands)
    assert names and all(f"## `xrfsr {name}`" in page for name in names)
    assert page.count("\n## ") == len(names)
    assert "| `--device` | `auto` | Where it runs: auto, cpu, cuda or cuda:N (N the GPU index). |" in page
    assert "| `--resume`, `--no-resume` | `False` | Finish an interrupted write into DST" in page
    assert hook.on_page_markdown("no marker here") == "no marker here"
