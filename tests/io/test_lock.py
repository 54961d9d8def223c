"""One writer per store: a second job is refused while the first writes, never interleaved."""

import json
import socket
import subprocess
import sys
import threading
import time

import dask
import numpy as np
import pytest

from xrfsr_dask import StoreLockedError, open_xrf, save, store_status
from xrfsr_dask.io import unlock
from xrfsr_dask.io._lock import lock_path


def _held_open(series, release):
    """``series`` whose chunks wait for ``release`` before they compute: a write that stays open."""
    def wait(block):
        release.wait(timeout=60)
        return block

    lazy = series.chunk({"angle": 1}).data
    return series.copy(data=lazy.map_blocks(wait, dtype=series.dtype, meta=np.empty((0,) * 4, series.dtype)))


def _wait_for(path, timeout=30.0):
    start = time.monotonic()
    while not path.exists():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)


@pytest.mark.parametrize("second", ["resume", "overwrite", "fresh"])
def test_second_writer_refused_while_the_first_writes(tmp_path, series, second):
    url = tmp_path / "series.zarr"
    release = threading.Event()
    outcome = {}

    def first():
        with dask.config.set(scheduler="threads"):
            outcome["summary"] = save(_held_open(series, release), str(url), chunks={"angle": 1}, progress=False)

    writer = threading.Thread(target=first)
    writer.start()
    try:
        _wait_for(url / "zarr.json")
        marker = json.loads((tmp_path / "series.zarr.writer.json").read_text())
        options = {"resume": {"resume": True}, "overwrite": {"overwrite": True}, "fresh": {}}[second]
        with pytest.raises(StoreLockedError, match=rf"series\.zarr is being written by process {marker['pid']} on "):
            save(series, str(url), chunks={"angle": 1}, progress=False, **options)
        # The refused job touched nothing: the first job's store is still there, unfinished.
        assert store_status(str(url)).exists and not store_status(str(url)).complete
    finally:
        release.set()
        writer.join(timeout=60)
    assert outcome["summary"].chunks_written == 6
    assert not (tmp_path / "series.zarr.writer.json").exists()
    np.testing.assert_array_equal(open_xrf(str(url)).values, series.values)


def test_marker_of_a_killed_process_on_this_host_is_taken_over(tmp_path, series):
    url = tmp_path / "series.zarr"
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout)
    marker = {"id": "x", "host": socket.gethostname(), "pid": dead, "started": "2026-01-01T00:00:00+00:00"}
    (tmp_path / "series.zarr.writer.json").write_text(json.dumps(marker))
    summary = save(series, str(url), progress=False)
    assert summary.chunks_written == summary.chunks_total
    assert not (tmp_path / "series.zarr.writer.json").exists()


def test_marker_of_another_host_needs_unlock(tmp_path, series):
    from typer.testing import CliRunner

    from xrfsr_dask.cli import app

    url = tmp_path / "series.zarr"
    marker = {"id": "x", "host": "beamline-node-7", "pid": 4242, "started": "2026-01-01T00:00:00+00:00"}
    (tmp_path / "series.zarr.writer.json").write_text(json.dumps(marker))
    with pytest.raises(StoreLockedError, match=r"process 4242 on beamline-node-7 .*xrfsr unlock"):
        save(series, str(url), progress=False)
    assert not url.exists()
    result = CliRunner().invoke(app, ["unlock", str(url)])
    assert result.exit_code == 0 and "process 4242 on beamline-node-7" in result.output
    assert unlock(str(url)) is None
    save(series, str(url), progress=False)
    assert store_status(str(url)).complete


def test_lock_marker_sits_beside_the_store():
    assert lock_path("bucket/a/series.zarr/") == "bucket/a/series.zarr.writer.json"


def test_store_in_a_folder_that_does_not_exist_yet(tmp_path, series):
    # The marker is created before the store; both land in the folders save creates, and the marker goes.
    url = tmp_path / "run" / "2026-12-01" / "series.zarr"
    save(series, str(url), progress=False)
    np.testing.assert_array_equal(open_xrf(str(url)).values, series.values)
    assert not (url.parent / "series.zarr.writer.json").exists()
