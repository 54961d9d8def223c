"""FSC speed: xrfsr_dask.metrics.fsc beside the two bare FFTs it cannot avoid.

Two independent float32 volumes (a smooth random object plus noise) of 256³
and 512³ voxels. The floor is the two ``scipy.fft.rfftn`` calls alone (all
cores); ``ratio = ours_s / floor_s`` is our overhead (aim <= 1.3), from
the medians of ``--repeat`` alternating runs of each, with the machine's
1-minute load average. The
in-memory result is also recomputed from a dask array chunked along z (the
out-of-core path) and the two curves compared. With ``--device gpu`` a CuPy
FSC of 512³ is timed against the memory-bandwidth floor of the FFT traffic.
Prints one JSON line per measurement.

    python benchmarks/metrics.py [--sizes 256,512] [--repeat 5] [--device cpu|gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import dask.array as da
import numpy as np
import scipy.fft
from _timing import best
from scipy import ndimage

from xrfsr_dask.metrics import fsc

VOXEL_NM = 20.0


def _pair(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random object (made at 64³ and zoomed) plus independent noise, float32."""
    rng = np.random.default_rng(seed)
    coarse = ndimage.gaussian_filter(rng.normal(size=(64, 64, 64)), 2.0)
    obj = ndimage.zoom(coarse, n / 64, order=1).astype(np.float32)
    obj /= obj.std()
    noise = [rng.standard_normal(size=obj.shape, dtype=np.float32) for _ in range(2)]
    return obj + noise[0], obj + noise[1]


def _cpu_line(n: int, repeat: int) -> dict:
    a, b = _pair(n)
    eager = fsc(a, b, voxel_nm=VOXEL_NM, progress=False)  # warm-up: loads (or compiles) the shell-sum kernel
    floor_times, ours_times = [], []
    for _ in range(repeat):  # alternating, so that the load of other processes weighs on both alike
        floor_times.append(best(lambda: (scipy.fft.rfftn(a, workers=-1), scipy.fft.rfftn(b, workers=-1)), 1))
        ours_times.append(best(lambda: fsc(a, b, voxel_nm=VOXEL_NM, progress=False), 1))
    floor_s, ours_s = float(np.median(floor_times)), float(np.median(ours_times))
    ratios = np.array(ours_times) / np.array(floor_times)
    chunks = (max(1, n // 8), n, n)
    start = time.perf_counter()
    lazy = fsc(da.from_array(a, chunks=chunks), da.from_array(b, chunks=chunks), voxel_nm=VOXEL_NM, progress=False)
    dask_s = time.perf_counter() - start
    return {
        "bench": "fsc.cpu", "size": f"2 volumes {n}^3 float32", "ours_s": round(ours_s, 4),
        "peer": "two scipy.fft.rfftn calls (floor)", "peer_s": round(floor_s, 4),
        "ratio": round(ours_s / floor_s, 3), "ratio_meaning": "ours / floor (1 = no overhead)",
        "ratio_per_repeat": [round(float(r), 3) for r in ratios], "repeats": repeat,
        "load_1min": round(os.getloadavg()[0], 2),
        "dask_s": round(dask_s, 4), "dask_chunks": list(chunks),
        "dask_max_abs_diff": float(f"{float(abs(lazy.correlation - eager.correlation).max()):.3g}"),
        "half_bit_full_period_nm": round(float(eager.resolution_full_period_nm.sel(threshold="half-bit")), 2),
        "device": f"CPU {platform.processor() or platform.machine()}",
    }


def _gpu_line(n: int, repeat: int) -> dict:
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise RuntimeError("no CUDA device")
    except Exception as err:
        sys.exit(f"--device gpu: CuPy or a GPU is missing ({err}).")
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode()
    bandwidth = 2 * props["memoryClockRate"] * 1e3 * props["memoryBusWidth"] / 8  # bytes/s, DDR
    a, b = (cupy.asarray(v) for v in _pair(n))

    def ours():
        result = fsc(a, b, voxel_nm=VOXEL_NM, progress=False)
        cupy.cuda.Device().synchronize()
        return result

    ours()
    ours_s = best(ours, repeat)
    # Floor: read each volume and write its half spectrum once, then read both spectra once.
    volume = n**3 * 4
    spectrum = n * n * (n // 2 + 1) * 8
    floor_s = (2 * volume + 2 * spectrum + 2 * spectrum) / bandwidth
    return {
        "bench": "fsc.gpu", "size": f"2 volumes {n}^3 float32", "ours_s": round(ours_s, 5),
        "peer": "memory-bandwidth floor (one read of volumes, one write and read of spectra)",
        "peer_s": round(floor_s, 5), "ratio": round(ours_s / floor_s, 2),
        "ratio_meaning": "ours / floor", "device": f"GPU {name}", "bandwidth_GBps": round(bandwidth / 1e9),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    args = parser.parse_args()
    if args.device == "gpu":
        print(json.dumps(_gpu_line(512, args.repeat)), flush=True)
        return
    for n in (int(v) for v in args.sizes.split(",")):
        print(json.dumps(_cpu_line(n, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
