"""Reconstruction with the ASTRA Toolbox, slice by slice.

ASTRA's angle runs the other way round (its detector position is
``x cos(a) - y sin(a)``), so it is given ``-theta``. Its detector is centred
on the rotation axis; an axis elsewhere is set by moving the detector
(``parallel_vec`` geometry) for the iterative algorithms, and by a Fourier
shift of the sinogram rows for FBP, which ASTRA runs on plain ``parallel``
geometry only. On the CPU (the ``astra-toolbox`` wheel) ASTRA has FBP,
SIRT and CGLS; with a CUDA GPU also MLEM (its ``EM``).

Reference: van Aarle, W. et al. Fast and flexible X-ray tomography using
the ASTRA toolbox. Opt. Express 24, 25129 (2016),
https://doi.org/10.1364/OE.24.025129.
"""

from __future__ import annotations

import numpy as np

from xrfsr_dask._backend import gpu_index

__all__ = ["ALGORITHMS", "available", "reconstruct"]

ALGORITHMS = {"fbp": "FBP", "sirt": "SIRT", "cgls": "CGLS", "mlem": "EM"}

_FILTERS = {"ramp": "ram-lak", "shepp-logan": "shepp-logan", "cosine": "cosine", "hamming": "hamming", "hann": "hann"}


def available(device: str, algorithm: str) -> str | None:
    """``None`` when ASTRA can run ``algorithm`` on ``device``, else why not."""
    try:
        import astra
    except ImportError:
        return "astra-toolbox is not installed (pip install astra-toolbox)"
    if device.startswith("cuda") and not astra.use_cuda():
        return "ASTRA sees no CUDA GPU"
    if device == "cpu" and algorithm == "mlem":
        return "ASTRA's MLEM (EM) runs on a CUDA GPU only"
    return None


def _centred(sino: np.ndarray, shift: float) -> np.ndarray:
    """Rows of ``sino`` moved by ``shift`` detector pixels (band-limited interpolation)."""
    n_det = sino.shape[-1]
    padded = 2 * n_det
    freq = np.fft.rfftfreq(padded)
    moved = np.fft.irfft(np.fft.rfft(sino, n=padded, axis=-1) * np.exp(-2j * np.pi * freq * shift), n=padded, axis=-1)
    return moved[..., :n_det].astype(np.float32)


def reconstruct(
    sino: np.ndarray,
    theta_deg: np.ndarray,
    *,
    center: float,
    n: int,
    algorithm: str,
    iterations: int,
    filter_name: str,
    device: str,
) -> np.ndarray:
    """Slices ``(slices, n, n)`` from sinograms ``(slices, angles, detector)``."""
    import astra

    n_det = sino.shape[-1]
    offset = center - (n_det - 1) / 2
    volume = astra.create_vol_geom(n, n)
    geometry = astra.create_proj_geom("parallel", 1.0, n_det, -np.deg2rad(np.asarray(theta_deg, dtype=np.float64)))
    if algorithm == "fbp":
        sino = _centred(sino, -offset) if offset else sino
    elif offset:
        geometry = astra.geom_postalignment(geometry, -offset)
    cuda = device.startswith("cuda")
    projector = astra.create_projector("cuda" if cuda else "linear", geometry, volume)
    config = astra.astra_dict(ALGORITHMS[algorithm] + ("_CUDA" if cuda else ""))
    config["ProjectorId"] = projector
    if algorithm == "fbp":
        config["FilterType"] = _FILTERS[filter_name]
    options: dict[str, float] = {"GPUindex": gpu_index(device)} if cuda else {}
    if algorithm == "sirt":
        options["MinConstraint"] = 0.0
    if options:
        config["option"] = options
    out = np.empty((sino.shape[0], n, n), dtype=np.float32)
    sino_id = astra.data2d.create("-sino", geometry, 0.0)
    volume_id = astra.data2d.create("-vol", volume, 0.0)
    config["ProjectionDataId"] = sino_id
    config["ReconstructionDataId"] = volume_id
    try:
        for index, rows in enumerate(sino):
            astra.data2d.store(sino_id, rows)
            astra.data2d.store(volume_id, 1.0 if algorithm == "mlem" else 0.0)
            algorithm_id = astra.algorithm.create(config)
            try:
                astra.algorithm.run(algorithm_id, 1 if algorithm == "fbp" else iterations)
            finally:
                astra.algorithm.delete(algorithm_id)
            out[index] = astra.data2d.get(volume_id)
    finally:
        astra.data2d.delete([sino_id, volume_id])
        astra.projector.delete(projector)
    return out
