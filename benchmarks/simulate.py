"""Simulation throughput: xrfsr_dask.simulate.simulate_scan in memory and lazily via dask.

A single-element NMC phantom at 10 nm pixels is scanned with a 50 nm fly
scan, 60 nm probe and Poisson noise. The in-memory line's peer is the floor,
a bare ``scipy.signal.fftconvolve`` of the HR map with the same kernel (ratio
= the fraction of its speed we keep); the dask line's peer is our in-memory
path (threaded scheduler; ratio > 1 = dask is faster). The phantom's
creation is timed separately and not counted. ``peak_mib`` is the peak of
allocations traced by tracemalloc (NumPy buffers included) in a separate,
untimed run. Prints one JSON line per measurement; ``ratio = peer_s / ours_s``.

    python benchmarks/simulate.py [--size 4096] [--chunk 1024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc

import numpy as np
from _timing import best
from scipy.signal import fftconvolve

from xrfsr_dask.phantoms import nmc_particle
from xrfsr_dask.simulate import probe_kernel, simulate_scan

PIXEL_NM, STEP_NM, PROBE_NM = 10.0, 50.0, 60.0


def _peak_mib(func) -> float:
    """Peak traced allocation of one call of ``func``, in MiB."""
    tracemalloc.start()
    try:
        func()
        return round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
    finally:
        tracemalloc.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    hr = nmc_particle((args.size, args.size), pixel_nm=PIXEL_NM, seed=0, elements=["Ni_K"])
    phantom_s = time.perf_counter() - start
    lazy_hr = hr.chunk({"y": args.chunk, "x": args.chunk})
    kernel = probe_kernel(PROBE_NM, pixel_nm=(PIXEL_NM, PIXEL_NM), scan_mode="fly", fast_axis="x",
                          step_nm=(STEP_NM, STEP_NM))
    hr_array = hr.data[0]

    def scan(maps, noise: bool = True) -> np.ndarray:
        lr = simulate_scan(maps, step_nm=STEP_NM, probe=PROBE_NM, scan_mode="fly", noise=noise, seed=0)
        return lr.compute(scheduler="threads").values

    def in_memory() -> np.ndarray:
        return scan(hr)

    def lazy() -> np.ndarray:
        return scan(lazy_hr)

    def bare() -> np.ndarray:
        return fftconvolve(hr_array, kernel, mode="same")

    memory_s, dask_s = best(in_memory, args.repeat), best(lazy, args.repeat)
    bare_s = best(bare, args.repeat)
    eager, chunked = in_memory(), lazy()
    noise_free_diff = np.max(np.abs(scan(hr, noise=False) - scan(lazy_hr, noise=False)))
    mpix = args.size**2 / 1e6
    size = (f"{args.size}x{args.size} HR {hr_array.dtype} at {PIXEL_NM:g} nm -> {eager.shape[-2]}x{eager.shape[-1]} "
            f"LR (fly, step {STEP_NM:g} nm, probe {PROBE_NM:g} nm, noise), kernel {kernel.shape[0]}x{kernel.shape[1]}")
    device = f"CPU {platform.processor() or platform.machine()}"
    lines = [
        {"bench": "simulate.in_memory", "size": size, "ours_s": round(memory_s, 4),
         "peer": "scipy.signal.fftconvolve (bare, same kernel)", "peer_s": round(bare_s, 4),
         "ratio": round(bare_s / memory_s, 3), "device": device, "hr_mpix_per_s": round(mpix / memory_s, 2),
         "peak_mib": _peak_mib(in_memory), "phantom_s": round(phantom_s, 2)},
        {"bench": "simulate.dask", "size": f"{size}, HR chunks {args.chunk}x{args.chunk}", "ours_s": round(dask_s, 4),
         "peer": "xrfsr_dask in-memory", "peer_s": round(memory_s, 4), "ratio": round(memory_s / dask_s, 3),
         "device": device, "hr_mpix_per_s": round(mpix / dask_s, 2), "peak_mib": _peak_mib(lazy),
         "max_abs_diff": float(np.max(np.abs(chunked - eager))), "max_abs_diff_noise_free": float(noise_free_diff)},
    ]
    for line in lines:
        print(json.dumps(line))


if __name__ == "__main__":
    main()
