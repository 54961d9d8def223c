"""Array library and device choice, in one place.

Arrays. Array maths in this package is written once against the NumPy API,
which CuPy mirrors; the module to use is taken from the arrays themselves
(:func:`array_module`), never from a global flag, and a dask array counts as
the library of its chunks. Where the libraries differ (``scipy`` vs
``cupyx.scipy``, FINUFFT vs cuFINUFFT) :func:`function` looks the routine up
in one dispatch table keyed on the array's library, importing GPU libraries
only when a GPU array is seen:

==================  ===========================  ===============================
name                NumPy                        CuPy
==================  ===========================  ===============================
``rfftn``, ``fft``  ``scipy.fft`` (all cores)    ``cupyx.scipy.fft``
``erf``             ``scipy.special``            ``cupyx.scipy.special``
``gaussian_filter`` ``scipy.ndimage``            ``cupyx.scipy.ndimage``
``fftconvolve``     ``scipy.signal``             ``cupyx.scipy.signal``
``nufft_plan``      ``finufft.Plan`` (1 thread)  ``cufinufft.Plan``
==================  ===========================  ===============================

Devices. Every option that says where work runs takes one vocabulary,
``"auto" | "cpu" | "cuda" | "cuda:N"``, checked by :func:`parse_device` and
resolved on this machine by :func:`resolve_device`; dask tasks bound for a GPU
carry :func:`gpu_annotations` (``{"GPU": 1}``), the resource that
:func:`xrfsr_dask.cluster.get_client` gives GPU workers.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any, Literal

import numpy as np

from xrfsr_dask.errors import DeviceError

__all__ = [
    "DEVICES",
    "GPU_RESOURCES",
    "Library",
    "array_module",
    "check_device",
    "erf",
    "function",
    "gpu_annotations",
    "gpu_count",
    "gpu_index",
    "library",
    "parse_device",
    "resolve_device",
    "to_host",
]

Library = Literal["numpy", "cupy"]

_TABLE: dict[str, dict[Library, tuple[str, str, dict[str, Any]]]] = {
    "rfftn": {"numpy": ("scipy.fft", "rfftn", {"workers": -1}), "cupy": ("cupyx.scipy.fft", "rfftn", {})},
    "fft": {"numpy": ("scipy.fft", "fft", {"workers": -1}), "cupy": ("cupyx.scipy.fft", "fft", {})},
    "erf": {"numpy": ("scipy.special", "erf", {}), "cupy": ("cupyx.scipy.special", "erf", {})},
    "gaussian_filter": {
        "numpy": ("scipy.ndimage", "gaussian_filter", {}),
        "cupy": ("cupyx.scipy.ndimage", "gaussian_filter", {}),
    },
    "fftconvolve": {"numpy": ("scipy.signal", "fftconvolve", {}), "cupy": ("cupyx.scipy.signal", "fftconvolve", {})},
    "nufft_plan": {"numpy": ("finufft", "Plan", {"nthreads": 1}), "cupy": ("cufinufft", "Plan", {})},
}


def library(*arrays: Any) -> Library:
    """``"numpy"`` or ``"cupy"``: the library all of ``arrays`` (or their dask chunks) belong to.

    Non-arrays (numbers, ``None``) are ignored; with no arrays at all the
    answer is ``"numpy"``.

    Raises
    ------
    TypeError
        If NumPy and CuPy arrays are mixed; move them to one device first
        (``cupy.asarray`` or ``.get()``).
    """
    kinds = set()
    for a in arrays:
        if not hasattr(a, "shape"):
            continue
        root = type(a).__module__.split(".")[0]
        if root == "dask":
            root = type(getattr(a, "_meta", None)).__module__.split(".")[0]
        kinds.add("cupy" if root == "cupy" else "numpy")
    if len(kinds) > 1:
        raise TypeError(
            "inputs mix NumPy and CuPy arrays; put them on one device first "
            "(cupy.asarray(x) to move to the GPU, x.get() to move to the host)."
        )
    return "cupy" if kinds == {"cupy"} else "numpy"


def array_module(*arrays: Any) -> ModuleType:
    """``numpy`` or ``cupy``, whichever all of ``arrays`` belong to (see :func:`library`)."""
    if library(*arrays) == "cupy":
        import cupy

        return cupy
    return np


@functools.cache
def _lookup(name: str, lib: Library) -> Callable[..., Any]:
    module, attr, defaults = _TABLE[name][lib]
    routine = getattr(importlib.import_module(module), attr)
    return functools.partial(routine, **defaults) if defaults else routine


def function(name: str, *arrays: Any) -> Callable[..., Any]:
    """The routine ``name`` of the dispatch table for the library of ``arrays``."""
    if name not in _TABLE:
        raise KeyError(f"no routine {name!r} in the dispatch table; it has {sorted(_TABLE)}.")
    return _lookup(name, library(*arrays))


def to_host(array: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return array.get() if library(array) == "cupy" else np.asarray(array)


def erf(x: Any) -> Any:
    """The error function on the device of ``x``."""
    return function("erf", x)(x)


DEVICES = ("auto", "cpu", "cuda", "cuda:N")
"""The device vocabulary of every option that says where work runs."""

GPU_RESOURCES = {"GPU": 1}
"""The dask resource a GPU task asks for and a GPU worker advertises."""

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


def parse_device(device: Any) -> str:
    """``device`` as a string of :data:`DEVICES` (a ``torch.device`` is accepted), checked for form only."""
    text = str(device)
    if not _DEVICE.fullmatch(text):
        raise DeviceError(f"device={device!r} is not one of 'auto', 'cpu', 'cuda' or 'cuda:N' (N the GPU index).")
    return text


def gpu_index(device: str) -> int:
    """The GPU index of ``"cuda"`` (0) or ``"cuda:N"`` (N)."""
    return int(parse_device(device).partition(":")[2] or 0)


def gpu_count() -> int:
    """CUDA GPUs torch sees on this machine (torch is imported only when asked)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_device(device: Any) -> str:
    """Where work runs on this machine: ``"auto"`` becomes ``"cuda"`` or ``"cpu"``; CUDA is checked.

    Raises
    ------
    DeviceError
        A malformed device, or ``"cuda[:N]"`` where this machine has no such
        GPU (the message says how many there are and what to pass instead).
    """
    text = parse_device(device)
    if text == "cpu":
        return text
    count = gpu_count()
    if text == "auto":
        return "cuda" if count else "cpu"
    if gpu_index(text) >= count:
        seen = "torch sees no CUDA GPU" if count == 0 else f"torch sees {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}"
        raise DeviceError(f"device={text!r} was requested but {seen}; pass device='cpu' (or 'auto').")
    return text


def _cluster_has_gpus() -> bool:
    try:
        from distributed import default_client
    except ImportError:
        return False
    try:
        client = default_client()
    except ValueError:
        return False
    workers = client.scheduler_info().get("workers", {}).values()
    return any(w.get("resources", {}).get("GPU", 0) >= 1 for w in workers)


def check_device(device: Any) -> str:
    """``device`` for tasks that may run on cluster workers: ``"auto"`` is left for each worker to resolve.

    ``"cuda[:N]"`` is refused unless this machine has that GPU or the current
    ``distributed`` client has workers advertising :data:`GPU_RESOURCES`,
    so the mistake is named before any graph runs or any store is created.
    """
    text = parse_device(device)
    if text in ("auto", "cpu") or _cluster_has_gpus():
        return text
    return resolve_device(text)


def gpu_annotations(device: str) -> dict[str, Any]:
    """The dask annotations of tasks bound for ``device``: the GPU resource for CUDA, none otherwise."""
    return {"resources": dict(GPU_RESOURCES)} if device.startswith("cuda") else {}
