"""One interface over the reconstruction backends, and the choice of one.

Every backend takes float32 sinograms ``(slices, angles, detector)`` on the
host and returns float32 slices ``(slices, n, n)`` on the host, in the
geometry of :mod:`xrfsr_dask.tomo._geometry`, in the units of the
projections per pixel.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from xrfsr_dask._backend import gpu_count, gpu_index
from xrfsr_dask.tomo import _astra, _nufft, _tomopy

__all__ = ["ALGORITHMS", "BACKENDS", "Algorithm", "BackendName", "available_backends", "choose", "run"]

Algorithm = Literal["fbp", "sirt", "mlem", "cgls"]
BackendName = Literal["auto", "nufft", "astra", "torch", "tomopy"]

ALGORITHMS: tuple[str, ...] = ("fbp", "sirt", "mlem", "cgls")
BACKENDS: tuple[str, ...] = ("nufft", "astra", "torch", "tomopy")

_SUPPORTS = {
    "nufft": ("fbp",),
    "astra": ("fbp", "sirt", "cgls", "mlem"),
    "torch": ("fbp", "sirt", "mlem"),
    "tomopy": tuple(_tomopy.ALGORITHMS),
}

# Fastest first, as measured by benchmarks/tomo.py on the CPU here; TomoPy, optional, last.
_PREFERENCE = {
    "fbp": ("nufft", "torch", "astra", "tomopy"),
    "sirt": ("astra", "torch", "tomopy"),
    "mlem": ("torch", "astra", "tomopy"),
    "cgls": ("astra",),
}


def _why_not(name: str, algorithm: str, device: str) -> str | None:
    if algorithm not in _SUPPORTS[name]:
        return f"{name} has no {algorithm!r} (it has {', '.join(_SUPPORTS[name])})"
    if name == "nufft":
        return _nufft.available(device)
    if name == "astra":
        return _astra.available(device, algorithm)
    if name == "tomopy":
        return _tomopy.available(device)
    if device.startswith("cuda") and gpu_index(device) >= gpu_count():
        return f"torch sees no CUDA GPU {device}"
    return None


def available_backends(algorithm: str = "fbp", device: str = "cpu") -> dict[str, str | None]:
    """For each backend, ``None`` when it can run ``algorithm`` on ``device``, else why not.

    Examples
    --------
    >>> available_backends("fbp")["nufft"] is None
    True
    """
    return {name: _why_not(name, algorithm, device) for name in BACKENDS}


def choose(backend: str, algorithm: str, device: str) -> str:
    """The backend to run: ``backend`` itself, checked, or the fastest available for ``auto``."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm={algorithm!r} is not one of {ALGORITHMS}.")
    if backend != "auto" and backend not in BACKENDS:
        raise ValueError(f"backend={backend!r} is not one of {('auto', *BACKENDS)}.")
    status = available_backends(algorithm, device)
    usable = [name for name, why in status.items() if why is None]
    if backend == "auto":
        for name in _PREFERENCE[algorithm]:
            if status[name] is None:
                return name
        raise ValueError(
            f"no installed backend can run {algorithm!r} on {device}: "
            + "; ".join(f"{name}: {why}" for name, why in status.items())
        )
    if status[backend] is not None:
        raise ValueError(
            f"backend={backend!r} cannot run {algorithm!r} on {device}: {status[backend]}. "
            f"Backends that can: {usable or 'none'}."
        )
    return backend


def run(
    name: str,
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
    """Reconstruct ``sino`` with backend ``name`` (already checked by :func:`choose`)."""
    sino = np.ascontiguousarray(sino, dtype=np.float32)
    if name == "nufft":
        if device.startswith("cuda"):
            import cupy

            with cupy.cuda.Device(gpu_index(device)):
                return cupy.asnumpy(_nufft.fbp(cupy.asarray(sino), theta_deg, center=center, n=n,
                                               filter_name=filter_name))
        return _nufft.fbp(sino, theta_deg, center=center, n=n, filter_name=filter_name)
    if name == "tomopy":
        return _tomopy.reconstruct(sino, theta_deg, center=center, n=n, algorithm=algorithm, iterations=iterations,
                                   filter_name=filter_name)
    if name == "astra":
        return _astra.reconstruct(
            sino, theta_deg, center=center, n=n, algorithm=algorithm, iterations=iterations,
            filter_name=filter_name, device=device,
        )
    import torch

    from xrfsr_dask.tomo import _torch

    tensor = torch.as_tensor(sino, device=torch.device(device))
    with torch.inference_mode():
        if algorithm == "fbp":
            out = _torch.fbp(tensor, theta_deg, center=center, n=n, filter_name=filter_name)
        else:
            step = _torch.sirt if algorithm == "sirt" else _torch.mlem
            out = step(tensor, theta_deg, center=center, n=n, iterations=iterations)
    return out.cpu().numpy()
