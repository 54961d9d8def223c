"""Tomography at beamline scale on one GPU: FBP slices/s at 2048² and the time of a 1024³ volume.

Data: the exact (analytic) sinogram of the modified Shepp–Logan phantom, the
same for every slice (slice ``i`` scaled by ``1 + i / slices``), reconstructed
through :func:`xrfsr_dask.tomo.reconstruct` with ``device="cuda"`` on dask's
threaded scheduler (one task at a time, ``slices_per_chunk`` slices each).

* ``tomo_gpu.fbp``: 2048 detector pixels, 1500 angles over 180 degrees,
  ``--slices`` slices, each GPU backend (``torch``; ``nufft`` with cuFINUFFT
  when it is installed); slices/s, and the RMSE of slice 0 against the
  phantom inside the reconstruction circle.
* ``tomo_gpu.volume``: a 1024³ volume (1024 slices of 1024², 1500 angles)
  with the fastest backend, end to end from a NumPy series to a NumPy
  volume in host memory.

The anchor is tomocupy (Nikitin 2023): a 2048³ volume in about 7–15 s on one
A100. FBP costs about ``slices · n² · angles``, so 2048³ is 8 times 1024³.

    python benchmarks/tomo_gpu.py [--slices 64] [--slices-per-chunk 32]
    python benchmarks/tomo_gpu.py --device cpu --n 128 --volume-n 64 --slices 4   # smoke run of the script
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import dask
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best

from xrfsr_dask import xrf_maps
from xrfsr_dask.testing.shepp_logan import shepp_logan_image, shepp_logan_sinogram
from xrfsr_dask.tomo import available_backends, reconstruct

ANGLES = np.linspace(0.0, 180.0, 1500, endpoint=False)


def _series(n: int, slices: int) -> tuple[object, np.ndarray]:
    sino = shepp_logan_sinogram(ANGLES, n, n=n, center=(n - 1) / 2).astype(np.float32)
    rows = sino[None] * (1 + np.arange(slices, dtype=np.float32) / slices)[:, None, None]
    series = xrf_maps(rows.transpose(1, 0, 2)[None], elements=["Ni_K"], step_nm=10.0, angles=ANGLES)
    return series, shepp_logan_image(n)


def _rmse(image: np.ndarray, truth: np.ndarray) -> float:
    n = truth.shape[0]
    yy, xx = np.mgrid[:n, :n]
    inside = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) < n / 2 - 4
    return float(np.sqrt(np.mean((image - truth)[inside] ** 2)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=64)
    parser.add_argument("--slices-per-chunk", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--n", type=int, default=2048, help="detector pixels of the slices/s run")
    parser.add_argument("--volume-n", type=int, default=1024, help="side of the volume run")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke run of the script")
    args = parser.parse_args()
    device = args.device
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("tomo_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False).")
    common = {"gpu": torch.cuda.get_device_name(0) if device == "cuda" else "none (cpu)", "torch": torch.__version__}
    why_not = available_backends("fbp", device=device)
    backends = [b for b in ("torch", "nufft") if why_not[b] is None]
    series, truth = _series(args.n, args.slices)
    rates = {}
    with dask.config.set(scheduler="threads", num_workers=1):
        for backend in backends:
            def run(backend: str = backend) -> np.ndarray:
                return reconstruct(series, backend=backend, filter_name="ramp", device=device,
                                   slices_per_chunk=args.slices_per_chunk).values

            run()  # plans, kernels and caches
            seconds = best(run, args.repeat)
            rates[backend] = args.slices / seconds
            print(json.dumps({
                "bench": "tomo_gpu.fbp", "size": f"{args.slices} slices of {args.n}x{args.n}, {ANGLES.size} angles",
                "backend": backend, "ours_s": round(seconds, 3), "slices_per_s": round(rates[backend], 2),
                "rmse": round(_rmse(run()[0, 0], truth), 5), **common,
            }), flush=True)
        fastest = max(rates, key=rates.get)
        volume_series, _ = _series(args.volume_n, args.volume_n)
        seconds = best(lambda: reconstruct(volume_series, backend=fastest, filter_name="ramp", device=device,
                                           slices_per_chunk=args.slices_per_chunk).values, 1)
        print(json.dumps({
            "bench": "tomo_gpu.volume",
            "size": f"{args.volume_n} slices of {args.volume_n}x{args.volume_n}, {ANGLES.size} angles",
            "backend": fastest, "ours_s": round(seconds, 2),
            "anchor": "tomocupy 2048^3 in 7-15 s on one A100 (8x the work of 1024^3)", **common,
        }), flush=True)


if __name__ == "__main__":
    main()
