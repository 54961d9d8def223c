"""Faults injected into real runs: how often, what happened, data lost, extra time.

Each scenario runs the same job undisturbed and with the fault, and compares
the stored chunk bytes (``data_lost`` is the number of chunks that differ
from the undisturbed run or are missing, and must be 0):

* ``worker-death``: ``enhance_to_zarr`` on a 2-worker ``LocalCluster``; one
  worker process is SIGKILLed once 4 chunks have landed.
* ``cli-kill``: ``xrfsr enhance`` in a subprocess, SIGKILLed once 8 chunks
  have landed, then run again with ``--resume``.
* ``corrupt-chunks``: 3 chunk files damaged (a bit flipped, two truncated);
  ``verify --repair`` then ``--resume``.
* ``s3-transient``: ``save`` to moto through a proxy answering every third
  chunk upload with 503 SlowDown and dropping every seventh request.
* ``s3-permanent``: chunk uploads of one element answered 403 AccessDenied;
  then the same ``save`` with the permission back and ``resume=True``.
* ``second-writer``: a second ``save`` to the destination while the first writes.

Extra time is the disturbed run (all its steps) minus the undisturbed one.

    python benchmarks/faults.py
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import xrfsr_dask as xs
from xrfsr_dask.enhance import enhance_to_zarr
from xrfsr_dask.testing.flaky_s3 import FlakyProxy

CHUNKS = {"y": 40, "x": 50}


def _bytes(url: str) -> dict[str, bytes]:
    root = Path(url) / "counts" / "c"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _lost(reference: dict[str, bytes], other: dict[str, bytes]) -> int:
    return sum(other.get(key) != value for key, value in reference.items())


def _series(angles: int) -> Any:
    hr = xs.nmc_particle((480, 400), pixel_nm=10.0, seed=3, elements=["Ni_K", "Mo_L"])
    maps = xs.simulate_scan(hr, step_nm=40.0, probe=60.0, scan_mode="fly", noise=True, scale=0.3, seed=1)
    stacked = np.stack([maps.values if a % 2 == 0 else maps.values[:, ::-1] for a in range(angles)], axis=1)
    return xs.xrf_maps(stacked, elements=["Ni_K", "Mo_L"], angles=np.arange(float(angles)), step_nm=40.0)


def _timed(func: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def worker_death(folder: Path) -> dict[str, Any]:
    from distributed import Client, LocalCluster

    src = str(folder / "lr.zarr")
    xs.save(_series(8), src, chunks=CHUNKS, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        reference = str(folder / "ref.zarr")
        base, _ = _timed(lambda: enhance_to_zarr(src, reference, progress=False))
        target = str(folder / "killed.zarr")
        start = time.perf_counter()
        job = threading.Thread(target=enhance_to_zarr, args=(src, target), kwargs={"progress": False})
        job.start()
        while xs.store_status(target).chunks_written < 4:
            time.sleep(0.02)
        os.kill(next(iter(client.run(os.getpid).values())), signal.SIGKILL)
        job.join()
        disturbed = time.perf_counter() - start
    return {"fault": "worker-death", "injected": "1 worker SIGKILLed", "outcome": "finished on the survivors",
            "complete": xs.store_status(target).complete, "data_lost": _lost(_bytes(reference), _bytes(target)),
            "baseline_s": round(base, 2), "extra_s": round(disturbed - base, 2)}


def cli_kill(folder: Path) -> dict[str, Any]:
    src = str(folder / "lr.zarr")
    xs.save(_series(16), src, chunks=CHUNKS, progress=False)
    command = [sys.executable, "-m", "xrfsr_dask", "enhance", src]
    reference = str(folder / "ref.zarr")
    base, _ = _timed(lambda: subprocess.run([*command, reference, "--no-progress"], check=True, capture_output=True))
    target = str(folder / "killed.zarr")
    start = time.perf_counter()
    job = subprocess.Popen([*command, target, "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while xs.store_status(target).chunks_written < 8 and job.poll() is None:
        time.sleep(0.02)
    job.send_signal(signal.SIGKILL)
    job.wait()
    present = xs.store_status(target).chunks_written
    resumed = subprocess.run([*command, target, "--resume", "--no-progress"], check=True, capture_output=True,
                             text=True)
    disturbed = time.perf_counter() - start
    return {"fault": "cli-kill", "injected": f"1 SIGKILL after {present} of {xs.store_status(target).chunks_total} "
            "chunks", "outcome": resumed.stdout.strip().splitlines()[-1], "complete": xs.store_status(target).complete,
            "data_lost": _lost(_bytes(reference), _bytes(target)), "baseline_s": round(base, 2),
            "extra_s": round(disturbed - base, 2)}


def corrupt_chunks(folder: Path) -> dict[str, Any]:
    series = _series(8)
    url = str(folder / "s.zarr")
    base, _ = _timed(lambda: xs.save(series, url, chunks=CHUNKS, progress=False))
    reference = _bytes(url)
    files = sorted(p for p in (Path(url) / "counts" / "c").rglob("*") if p.is_file())
    data = bytearray(files[5].read_bytes())
    data[len(data) // 2] ^= 0x01
    files[5].write_bytes(bytes(data))
    for path in (files[17], files[40]):
        path.write_bytes(path.read_bytes()[:100])

    def fix() -> tuple[Any, Any]:
        report = xs.verify(url, repair=True, progress=False)
        return report, xs.save(series, url, chunks=CHUNKS, resume=True, progress=False)

    extra, (report, summary) = _timed(fix)
    return {"fault": "corrupt-chunks", "injected": "3 chunk files (1 bit flipped, 2 truncated)",
            "outcome": f"verify named {len(report.corrupt)}; resume rewrote {summary.chunks_written}",
            "complete": xs.store_status(url).complete, "data_lost": _lost(reference, _bytes(url)),
            "baseline_s": round(base, 2), "extra_s": round(extra, 2)}


def _moto() -> tuple[Any, str]:
    from moto.server import ThreadedMotoServer

    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def _options(endpoint: str) -> dict[str, Any]:
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing", "skip_instance_cache": True}


def s3_faults() -> list[dict[str, Any]]:
    import s3fs

    server, endpoint = _moto()
    s3fs.S3FileSystem(**_options(endpoint)).mkdir("faults")
    series = _series(8)
    try:
        base, _ = _timed(lambda: xs.save(series, "s3://faults/ref.zarr", chunks=CHUNKS,
                                         storage_options=_options(endpoint), progress=False))
        reference = xs.open_xrf("s3://faults/ref.zarr", storage_options=_options(endpoint)).values

        def flaky(method: str, path: str, n: int) -> Any:
            if method == "PUT" and "/counts/c/" in path and n % 3 == 0:
                return (503, "SlowDown")
            return "drop" if n % 7 == 0 else None

        with FlakyProxy(endpoint, flaky) as proxy:
            disturbed, _ = _timed(lambda: xs.save(series, "s3://faults/flaky.zarr", chunks=CHUNKS,
                                                  storage_options=_options(proxy.endpoint), progress=False))
        back = xs.open_xrf("s3://faults/flaky.zarr", storage_options=_options(endpoint)).values
        rows = [{"fault": "s3-transient", "injected": f"{proxy.injected['503 SlowDown']} x 503 SlowDown, "
                 f"{proxy.injected['drop']} dropped connections in {proxy.requests} requests",
                 "outcome": "retried with backoff; finished", "complete": True,
                 "data_lost": int((back != reference).any(axis=(-2, -1)).sum()),
                 "baseline_s": round(base, 2), "extra_s": round(disturbed - base, 2)}]

        def deny(method: str, path: str, n: int) -> Any:
            return (403, "AccessDenied") if method == "PUT" and "/counts/c/1/" in path else None

        start = time.perf_counter()
        with FlakyProxy(endpoint, deny) as proxy:
            try:
                xs.save(series, "s3://faults/denied.zarr", chunks=CHUNKS, storage_options=_options(proxy.endpoint),
                        progress=False)
                outcome = "no error (unexpected)"
            except xs.StoreWriteError as err:
                outcome = f"StoreWriteError naming the URL ({str(err)[:40]}...)"
        status = xs.store_status("s3://faults/denied.zarr", storage_options=_options(endpoint))
        xs.save(series, "s3://faults/denied.zarr", chunks=CHUNKS, storage_options=_options(endpoint), resume=True,
                progress=False)
        disturbed = time.perf_counter() - start
        back = xs.open_xrf("s3://faults/denied.zarr", storage_options=_options(endpoint)).values
        rows.append({"fault": "s3-permanent", "injected": f"{proxy.injected['403 AccessDenied']} x 403 AccessDenied "
                     "(every upload of element 1)", "outcome": f"{outcome}; incomplete with {status.chunks_written} "
                     f"of {status.chunks_total} chunks; resume finished",
                     "complete": xs.store_status("s3://faults/denied.zarr",
                                                 storage_options=_options(endpoint)).complete,
                     "data_lost": int((back != reference).any(axis=(-2, -1)).sum()),
                     "baseline_s": round(base, 2), "extra_s": round(disturbed - base, 2)})
        return rows
    finally:
        server.stop()


def second_writer(folder: Path) -> dict[str, Any]:
    import dask

    series = _series(8)
    url = str(folder / "s.zarr")
    release = threading.Event()

    def wait(block: np.ndarray) -> np.ndarray:
        release.wait(timeout=60)
        return block

    lazy = series.chunk({"angle": 1}).data
    held = series.copy(data=lazy.map_blocks(wait, dtype=series.dtype, meta=np.empty((0,) * 4, series.dtype)))
    def write() -> None:
        with dask.config.set(scheduler="threads"):
            xs.save(held, url, chunks=CHUNKS, progress=False)

    first = threading.Thread(target=write)
    first.start()
    while not (Path(url) / "zarr.json").exists():
        time.sleep(0.02)
    try:
        xs.save(series, url, chunks=CHUNKS, resume=True, progress=False)
        outcome = "second writer ran (unexpected)"
    except xs.StoreLockedError:
        outcome = "second writer refused with StoreLockedError"
    release.set()
    first.join()
    lost = int((xs.open_xrf(url).values != series.values).any(axis=(-2, -1)).sum())
    return {"fault": "second-writer", "injected": "1 concurrent save (resume=True)", "outcome": outcome,
            "complete": xs.store_status(url).complete, "data_lost": lost, "baseline_s": None, "extra_s": 0.0}


def main() -> None:
    common = {"machine": "CPU, 2 cores"}
    with tempfile.TemporaryDirectory() as tmp:
        for name, scenario in (("worker", worker_death), ("cli", cli_kill), ("corrupt", corrupt_chunks),
                               ("writer", second_writer)):
            folder = Path(tmp) / name
            folder.mkdir()
            print(json.dumps({"bench": "faults", **scenario(folder), **common}), flush=True)
    for row in s3_faults():
        print(json.dumps({"bench": "faults", **row, **common}), flush=True)


if __name__ == "__main__":
    main()
