"""TomoPy as a backend: gridrec (FBP), SIRT and MLEM on this library's grid, orientation and scale.

TomoPy (conda only; ``../shared/peers/build-tomopy.sh`` builds it from its
public source) reconstructs in its own geometry, which differs from that of
:mod:`xrfsr_dask.tomo._geometry` in three ways, each undone here:

* its angle runs the other way: it is given ``-theta``;
* its image is centred off the rotation axis (for an even detector by half a
  pixel in each direction: the axis at pixel ``(n/2 - 1, n/2)``);
* gridrec's output scale depends on its internal padding (1.06 to 1.12 on
  unpadded detectors, more on padded ones).

The offset and the scale are not hard-coded but calibrated for each
geometry (detector size, angles, centre, algorithm, filter, iterations):
the same pipeline reconstructs the exact sinogram of a uniform disk centred
on the axis; the centroid of the result gives the offset, removed from
every slice by a Fourier shift, and, for gridrec, its value inside the
disk (1 in truth) gives the scale, divided out. gridrec filters by a circular
convolution over its own padding; a sample that fills the field of view
then comes out with a cupped background and a scale that depends on its
size, so the detector is zero-padded by its width on each side first, and
the image cropped back (with half that, the interior of the Shepp–Logan
phantom came out 3 % low after the disk's calibration).

Calls into TomoPy are taken one at a time in a process, each on all of
TomoPy's threads: ``tomopy.recon`` sets and restores the environment
variable ``TOMOPY_PYTHON_THREADS`` around its work, so two calls from dask
threads at once could leave it set afterwards, and every later
``tomopy.recon(ncore=...)`` of the user's then ran on one core.
"""

from __future__ import annotations

import functools
import threading

import numpy as np
from scipy import ndimage

__all__ = ["ALGORITHMS", "available", "reconstruct"]

ALGORITHMS: dict[str, str] = {"fbp": "gridrec", "sirt": "sirt", "mlem": "mlem"}
"""This library's algorithm names and TomoPy's."""
_RECON_LOCK = threading.Lock()
_FILTERS = {"ramp": "ramlak", "shepp-logan": "shepp", "cosine": "cosine", "hamming": "hamming", "hann": "hann"}


def available(device: str) -> str | None:
    """``None`` when TomoPy can run on ``device``, else why not."""
    if device.startswith("cuda"):
        return "the tomopy backend runs on the CPU only (TomoPy's CUDA build is not supported here)"
    try:
        import tomopy  # noqa: F401
    except ImportError:
        return ("tomopy is not installed (it is not on PyPI: conda install -c conda-forge tomopy, or "
                "../shared/peers/build-tomopy.sh .venv)")
    return None


def _raw(sino: np.ndarray, theta_deg: np.ndarray, *, center: float, algorithm: str, iterations: int,
         filter_name: str) -> np.ndarray:
    """TomoPy's own reconstruction of ``(slices, angles, detector)``: (slices, n, n), its orientation and scale."""
    import tomopy

    n = sino.shape[-1]
    pad = n if algorithm == "fbp" else 0
    tomo = np.pad(sino, ((0, 0), (0, 0), (pad, pad))).transpose(1, 0, 2)
    options = {"filter_name": _FILTERS[filter_name]} if algorithm == "fbp" else {"num_iter": iterations}
    with _RECON_LOCK:
        image = tomopy.recon(np.ascontiguousarray(tomo, dtype=np.float32), -np.deg2rad(theta_deg),
                             center=center + pad, algorithm=ALGORITHMS[algorithm], **options)
    # MLEM leaves 0/0 where no ray of the detector passes (an axis off the middle): no counts there.
    return np.nan_to_num(image[:, pad : pad + n, pad : pad + n], nan=0.0, posinf=0.0, neginf=0.0)


def _disk_sinogram(theta_deg: np.ndarray, n: int, center: float, radius: float) -> np.ndarray:
    """Exact projections of a uniform disk (value 1, ``radius`` pixels) on the axis, averaged over each pixel."""
    edges = np.arange(n + 1) - 0.5 - center
    t = np.clip(edges, -radius, radius)
    area = t * np.sqrt(radius**2 - t**2) + radius**2 * np.arcsin(t / radius)  # ∫ 2 sqrt(r² - t²) dt
    return np.broadcast_to(np.diff(area), (len(theta_deg), n)).astype(np.float32)


@functools.lru_cache(maxsize=32)
def _calibration(n: int, theta: tuple[float, ...], center: float, algorithm: str, iterations: int,
                 filter_name: str) -> tuple[float, float, float]:
    """``(dy, dx, scale)``: TomoPy's image of a disk on the axis is off by (dy, dx) pixels and ``scale`` times it."""
    theta_deg = np.asarray(theta)
    radius = n / 4
    disk = _disk_sinogram(theta_deg, n, center, radius)[None]
    image = _raw(disk, theta_deg, center=center, algorithm=algorithm, iterations=iterations,
                 filter_name=filter_name)[0].astype(np.float64)
    middle = (n - 1) / 2
    yy, xx = np.mgrid[:n, :n] - middle
    near = np.hypot(yy, xx) < radius + 3  # the disk and its edge ringing, no far-off artefacts
    total = image[near].sum()
    dy, dx = (image[near] * yy[near]).sum() / total, (image[near] * xx[near]).sum() / total
    interior = np.hypot(yy, xx) < 0.8 * radius  # the disk's value is 1 there
    scale = float(image[interior].mean()) if algorithm == "fbp" else 1.0
    return float(dy), float(dx), float(scale)


def reconstruct(sino: np.ndarray, theta_deg: np.ndarray, *, center: float, n: int, algorithm: str,
                iterations: int, filter_name: str) -> np.ndarray:
    """Slices ``(slices, n, n)`` float32 from ``sino`` ``(slices, angles, n)`` on the library's grid."""
    dy, dx, scale = _calibration(n, tuple(float(t) for t in theta_deg), float(center), algorithm, iterations,
                                 filter_name)
    image = _raw(sino, theta_deg, center=center, algorithm=algorithm, iterations=iterations,
                 filter_name=filter_name)
    spectrum = ndimage.fourier_shift(np.fft.fft2(image), (0.0, -dy, -dx))
    return (np.fft.ifft2(spectrum).real / scale).astype(np.float32)
