"""A dataset 8 times larger than a worker's memory limit is written chunk by chunk, worker alive."""

import threading
import time

import dask.array as dsa
import numpy as np
import psutil

from xrfsr_dask import open_xrf, save, store_status, xrf_maps

LIMIT = 1 << 30  # the worker's memory limit, bytes
CHUNK = (1, 4, 1024, 1024)  # 16 MiB of float32


def _pattern(block_info=None):
    """A block that says where it is, so any chunk can be checked after the write."""
    location = block_info[None]["chunk-location"]
    shape = block_info[None]["chunk-shape"]
    value = np.float32(location[0] * 1000 + location[1])
    block = np.full(shape, value, np.float32)
    block[..., 0, 0] = -value
    return block



def test_eight_times_the_worker_memory_streams_through(tmp_path):
    from distributed import Client, LocalCluster

    n_angles = 8 * LIMIT // (1024 * 1024 * 4) // 2  # 2 elements of 1024² float32 frames: 8 GiB in all
    data = dsa.map_blocks(_pattern, chunks=tuple((c,) * (n // c) for c, n in zip(
        CHUNK, (2, n_angles, 1024, 1024), strict=True)), dtype=np.float32, meta=np.empty((0,) * 4, np.float32))
    series = xrf_maps(data, elements=["Ni_K", "Mo_L"], step_nm=10.0, angles=np.arange(n_angles, dtype=float))
    assert series.nbytes == 8 * LIMIT
    url = str(tmp_path / "big.zarr")
    peaks = []
    with LocalCluster(n_workers=1, threads_per_worker=2, memory_limit=LIMIT, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        pid_before = client.run(lambda: psutil.Process().pid)
        done = threading.Event()

        def watch():
            while not done.is_set():
                peaks.append(max(client.run(lambda: psutil.Process().memory_info().rss).values()))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            summary = save(series, url, chunks={"angle": 4, "y": 1024, "x": 1024}, progress=False)
        finally:
            done.set()
            watcher.join()
        pid_after = client.run(lambda: psutil.Process().pid)
    peak = max(peaks)
    print(f"8 GiB through a worker limited to 1 GiB: peak worker RSS {peak / 2**20:.0f} MiB")
    assert pid_after == pid_before, "the worker was restarted (killed for memory?)"
    assert peak < 0.8 * LIMIT
    assert summary.chunks_written == summary.chunks_total == 2 * n_angles // 4 and store_status(url).complete
    stored = open_xrf(url)
    np.testing.assert_array_equal(stored.isel(element=[1], angle=slice(4, 8)).values, _pattern(
        {None: {"chunk-location": (1, 1, 0, 0), "chunk-shape": CHUNK}}))
