"""Which array library an array belongs to: NumPy or CuPy, chosen by the input.

Array maths in this package is written once against the NumPy API, which
CuPy mirrors; the module to use is taken from the arrays themselves, never
from a global flag. Where the two libraries differ (``scipy.special`` vs
``cupyx.scipy.special``) a small dispatch here picks the right function, and
GPU libraries are imported only when a GPU array is seen.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["array_module", "erf", "to_host"]


def _is_cupy(array: Any) -> bool:
    return type(array).__module__.split(".")[0] == "cupy"


def array_module(*arrays: Any) -> ModuleType:
    """``numpy`` or ``cupy``, whichever all of ``arrays`` belong to.

    Raises
    ------
    TypeError
        If NumPy and CuPy arrays are mixed; move them to one device first
        (``cupy.asarray`` or ``.get()``).
    """
    kinds = {_is_cupy(a) for a in arrays if hasattr(a, "shape")}
    if kinds == {True, False}:
        raise TypeError(
            "inputs mix NumPy and CuPy arrays; put them on one device first "
            "(cupy.asarray(x) to move to the GPU, x.get() to move to the host)."
        )
    if kinds == {True}:
        import cupy

        return cupy
    return np


def to_host(array: Any) -> np.ndarray:
    """A NumPy copy of a NumPy or CuPy array."""
    return array.get() if _is_cupy(array) else np.asarray(array)


def erf(x: Any) -> Any:
    """The error function on the device of ``x``."""
    if _is_cupy(x):
        from cupyx.scipy.special import erf as cupy_erf

        return cupy_erf(x)
    from scipy.special import erf as scipy_erf

    return scipy_erf(x)
