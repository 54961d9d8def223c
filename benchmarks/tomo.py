"""Reconstruction speed and accuracy: our backends through ``reconstruct`` beside scikit-image and TomoPy.

Data: the exact (analytic) sinogram of the modified Shepp–Logan phantom,
512 detector pixels, 360 angles over 180 degrees, rotation axis at
detector pixel 256 (scikit-image's convention for an even detector), the
same sinogram for 128 slices (slice ``i`` scaled by ``1 + i / 128``).

* ``ours``: :func:`xrfsr_dask.tomo.reconstruct` with each backend, FBP with
  the ramp filter, on dask's threaded scheduler with 2 workers.
* peer ``skimage.iradon`` (ramp filter, ``circle=True``) on the same 128
  slices, one after the other; ``ratio = peer_s / ours_s``.
* peer ``tomopy.gridrec`` (ramp filter ``ramlak``, ``ncore=2``) when a
  Python with TomoPy is named by ``--tomopy-python`` (TomoPy is not on PyPI;
  build it in a separate environment), run in that process on the same
  sinograms.

RMSE: against the phantom averaged over each method's own pixels (ours are
centred on the axis, scikit-image's and TomoPy's on pixel 256), inside the
circle of radius 250 pixels, slice 0. TomoPy's image is compared at the
half-pixel offset that fits it best and without rescaling (its gridrec
scale is its own).

``--only gridrec``: TomoPy's gridrec in this process (where it imports;
``../shared/peers/build-tomopy.sh .venv`` builds it) with 2 threads, beside
the ``nufft`` backend on 2 dask workers, alternating over ``--repeat``
runs (medians, with the load), and gridrec through
``reconstruct(backend="tomopy")`` (calibrated onto this grid).

``--only torch``: the torch backend's FBP on the CPU beside ``iradon`` on
the same slices, alternating, medians with the load.

Iterative: 2 slices of the same data, SIRT 20 iterations (ASTRA, torch)
and MLEM 20 (torch), ``ratio`` against ASTRA's SIRT.

    python benchmarks/tomo.py [--slices 128] [--tomopy-python /path/to/python] [--device cpu|gpu]
    python benchmarks/tomo.py --only gridrec [--repeat 5]
    python benchmarks/tomo.py --only torch --slices 16 [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import dask
import numpy as np
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best

from xrfsr_dask import xrf_maps
from xrfsr_dask.testing.shepp_logan import shepp_logan_image, shepp_logan_sinogram
from xrfsr_dask.tomo import reconstruct

N = 512
CENTER = 256.0
THETA = np.arange(360) * 0.5


def _rmse(image: np.ndarray, offset: float | tuple[float, float]) -> float:
    dy, dx = (offset, offset) if np.ndim(offset) == 0 else offset
    truth = _truth(dy, dx)
    yy, xx = np.mgrid[:N, :N]
    inside = np.hypot(yy - (N - 1) / 2, xx - (N - 1) / 2) < 250
    return float(np.sqrt(np.mean((image - truth)[inside] ** 2)))


def _truth(dy: float, dx: float) -> np.ndarray:
    if dy == dx:
        return shepp_logan_image(N, offset=dy)
    from scipy import ndimage

    return ndimage.shift(shepp_logan_image(N), (-dy, -dx), order=1)


def _series(sino: np.ndarray, slices: int) -> xr.DataArray:
    rows = sino[None] * (1 + np.arange(slices) / 128)[:, None, None]
    counts = rows.transpose(1, 0, 2)[None].astype(np.float32)
    return xrf_maps(counts, elements=["Ni_K"], step_nm=10.0, angles=THETA)


def _tomopy(python: str, sino: np.ndarray, slices: int) -> tuple[float, np.ndarray]:
    script = (
        "import sys, time, numpy as np, tomopy\n"
        "s = np.load(sys.argv[1]); n = int(sys.argv[2])\n"
        "tomo = np.ascontiguousarray(np.repeat(s[:, None, :], n, axis=1) * (1 + np.arange(n) / 128)[None, :, None],"
        " dtype=np.float32)\n"
        "theta = -np.deg2rad(np.arange(360) * 0.5)\n"
        "tomopy.recon(tomo[:, :2], theta, center=255.5, algorithm='gridrec', filter_name='ramlak', ncore=2)\n"
        "times = []\n"
        "for _ in range(2):\n"
        "    t = time.perf_counter()\n"
        "    r = tomopy.recon(tomo, theta, center=255.5, algorithm='gridrec', filter_name='ramlak', ncore=2)\n"
        "    times.append(time.perf_counter() - t)\n"
        "np.save(sys.argv[3], r[0]); print(min(times))\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder, "s.npy"), Path(folder, "r.npy")
        np.save(src, sino.astype(np.float32))
        out = subprocess.run([python, "-c", script, str(src), str(slices), str(dst)], capture_output=True,
                             text=True, check=True)
        return float(out.stdout.strip().splitlines()[-1]), np.load(dst)


def _gridrec_line(sino: np.ndarray, series: xr.DataArray, slices: int, repeat: int, size: str, common: dict) -> dict:
    """TomoPy's gridrec in this process (2 threads) beside reconstruct(backend="nufft") on 2 dask workers,
    alternating; and gridrec through reconstruct(backend="tomopy"), calibrated onto this grid."""
    import tomopy

    tomo = np.ascontiguousarray(_series(sino, slices).values[0], dtype=np.float32)  # (angle, slice, detector)
    theta = -np.deg2rad(THETA)

    def gridrec() -> np.ndarray:
        return tomopy.recon(tomo, theta, center=CENTER - 0.5, algorithm="gridrec", filter_name="ramlak", ncore=2)

    def ours(backend: str = "nufft") -> np.ndarray:
        with dask.config.set(scheduler="threads", num_workers=2):
            return reconstruct(series, backend=backend, center=CENTER, filter_name="ramp", slices_per_chunk=16).values

    gridrec(), ours()  # warm-up
    peer_times, ours_times = [], []
    for _ in range(repeat):
        peer_times.append(best(gridrec, 1))
        ours_times.append(best(ours, 1))
    peer_s, ours_s = float(np.median(peer_times)), float(np.median(ours_times))
    offsets = [(dy, dx) for dy in (-0.5, 0.0, 0.5) for dx in (-0.5, 0.0, 0.5)]
    peer_rmse = min(_rmse(gridrec()[0], o) for o in offsets)
    calibrated_s = best(lambda: ours("tomopy"), 1)
    return {
        "bench": "tomo.fbp.tomopy", "size": size, "backend": "nufft", "ours_s": round(ours_s, 3),
        "slices_per_s": round(slices / ours_s, 2), "rmse": round(_rmse(ours()[0, 0], 0.0), 5),
        "peer": "tomopy.gridrec (ramlak, ncore=2, in process)", "peer_s": round(peer_s, 3),
        "peer_slices_per_s": round(slices / peer_s, 2), "peer_rmse": round(peer_rmse, 5),
        "peer_rmse_note": "gridrec's raw output at its best half-pixel offset, not rescaled",
        "ratio": round(peer_s / ours_s, 3), "ratio_per_repeat": [round(p / o, 3) for p, o in
                                                                 zip(peer_times, ours_times, strict=True)],
        "repeats": repeat, "load_1min": round(os.getloadavg()[0], 2),
        "backend_tomopy_s": round(calibrated_s, 3),
        "backend_tomopy_rmse": round(_rmse(ours("tomopy")[0, 0], 0.0), 5), **common,
    }


def _torch_line(sino: np.ndarray, series: xr.DataArray, slices: int, repeat: int, size: str, common: dict) -> dict:
    """reconstruct(backend="torch") on the CPU (2 dask workers) beside scikit-image's iradon, one slice after
    another, alternating over ``repeat`` runs (medians)."""
    from skimage.transform import iradon

    peer_slices = _series(sino, slices).values[0].transpose(1, 2, 0)

    def peer() -> list[np.ndarray]:
        return [iradon(s, theta=-THETA, filter_name="ramp", circle=True) for s in peer_slices]

    def ours() -> np.ndarray:
        with dask.config.set(scheduler="threads", num_workers=2):
            return reconstruct(series, backend="torch", center=CENTER, filter_name="ramp", slices_per_chunk=16,
                               device="cpu").values

    ours()  # warm-up
    peer_times, ours_times = [], []
    for _ in range(repeat):
        peer_times.append(best(peer, 1))
        ours_times.append(best(ours, 1))
    peer_s, ours_s = float(np.median(peer_times)), float(np.median(ours_times))
    return {
        "bench": "tomo.fbp.torch", "size": size, "backend": "torch", "ours_s": round(ours_s, 3),
        "slices_per_s": round(slices / ours_s, 2), "rmse": round(_rmse(ours()[0, 0], 0.0), 5),
        "peer": "skimage.iradon (ramp), one slice after another", "peer_s": round(peer_s, 3),
        "peer_slices_per_s": round(slices / peer_s, 2), "peer_rmse": round(_rmse(peer()[0], -0.5), 5),
        "ratio": round(peer_s / ours_s, 3),
        "ratio_per_repeat": [round(p / o, 3) for p, o in zip(peer_times, ours_times, strict=True)],
        "repeats": repeat, "load_1min": round(os.getloadavg()[0], 2), **common,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--tomopy-python")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", choices=["gridrec", "torch"],
                        help="gridrec: only the FBP line against in-process TomoPy; torch: only the torch FBP "
                             "against iradon, alternating")
    args = parser.parse_args()
    device = "cuda" if args.device == "gpu" else "cpu"
    sino = shepp_logan_sinogram(THETA, N, n=N, center=CENTER)
    series = _series(sino, args.slices).chunk({"y": 16})
    size = f"{args.slices} slices of {N}x{N}, {THETA.size} angles over 180 deg"
    common = {"machine": platform.processor() or platform.machine(), "device": args.device,
              "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE")}  # huge pages for torch's buffers
    if args.only == "gridrec":
        print(json.dumps(_gridrec_line(sino, series, args.slices, args.repeat, size, common)), flush=True)
        return
    if args.only == "torch":
        print(json.dumps(_torch_line(sino, series, args.slices, args.repeat, size, common)), flush=True)
        return

    from skimage.transform import iradon

    peer_slices = _series(sino, args.slices).values[0].transpose(1, 2, 0)
    iradon_s = best(lambda: [iradon(s, theta=-THETA, filter_name="ramp", circle=True) for s in peer_slices], 1)
    iradon_image = iradon(peer_slices[0], theta=-THETA, filter_name="ramp", circle=True)
    iradon_rmse = _rmse(iradon_image, -0.5)
    print(json.dumps({"bench": "tomo.iradon", "size": size, "peer": "skimage.iradon", "peer_s": round(iradon_s, 3),
                      "slices_per_s": round(args.slices / iradon_s, 2), "rmse": round(iradon_rmse, 5), **common}),
          flush=True)
    backends = ("nufft", "torch", "astra")
    with dask.config.set(scheduler="threads", num_workers=2):
        for backend in backends:
            def run(backend=backend):
                return reconstruct(series, backend=backend, center=CENTER, filter_name="ramp", slices_per_chunk=16,
                                   device=device).values

            ours_s = best(run, 2 if backend == "nufft" else 1)
            rmse = _rmse(run()[0, 0], 0.0)
            print(json.dumps({
                "bench": "tomo.fbp", "size": size, "backend": backend, "ours_s": round(ours_s, 3),
                "slices_per_s": round(args.slices / ours_s, 2), "rmse": round(rmse, 5), "peer": "skimage.iradon",
                "peer_s": round(iradon_s, 3), "peer_rmse": round(iradon_rmse, 5),
                "ratio": round(iradon_s / ours_s, 2), **common,
            }), flush=True)
            if backend == "nufft":
                nufft_s, nufft_rmse = ours_s, rmse
    if args.tomopy_python:
        tomopy_s, image = _tomopy(args.tomopy_python, sino, args.slices)
        offsets = [(dy, dx) for dy in (-0.5, 0.0, 0.5) for dx in (-0.5, 0.0, 0.5)]
        rmse = min(_rmse(image, o) for o in offsets)
        print(json.dumps({
            "bench": "tomo.fbp.tomopy", "size": size, "backend": "nufft", "ours_s": round(nufft_s, 3),
            "rmse": round(nufft_rmse, 5), "peer": "tomopy.gridrec", "peer_s": round(tomopy_s, 3),
            "peer_slices_per_s": round(args.slices / tomopy_s, 2), "peer_rmse": round(rmse, 5),
            "ratio": round(tomopy_s / nufft_s, 3), **common,
        }), flush=True)

    small = _series(sino, 2).chunk({"y": 1})
    timings = {}
    with dask.config.set(scheduler="threads", num_workers=2):
        for algorithm, backend, iterations in (("sirt", "astra", 20), ("sirt", "torch", 20), ("mlem", "torch", 20)):
            def run(algorithm=algorithm, backend=backend, iterations=iterations):
                return reconstruct(small, algorithm=algorithm, backend=backend, center=CENTER, iterations=iterations,
                                   device=device).values

            timings[(algorithm, backend)] = seconds = best(run, 1)
            print(json.dumps({
                "bench": f"tomo.{algorithm}",
                "size": f"2 slices of {N}x{N}, {THETA.size} angles, {iterations} iterations",
                "backend": backend, "ours_s": round(seconds, 3), "rmse": round(_rmse(run()[0, 0], 0.0), 5),
                "peer": "astra SIRT", "peer_s": round(timings[("sirt", "astra")], 3),
                "ratio": round(timings[("sirt", "astra")] / seconds, 3), **common,
            }), flush=True)


if __name__ == "__main__":
    main()
