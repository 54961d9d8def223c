"""Corrupted chunks: named on read, found by verify, removed by repair, rewritten by resume."""

import numpy as np
import pytest
from typer.testing import CliRunner

from xrfsr_dask import (
    CorruptChunkError,
    IncompleteStoreError,
    open_xrf,
    save,
    store_status,
    verify,
    xrf_maps,
)
from xrfsr_dask.cli import app


@pytest.fixture
def stored(tmp_path):
    rng = np.random.default_rng(0)
    maps = xrf_maps(rng.poisson(5.0, (2, 64, 96)).astype(np.float32), elements=["Ni_K", "Mo_L"], step_nm=10.0)
    url = tmp_path / "maps.zarr"
    save(maps, str(url), chunks={"y": 32, "x": 32}, progress=False)
    return maps, url


def _flip_one_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def test_clean_store_verifies(stored):
    _, url = stored
    report = verify(str(url), progress=False)
    assert report.ok and report.chunks_checked == report.chunks_total == 12
    assert not report.corrupt and not report.missing and not report.repaired


@pytest.mark.parametrize("damage", [_flip_one_byte, _truncate], ids=["one-bit-flipped", "truncated"])
def test_corrupt_chunk_named_on_read(stored, damage):
    maps, url = stored
    damage(url / "counts" / "c" / "1" / "0" / "2")
    data = open_xrf(str(url))
    # Chunks that are intact still read; the bad one raises with its key, never wrong counts.
    np.testing.assert_array_equal(data.sel(element="Ni_K").values, maps.sel(element="Ni_K").values)
    with pytest.raises(CorruptChunkError, match=r"counts/c/1/0/2 .*checksum.*--repair.*--resume"):
        np.asarray(data.sel(element="Mo_L"))


def test_verify_repair_resume_restores_identical_bytes(stored):
    maps, url = stored
    _flip_one_byte(url / "counts" / "c" / "0" / "1" / "1")
    _truncate(url / "counts" / "c" / "1" / "1" / "0")
    report = verify(str(url), progress=False)
    assert not report.ok
    assert [key for key, _ in report.corrupt] == ["counts/c/0/1/1", "counts/c/1/1/0"]
    assert all("checksum" in reason for _, reason in report.corrupt)

    repaired = verify(str(url), repair=True, progress=False)
    assert repaired.repaired and not (url / "counts" / "c" / "0" / "1" / "1").exists()
    status = store_status(str(url))
    assert not status.complete and status.chunks_written == 10
    with pytest.raises(IncompleteStoreError):
        open_xrf(str(url))

    summary = save(maps, str(url), chunks={"y": 32, "x": 32}, resume=True, progress=False)
    assert (summary.chunks_written, summary.chunks_skipped) == (2, 10)
    assert verify(str(url), progress=False).ok
    np.testing.assert_array_equal(open_xrf(str(url)).values, maps.values)


def test_missing_chunk_of_a_complete_store_named_on_read_and_restored(stored):
    maps, url = stored
    (url / "counts" / "c" / "0" / "0" / "0").unlink()
    # Read as the fill value it would be NaN counts; the store says complete, so it is an error.
    data = open_xrf(str(url))
    np.testing.assert_array_equal(data.sel(element="Mo_L").values, maps.sel(element="Mo_L").values)
    with pytest.raises(CorruptChunkError, match=r"counts/c/0/0/0 are missing from a store marked complete"):
        np.asarray(data.sel(element="Ni_K"))
    report = verify(str(url), progress=False)
    assert report.missing == ("counts/c/0/0/0",) and not report.corrupt and not report.ok

    assert verify(str(url), repair=True, progress=False).repaired
    summary = save(maps, str(url), chunks={"y": 32, "x": 32}, resume=True, progress=False)
    assert (summary.chunks_written, summary.chunks_skipped) == (1, 11)
    np.testing.assert_array_equal(open_xrf(str(url)).values, maps.values)


def test_nan_regions_of_a_complete_store_read_as_written(tmp_path):
    counts = np.ones((1, 8, 8), np.float32)
    counts[0, :4, :4] = np.nan  # a whole chunk of NaN (beam lost) is data, not a missing chunk
    maps = xrf_maps(counts, elements=["Ni_K"], step_nm=10.0)
    save(maps, str(tmp_path / "nan.zarr"), chunks={"y": 4, "x": 4}, progress=False)
    np.testing.assert_array_equal(open_xrf(str(tmp_path / "nan.zarr")).values, counts)


def test_cli_verify_exit_codes(stored):
    _, url = stored
    runner = CliRunner()
    result = runner.invoke(app, ["verify", str(url), "--no-progress"])
    assert result.exit_code == 0 and "0 corrupt, 0 missing" in result.output
    _truncate(url / "counts" / "c" / "0" / "0" / "1")
    result = runner.invoke(app, ["verify", str(url), "--no-progress", "--repair"])
    assert result.exit_code == 1
    assert "corrupt  counts/c/0/0/1" in result.output and "--resume" in result.output
    result = runner.invoke(app, ["verify", str(url.parent / "nothing.zarr"), "--no-progress"])
    assert result.exit_code == 2 and "no zarr store" in result.output


def test_resume_rewrites_a_chunk_torn_by_a_kill(stored):
    maps, url = stored
    # As a kill mid-write leaves it: the store unfinished, one chunk missing, one torn.
    (url / "counts" / "c" / "0" / "0" / "0").unlink()
    _truncate(url / "counts" / "c" / "1" / "1" / "2")
    marker = url / "zarr.json"
    marker.write_text(marker.read_text().replace('"complete": true', '"complete": false'))
    assert not store_status(str(url)).complete
    summary = save(maps, str(url), chunks={"y": 32, "x": 32}, resume=True, progress=False)
    assert (summary.chunks_written, summary.chunks_skipped) == (2, 10)
    assert verify(str(url), progress=False).ok
    np.testing.assert_array_equal(open_xrf(str(url)).values, maps.values)
