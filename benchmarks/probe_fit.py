"""Probe-fit throughput: batched xrfsr_dask.probe.fit_probe beside a scipy curve_fit loop.

Noisy 32×32 images of a 61.6 nm probe (5 nm pixels, Poisson counts, random
sub-pixel centres) are fitted with the rotated 2-D Gaussian plus offset. The
peer is one ``scipy.optimize.curve_fit`` per image with the same model,
unweighted, default tolerances; it is timed on a subset and scaled to the
full batch per fit. Its widths are compared with ours on that subset, and so
are the standard errors of the widths (ours in ``errors="uniform"``, the
estimate curve_fit reports). Ours and the peer are timed in alternation,
``--repeat`` times, and the medians reported with the 1-minute load average
of the machine; the ratio of CPU times (all our threads against curve_fit's
one) says what the work costs whatever the load. A second line checks the reported standard errors
(``robust``, the default, and curve_fit's ``uniform``) against the scatter
of the estimates over many noise realisations. With ``--device gpu`` (needs CuPy and a GPU) a CuPy batch is timed
as well, against Gpufit's published rate (an anchor, not a measurement).
Prints one JSON line per measurement; ``ratio = peer_s / ours_s`` (> 1 = we
are faster).

    python benchmarks/probe_fit.py [--n 10000] [--peer-n 1000] [--repeat 5] [--device cpu|gpu] [--gpu-n 1000000]
                                   [--stderr-n 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

# The peer is curve_fit on one thread. Idle OpenBLAS threads (numpy's and scipy's) wait busily after each call
# and took the second core from the peer's own loop and from ours right after it: measured with them, 14.8 s
# for the peer and 0.139 s for ours; with one BLAS thread, 11.8 s and 0.115 s.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numba  # noqa: E402  # after the BLAS setting
import numpy as np
from _timing import best
from scipy.optimize import curve_fit

from xrfsr_dask.probe import FWHM_PER_SIGMA, GaussianProbe, fit_probe

PIXEL_NM = 5.0
SIDE = 32
FWHM_NM = 61.6
PEAK, BACKGROUND = 2e4, 30.0
GPUFIT_FITS_PER_S = 2.5e6


def _images(n: int, seed: int = 0) -> np.ndarray:
    """``n`` Poisson-noisy probe images, centres within ±2 px of the middle."""
    rng = np.random.default_rng(seed)
    axis = np.arange(SIDE) * PIXEL_NM
    middle = axis[-1] / 2
    centres = middle + rng.uniform(-2 * PIXEL_NM, 2 * PIXEL_NM, size=(n, 2))
    probe = GaussianProbe(FWHM_NM)
    clean = np.stack([probe.image(axis, axis, center_nm=(cy, cx)) for cy, cx in centres])
    return rng.poisson(PEAK * clean + BACKGROUND).astype(np.float64)


def _model(coords: tuple[np.ndarray, np.ndarray], amp: float, yc: float, xc: float, sa: float, sb: float,
           theta: float, off: float) -> np.ndarray:
    """``A·exp(-u²/2σa² - v²/2σb²) + B``, (u, v) rotated by θ from +x towards +y."""
    y, x = coords
    c, s = np.cos(theta), np.sin(theta)
    u = (x - xc) * c + (y - yc) * s
    v = -(x - xc) * s + (y - yc) * c
    return amp * np.exp(-0.5 * ((u / sa) ** 2 + (v / sb) ** 2)) + off


def _curve_fit_sigmas(images: np.ndarray) -> np.ndarray:
    """(major, minor) σ in nm and their standard errors per image from curve_fit; NaN where it fails."""
    axis = np.arange(SIDE) * PIXEL_NM
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    coords = (yy.ravel(), xx.ravel())
    out = np.full((len(images), 4), np.nan)
    for i, img in enumerate(images):
        iy, ix = np.unravel_index(np.argmax(img), img.shape)
        low, high = img.min(), img.max()
        half_area = np.count_nonzero(img - low > (high - low) / 2) * PIXEL_NM**2
        sigma = 2 * np.sqrt(half_area / np.pi) / FWHM_PER_SIGMA
        p0 = [high - low, axis[iy], axis[ix], sigma, sigma, 0.0, low]
        try:
            popt, pcov = curve_fit(_model, coords, img.ravel(), p0=p0)
        except RuntimeError:
            continue
        order = np.argsort(np.abs(popt[3:5]))[::-1]
        out[i, :2] = np.abs(popt[3:5])[order]
        out[i, 2:] = np.sqrt(np.diag(pcov)[3:5])[order]
    return out


def _stderr_line(n: int) -> dict:
    """Reported standard errors against the actual scatter: ``n`` Poisson images of one fixed probe.

    An elliptical probe (70 × 45 nm FWHM at 25°) so that major and minor axes
    are distinct; the scatter of each estimate over the images is its true
    standard error. Ratios ``scatter / mean(stderr)`` near 1 are honest.
    """
    rng = np.random.default_rng(7)
    axis = np.arange(48) * PIXEL_NM
    clean = GaussianProbe((70.0, 45.0), angle_deg=25.0).image(axis, axis, center_nm=(118.0, 121.0))
    images = rng.poisson(PEAK * clean + BACKGROUND, size=(n, 48, 48)).astype(np.float64)
    names = ["amplitude", "offset", "center_y_nm", "center_x_nm", "fwhm_major_nm", "fwhm_minor_nm", "angle_deg"]
    line = {"bench": "probe_fit.stderr", "size": f"{n} images 48x48 of one 70x45 nm probe, Poisson",
            "ratio_meaning": "scatter of the estimate / mean reported standard error (1 = honest)"}
    for errors in ("robust", "uniform"):
        fit = fit_probe(images, pixel_nm=PIXEL_NM, errors=errors)
        line[errors] = {name: round(float(fit[name].std() / fit[f"{name}_stderr"].mean()), 3) for name in names}
    line["note"] = "uniform is curve_fit's estimate (same noise in every pixel)"
    return line


def _gpu_line(images: np.ndarray, gpu_n: int, repeat: int) -> dict:
    """Time fit_probe on ``gpu_n`` CuPy images (tiled from ``images``), host-to-device copy included."""
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() == 0:
            raise RuntimeError("no CUDA device")
    except Exception as err:
        sys.exit(f"--device gpu: CuPy or a GPU is missing ({err}); GPU line skipped.")
    name = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
    batch = np.tile(images, (-(-gpu_n // len(images)), 1, 1))[:gpu_n]

    def ours():
        fit = fit_probe(cupy.asarray(batch), pixel_nm=PIXEL_NM)
        cupy.cuda.Device().synchronize()
        return fit

    fit = ours()  # warm-up (kernel compilation, cuBLAS handles), untimed
    ours_s = best(ours, repeat)
    peer_s = gpu_n / GPUFIT_FITS_PER_S
    return {"bench": "probe_fit.gpu", "size": f"{gpu_n} images {SIDE}x{SIDE} float64", "ours_s": round(ours_s, 4),
            "peer": f"Gpufit (published, about {GPUFIT_FITS_PER_S / 1e6:g}e6 fits/s)", "peer_s": round(peer_s, 4),
            "ratio": round(peer_s / ours_s, 3), "device": f"GPU {name}", "fits_per_s": round(gpu_n / ours_s),
            "converged": float(fit.converged.mean()),
            "peer_note": "published anchor, not measured; ours includes the host-to-device copy"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--peer-n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--gpu-n", type=int, default=1_000_000)
    parser.add_argument("--stderr-n", type=int, default=1000, help="images of the standard-error check")
    args = parser.parse_args()

    images = _images(args.n)
    peer_n = min(args.peer_n, args.n)
    fit_probe(images[:peer_n], pixel_nm=PIXEL_NM)  # warm-up: loads (or compiles) the CPU kernel, untimed
    # Ours and the peer alternate, so that the load from other processes weighs on both alike.
    ours_times, peer_times, ours_cpu, peer_cpu = [], [], [], []
    for _ in range(args.repeat):
        start, cpu = time.perf_counter(), time.process_time()
        fit_probe(images, pixel_nm=PIXEL_NM)
        ours_times.append(time.perf_counter() - start)
        ours_cpu.append(time.process_time() - cpu)
        start, cpu = time.perf_counter(), time.process_time()
        peer = _curve_fit_sigmas(images[:peer_n])
        peer_times.append((time.perf_counter() - start) * args.n / peer_n)
        peer_cpu.append((time.process_time() - cpu) * args.n / peer_n)
    ours_s, peer_s = float(np.median(ours_times)), float(np.median(peer_times))
    ratios = np.array(peer_times) / np.array(ours_times)
    fit = fit_probe(images, pixel_nm=PIXEL_NM)
    same_errors = fit_probe(images[:peer_n], pixel_nm=PIXEL_NM, errors="uniform")  # curve_fit's estimate

    ours = np.stack([fit.sigma_major_nm.values[:peer_n], fit.sigma_minor_nm.values[:peer_n],
                     same_errors.sigma_major_nm_stderr.values, same_errors.sigma_minor_nm_stderr.values], axis=1)
    rel_diff = np.abs(ours - peer) / peer
    device = f"CPU {platform.processor() or platform.machine()}"
    print(json.dumps({
        "bench": "probe_fit.cpu", "size": f"{args.n} images {SIDE}x{SIDE} float64", "ours_s": round(ours_s, 4),
        "peer": "scipy.optimize.curve_fit loop", "peer_s": round(peer_s, 4), "ratio": round(peer_s / ours_s, 3),
        "ratio_per_repeat": [round(float(r), 1) for r in ratios], "repeats": args.repeat,
        "ours_cpu_s": round(float(np.median(ours_cpu)), 4), "peer_cpu_s": round(float(np.median(peer_cpu)), 4),
        "cpu_time_ratio": round(float(np.median(peer_cpu) / np.median(ours_cpu)), 3),
        "device": device, "threads": numba.get_num_threads(), "load_1min": round(os.getloadavg()[0], 2),
        "fits_per_s": round(args.n / ours_s), "peer_fits_per_s": round(args.n / peer_s),
        "converged": float(fit.converged.mean()), "peer_converged": float(np.isfinite(peer[:, 0]).mean()),
        "max_rel_diff_fwhm": float(f"{np.nanmax(rel_diff[:, :2]):.3g}"),
        "max_rel_diff_fwhm_stderr": float(f"{np.nanmax(rel_diff[:, 2:]):.3g}"),
        "peer_note": f"medians of {args.repeat} alternating repeats; curve_fit (1 thread) timed on {peer_n} images, "
                     f"scaled to {args.n}; ours: one fit_probe call on the NumPy batch (robust errors, the default); "
                     "stderr compared with ours in errors='uniform', the estimate curve_fit reports",
    }))
    print(json.dumps(_stderr_line(args.stderr_n)))
    if args.device == "gpu":
        print(json.dumps(_gpu_line(images, args.gpu_n, args.repeat)))


if __name__ == "__main__":
    main()
