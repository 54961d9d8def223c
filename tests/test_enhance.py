"""Chunkwise enhancement: seams, laziness, schedulers, resume, S3, bad input."""

import numpy as np
import pytest
import torch
import xarray as xr
import zarr
from typer.testing import CliRunner

import xrfsr_dask as xs
from xrfsr_dask import DeviceError, NonFiniteCountsError, SchemaError, StoreMismatchError, XrfsrWarning
from xrfsr_dask.cli import app
from xrfsr_dask.enhance import enhance, enhance_to_zarr
from xrfsr_dask.io import writing as store_write
from xrfsr_dask.model import build_rdn, load_model, predict, save_model


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    torch.manual_seed(11)
    return str(save_model(build_rdn("tiny"), tmp_path_factory.mktemp("models") / "tiny"))


@pytest.fixture(scope="module")
def lr_series():
    hr = xs.nmc_particle((480, 400), pixel_nm=10.0, seed=3, elements=["Ni_K", "Mo_L"])
    maps = xs.simulate_scan(hr, step_nm=40.0, probe=60.0, scan_mode="fly", noise=True, scale=0.3, seed=1)
    stacked = np.stack([maps.values, maps.values[:, ::-1]], axis=1)
    return xs.xrf_maps(stacked, elements=["Ni_K", "Mo_L"], angles=[0.0, 90.0], step_nm=40.0,
                       probe_fwhm_nm=60.0, scan_mode="fly")


def test_bundled_model_stitches_within_1e4_of_the_data_range(lr_series):
    net = load_model()
    maps = lr_series.isel(angle=0)
    out = enhance(maps.chunk(y=40, x=36)).values
    whole = predict(net, maps.values, tile=1024, device="cpu")
    span = float(whole.max() - whole.min())
    assert np.abs(out - whole).max() < 1e-4 * span
    assert out.shape == (2, 240, 200)


def test_a_full_halo_is_exact_and_the_grid_is_refined(lr_series, tiny_path):
    net = load_model(tiny_path)
    lazy = enhance(lr_series.chunk(y=32, x=40), tiny_path, halo=net.config.receptive_radius)
    whole = predict(net, lr_series.values, tile=1024, device="cpu")
    np.testing.assert_array_equal(lazy.values, whole)
    assert lazy.attrs["step_nm"] == [20.0, 20.0] and lazy.dims == lr_series.dims
    assert float(lazy.y[1] - lazy.y[0]) == 20.0
    # HR pixels 0 and 1 split LR pixel 0: their centres sit a quarter step either side.
    assert float(lazy.y[0]) == float(lr_series.y[0]) - 10.0 and float(lazy.x[1]) == float(lr_series.x[0]) + 10.0
    record = lazy.attrs["provenance"][-1]
    assert record["operation"] == "xrfsr_dask.enhance.enhance" and record["parameters"]["model"] == "tiny"
    xs.validate(lazy)


def test_building_the_graph_computes_nothing(lr_series, tiny_path, no_dask_compute):
    with no_dask_compute():
        enhance(lr_series.chunk(y=40, x=40), tiny_path)


def test_small_chunks_are_merged_with_a_warning(lr_series, tiny_path):
    with pytest.warns(XrfsrWarning, match=r"chunks along y .* smaller than halo=12"):
        lazy = enhance(lr_series.chunk(y=55, x=50), tiny_path, halo=12)
    assert lazy.chunks[2] == (110, 106, 24)  # LR (55, 53, 12): the 10-pixel chunk took 2 from its neighbour
    reference = enhance(lr_series.chunk(y=60, x=50), tiny_path, halo=12)
    assert np.abs(lazy.values - reference.values).max() < 1e-3 * float(reference.max())


def test_nan_stays_in_its_footprint(lr_series, tiny_path):
    holed = lr_series.copy(data=lr_series.values.copy())
    holed.values[0, 0, 30:34, 40:42] = np.nan
    out = enhance(holed.chunk(y=40, x=40), tiny_path).values
    assert np.isnan(out).sum() == 8 * 2 * 2 and np.isnan(out[0, 0, 60:68, 80:84]).all()
    with pytest.raises(NonFiniteCountsError, match="non-finite"):
        enhance(holed.chunk(y=40, x=40), tiny_path, nan="raise").compute()


def test_integer_counts_are_cast(lr_series, tiny_path):
    ints = lr_series.copy(data=np.round(lr_series.values).astype(np.int32))
    out = enhance(ints, tiny_path)
    assert out.dtype == np.float32
    floats = enhance(ints.astype(np.float32), tiny_path)
    np.testing.assert_array_equal(out.values, floats.values)


def test_bad_requests_are_named(lr_series, tiny_path):
    with pytest.raises(ValueError, match="scale=3 was requested but the model 'tiny' enhances by 2"):
        enhance(lr_series, tiny_path, scale=3)
    with pytest.raises(SchemaError, match=r"enhance takes maps .* or a projection series .*; got a volume"):
        enhance(xs.xrf_volume(np.ones((1, 8, 8, 8)), elements=["Ni_K"], voxel_nm=10.0), tiny_path)
    with pytest.raises(TypeError, match="model must be None, a bundled name"):
        enhance(lr_series, 3)
    with pytest.raises(ValueError, match="halo must be >= 0"):
        enhance(lr_series, tiny_path, halo=-1)


def _chunk_bytes(url):
    from pathlib import Path

    root = Path(url) / "counts" / "c"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_interrupted_write_resumes_to_the_same_bytes(lr_series, tiny_path, tmp_path, monkeypatch):
    src = str(tmp_path / "lr.zarr")
    xs.save(lr_series, src, chunks={"y": 40, "x": 50}, progress=False)
    reference = str(tmp_path / "ref.zarr")
    full = enhance_to_zarr(src, reference, tiny_path, progress=False)
    assert full.chunks_total == 2 * 2 * 3 * 2

    calls = {"n": 0}
    original = store_write._write_block

    def dying(block, **kw):
        calls["n"] += 1
        if calls["n"] > 7:
            raise RuntimeError("worker lost")
        return original(block, **kw)

    monkeypatch.setattr(store_write, "_write_block", dying)
    target = str(tmp_path / "resumed.zarr")
    with pytest.raises(RuntimeError, match="worker lost"):
        enhance_to_zarr(src, target, tiny_path, progress=False)
    status = xs.store_status(target)
    assert not status.complete and 0 < status.chunks_written < full.chunks_total
    monkeypatch.setattr(store_write, "_write_block", original)
    summary = enhance_to_zarr(src, target, tiny_path, resume=True, progress=False)
    assert summary.chunks_skipped == status.chunks_written
    assert summary.chunks_written == full.chunks_total - status.chunks_written
    assert _chunk_bytes(target) == _chunk_bytes(reference)


def test_a_destination_with_other_chunks_is_refused(lr_series, tiny_path, tmp_path):
    dst = str(tmp_path / "out.zarr")
    enhance_to_zarr(lr_series.chunk(y=40, x=50), dst, tiny_path, progress=False)
    group = zarr.open_group(dst, mode="r+")
    group.attrs["xrfsr_dask"] = {**group.attrs["xrfsr_dask"], "complete": False}
    with pytest.raises(StoreMismatchError, match="chunks"):
        enhance_to_zarr(lr_series.chunk(y=60, x=50), dst, tiny_path, resume=True, progress=False)


def test_threads_and_a_two_worker_cluster_agree(lr_series, tiny_path, tmp_path):
    from distributed import Client, LocalCluster

    threaded = enhance(lr_series.chunk(y=40, x=50), tiny_path).values
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        dst = str(tmp_path / "cluster.zarr")
        enhance_to_zarr(lr_series.chunk(y=40, x=50), dst, tiny_path, progress=False)
    # Equal up to float32 rounding: torch sums convolutions in an order that
    # depends on its thread count (2 here, 1 per worker there).
    np.testing.assert_allclose(xs.open_xrf(dst).values, threaded, rtol=1e-5, atol=1e-5 * float(np.abs(threaded).max()))


def test_s3_to_s3(lr_series, tiny_path, s3_bucket):
    prefix, options = s3_bucket
    xs.save(lr_series, f"{prefix}/lr.zarr", chunks={"y": 40, "x": 50}, storage_options=options, progress=False)
    enhance_to_zarr(f"{prefix}/lr.zarr", f"{prefix}/hr.zarr", tiny_path, storage_options=options, progress=False)
    out = xs.open_xrf(f"{prefix}/hr.zarr", storage_options=options)
    expected = enhance(lr_series.chunk(element=1, angle=1, y=40, x=50), tiny_path)
    np.testing.assert_array_equal(out.values, expected.values)
    xr.testing.assert_equal(out.y, expected.y)


def test_cli_enhance_with_the_bundled_model(lr_series, tmp_path):
    src, dst = str(tmp_path / "lr.zarr"), str(tmp_path / "hr.zarr")
    xs.save(lr_series.isel(angle=[0]), src, progress=False)
    result = CliRunner().invoke(app, ["enhance", src, dst, "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "complete" in result.output
    out = xs.open_xrf(dst)
    assert out.shape == (2, 1, 240, 200) and out.attrs["provenance"][-1]["parameters"]["model"] == "rdn-small-x2"
    again = CliRunner().invoke(app, ["enhance", src, dst, "--no-progress"])
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.gpu
def test_gpu_worker_matches_cpu(lr_series, tmp_path):
    from distributed import Client, LocalCluster

    cpu = enhance(lr_series.chunk(y=60, x=50), device="cpu").values
    with LocalCluster(n_workers=1, threads_per_worker=1, resources={"GPU": 1}, dashboard_address=None) as cluster, \
            Client(cluster):
        gpu = enhance(lr_series.chunk(y=60, x=50), device="cuda").compute().values
    assert np.abs(gpu - cpu).max() < 2e-2 * float(cpu.max())


def test_gpu_tasks_carry_the_gpu_resource(lr_series, tiny_path):
    from distributed import Client, LocalCluster

    # CUDA is accepted on a machine without a GPU when the client's workers advertise one.
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, resources={"GPU": 1},
                      dashboard_address=None) as cluster, Client(cluster):
        graph = enhance(lr_series.chunk(y=60, x=50), tiny_path, device="cuda").data.__dask_graph__()
    annotated = [name for name, layer in graph.layers.items() if (layer.annotations or {}).get("resources")]
    assert annotated and all(graph.layers[n].annotations["resources"] == {"GPU": 1} for n in annotated)
    cpu_graph = enhance(lr_series.chunk(y=60, x=50), tiny_path, device="cpu").data.__dask_graph__()
    assert not any((layer.annotations or {}).get("resources") for layer in cpu_graph.layers.values())


def test_cli_enhance_s3_to_s3(lr_series, tiny_path, s3_bucket):
    prefix, options = s3_bucket
    xs.save(lr_series, f"{prefix}/lr.zarr", storage_options=options, progress=False)
    flags = [f"-o{k}={v}" for k, v in options.items()]
    result = CliRunner().invoke(app, ["enhance", f"{prefix}/lr.zarr", f"{prefix}/hr.zarr", "--model", tiny_path,
                                      "--no-progress", *flags])
    assert result.exit_code == 0, result.output
    out = xs.open_xrf(f"{prefix}/hr.zarr", storage_options=options)
    assert out.shape == (2, 2, 240, 200) and xs.store_status(f"{prefix}/hr.zarr", storage_options=options).complete


def test_maps_thinner_than_the_halo_are_one_chunk(tiny_path):
    maps = xs.xrf_maps(np.full((1, 10, 64), 50.0, np.float32), elements=["Ni_K"], step_nm=50.0)
    with pytest.warns(XrfsrWarning) as caught:
        out = enhance(maps.chunk(y=4, x=32), tiny_path)
    messages = [str(w.message) for w in caught]
    assert any("receptive field" in m for m in messages) and any("((10,))" in m for m in messages)
    with pytest.warns(XrfsrWarning, match="receptive field"):
        whole = predict(load_model(tiny_path), maps.values, device="cpu", tile=1024)
    np.testing.assert_allclose(out.values, whole, rtol=1e-5)


def test_options_are_checked_when_the_graph_is_built(lr_series, tiny_path):
    with pytest.raises(ValueError, match=r"nan must be one of \('raise', 'mask'\); got 'rasie'"):
        enhance(lr_series, tiny_path, nan="rasie")
    with pytest.raises(ValueError, match="precision must be"):
        enhance(lr_series, tiny_path, precision="fp16")
    with pytest.raises(DeviceError, match=r"device='gpu' is not one of 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        enhance(lr_series, tiny_path, device="gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on machines without CUDA")
def test_cuda_without_a_gpu_is_refused_before_the_store_is_created(lr_series, tiny_path, tmp_path):
    src, dst = str(tmp_path / "lr.zarr"), str(tmp_path / "hr.zarr")
    xs.save(lr_series.isel(angle=[0]), src, progress=False)
    with pytest.raises(DeviceError, match=r"device='cuda:1' was requested but torch sees no CUDA GPU; pass "
                                          r"device='cpu'"):
        enhance_to_zarr(src, dst, tiny_path, device="cuda:1")
    result = CliRunner().invoke(app, ["enhance", src, dst, "--model", tiny_path, "--device", "cuda",
                                      "--no-progress"])
    assert result.exit_code == 2 and "error: device='cuda' was requested but torch sees no CUDA GPU" in result.output
    assert not (tmp_path / "hr.zarr").exists()
    rerun = CliRunner().invoke(app, ["enhance", src, dst, "--model", tiny_path, "--device", "cpu", "--no-progress"])
    assert rerun.exit_code == 0, rerun.output


def test_a_killed_worker_costs_time_not_data(lr_series, tiny_path, tmp_path):
    import os
    import signal
    import threading
    import time

    from distributed import Client, LocalCluster

    src = str(tmp_path / "lr.zarr")
    series = xs.xrf_maps(np.concatenate([lr_series.values] * 4, axis=1), elements=["Ni_K", "Mo_L"],
                         angles=np.arange(8.0), step_nm=40.0)
    xs.save(series, src, chunks={"y": 40, "x": 50}, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        reference = str(tmp_path / "ref.zarr")
        enhance_to_zarr(src, reference, tiny_path, progress=False)
        target = str(tmp_path / "disturbed.zarr")
        job = threading.Thread(target=enhance_to_zarr, args=(src, target, tiny_path), kwargs={"progress": False})
        job.start()
        deadline = time.monotonic() + 60
        while xs.store_status(target).chunks_written < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        victim = next(iter(client.run(os.getpid).values()))
        written = xs.store_status(target).chunks_written
        assert job.is_alive() and 4 <= written < xs.store_status(reference).chunks_written
        os.kill(victim, signal.SIGKILL)
        job.join(timeout=120)
        assert not job.is_alive()
    assert xs.store_status(target).complete
    assert _chunk_bytes(target) == _chunk_bytes(reference)


def test_killed_cli_job_resumes_only_missing_chunks_to_the_same_bytes(lr_series, tmp_path):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time

    src = str(tmp_path / "lr.zarr")
    series = xs.xrf_maps(np.concatenate([lr_series.values] * 8, axis=1), elements=["Ni_K", "Mo_L"],
                         angles=np.arange(16.0), step_nm=40.0)
    xs.save(series, src, chunks={"y": 40, "x": 50}, progress=False)
    command = [sys.executable, "-m", "xrfsr_dask", "enhance", src]
    reference = str(tmp_path / "ref.zarr")
    subprocess.run([*command, reference, "--no-progress"], check=True, capture_output=True)
    total = xs.store_status(reference).chunks_total

    target = str(tmp_path / "killed.zarr")
    job = subprocess.Popen([*command, target, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while xs.store_status(target).chunks_written < 8 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.02)
    os.kill(job.pid, signal.SIGKILL)
    job.wait(timeout=30)
    before = xs.store_status(target)
    assert job.returncode == -signal.SIGKILL, "the job finished before it could be killed"
    assert 8 <= before.chunks_written < total and before.complete is False

    again = subprocess.run([*command, target, "--no-progress"], capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "--resume" in again.stderr  # refused without --resume, store kept
    resumed = subprocess.run([*command, target, "--resume", "--no-progress"], capture_output=True, text=True,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr
    written, skipped = map(int, re.search(r"(\d+) chunks written, (\d+) already present", resumed.stdout).groups())
    after = xs.store_status(target)
    # Only the missing chunks were computed, plus the one a kill may have left torn.
    assert before.chunks_written - 1 <= skipped <= before.chunks_written and written + skipped == total
    assert after.complete and _chunk_bytes(target) == _chunk_bytes(reference)


def test_the_default_model_is_chosen_by_the_data_kind_and_recorded(lr_series):
    from xrfsr_dask.model import DEFAULT_MODELS, model_serves

    for data, kind in ((lr_series.isel(angle=0), "maps"), (lr_series, "series")):
        record = enhance(data).attrs["provenance"][-1]["parameters"]
        assert record["model"] == DEFAULT_MODELS[kind] and record["model_choice"] == f"default for {kind}"
        assert kind in model_serves(load_model(DEFAULT_MODELS[kind]).card)
    assert enhance(lr_series, "rdn-small-x2").attrs["provenance"][-1]["parameters"]["model_choice"] == "given"


def test_a_model_trained_for_maps_warns_on_a_series(lr_series, tmp_path):
    torch.manual_seed(2)
    card = {"training": {"settings": {"data": {"sample": "maps"}}}}
    path = str(save_model(build_rdn("tiny"), tmp_path / "maps-only", card=card))
    with pytest.warns(XrfsrWarning, match=r"trained for maps, but this is a series.*model=None"):
        enhance(lr_series, path)
    enhance(lr_series.isel(angle=0), path)  # maps: no warning (the suite turns XrfsrWarning into errors)


def test_cli_names_the_model_it_uses(lr_series, tmp_path):
    src = str(tmp_path / "lr.zarr")
    xs.save(lr_series.isel(angle=[0]), src, progress=False)
    result = CliRunner().invoke(app, ["enhance", src, str(tmp_path / "hr.zarr"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "model: rdn-small-x2 (the default for series)" in result.output
    helped = CliRunner().invoke(app, ["enhance", "--help"], terminal_width=200)
    text = " ".join(helped.output.replace("│", " ").split())  # rich draws the help in a box
    assert "rdn-small-x2 for maps and for series" in text
