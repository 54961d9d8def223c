"""The scan as a linear operator on a fine grid: ``A`` (blur, then sample) and its exact adjoint."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from xrfsr_dask._backend import array_module, function
from xrfsr_dask.probe import GaussianProbe, TailedProbe
from xrfsr_dask.simulate import probe_kernel

__all__ = ["ProbeLike", "ScanOperator"]

ProbeLike = float | Sequence[float] | GaussianProbe | TailedProbe
"""A probe: FWHM in nm, ``(major, minor)`` in nm, a :class:`~xrfsr_dask.probe.GaussianProbe` or a
:class:`~xrfsr_dask.probe.TailedProbe`."""


def _fftconvolve(a: Any, b: Any, mode: str) -> Any:
    """``fftconvolve`` over the last two axes, from SciPy or CuPy by the input's type."""
    return function("fftconvolve", a)(a, b, mode=mode, axes=(-2, -1))


@dataclass(frozen=True, eq=False)
class ScanOperator:
    """The noise-free scan ``A``: fine-grid map → LR expectation, and its adjoint.

    Parameters
    ----------
    kernel
        The scan's blur sampled on the fine pixels (odd-sized, centred,
        summing to 1), as :func:`~xrfsr_dask.simulate.probe_kernel` makes it.
    ratio
        Integer ``(r_y, r_x)``: LR step / fine pixel. LR pixel ``k`` spans
        fine pixels ``[k·r, (k+1)·r)``.

    Notes
    -----
    :func:`~xrfsr_dask.simulate.simulate_scan` pads the map by repeating its
    edge pixels (operator ``E``), convolves with the kernel ``K`` and samples
    by linear interpolation at fine position ``(r - 1)/2 + k·r``, a pixel
    centre for odd ``r`` and the mean of two pixels for even ``r``. The
    two-tap mean is folded into the kernel, ``K₂ = K * [½, ½]`` along every
    axis of even ratio, so that

    .. math:: A x = D\\,(K_2 * E x), \\qquad A^T y = E^T (K_2 \\star D^T y)

    with ``D`` keeping every ``r``-th sample of the valid convolution
    (starting at ``(r - 1) // 2``), ``Dᵀ`` placing LR values into zeros,
    ``⋆`` correlation (convolution with the flipped kernel), and ``Eᵀ``
    adding the padded rows and columns back onto the edge pixels. The
    boundary is thus exactly that of ``simulate_scan`` ('edge' padding), and
    ``<A x, y> = <x, Aᵀ y>`` holds to round-off. The map must hold an integer
    number of LR pixels; trailing fine pixels are left out (the LR grid has
    ``n // r`` pixels, as in ``simulate_scan``). Computed in float64.

    Examples
    --------
    >>> import numpy as np
    >>> op = ScanOperator.from_scan(60.0, step_nm=(50.0, 50.0), ratio=(2, 2), scan_mode="fly")
    >>> op.forward(np.ones((1, 8, 8))).shape
    (1, 4, 4)
    """

    kernel: np.ndarray
    ratio: tuple[int, int]

    def __post_init__(self) -> None:
        kernel = np.asarray(self.kernel, dtype=np.float64)
        if kernel.ndim != 2 or kernel.shape[0] % 2 == 0 or kernel.shape[1] % 2 == 0:
            raise ValueError(f"kernel must be a 2-D array of odd sizes (centred); got shape {kernel.shape}.")
        ratio = tuple(int(r) for r in self.ratio)
        if len(ratio) != 2 or min(ratio) < 1 or ratio != tuple(self.ratio):
            raise ValueError(f"ratio must be two integers >= 1 (LR step / fine pixel, y and x); got {self.ratio!r}.")
        object.__setattr__(self, "kernel", kernel)
        object.__setattr__(self, "ratio", ratio)

    @classmethod
    def from_scan(
        cls,
        probe: ProbeLike,
        *,
        step_nm: tuple[float, float],
        ratio: tuple[int, int],
        scan_mode: Literal["step", "fly"] = "step",
        fast_axis: Literal["x", "y"] = "x",
    ) -> ScanOperator:
        """The operator of a scan with step ``step_nm`` (y, x) on a grid ``ratio`` times finer."""
        pixel = (step_nm[0] / ratio[0], step_nm[1] / ratio[1])
        kernel = probe_kernel(probe, pixel_nm=pixel, scan_mode=scan_mode, fast_axis=fast_axis,
                              step_nm=(step_nm[0], step_nm[1]))
        return cls(kernel, ratio)

    @functools.cached_property
    def taps(self) -> np.ndarray:
        """The kernel with the two-tap mean of even ratios folded in."""
        taps = self.kernel
        for axis, r in enumerate(self.ratio):
            if r % 2 == 0:
                lo = [(0, 0), (0, 0)]
                hi = [(0, 0), (0, 0)]
                lo[axis], hi[axis] = (0, 1), (1, 0)
                taps = 0.5 * (np.pad(taps, lo) + np.pad(taps, hi))
        return taps

    @property
    def pad(self) -> tuple[int, int]:
        """Edge padding in fine pixels: the kernel's half-width."""
        return (self.kernel.shape[0] // 2, self.kernel.shape[1] // 2)

    @property
    def start(self) -> tuple[int, int]:
        """Index of LR pixel 0's sample in the valid convolution."""
        return ((self.ratio[0] - 1) // 2, (self.ratio[1] - 1) // 2)

    @property
    def reach(self) -> tuple[int, int]:
        """Fine pixels beyond an LR pixel's footprint that its expectation depends on."""
        return (self.pad[0] + 1, self.pad[1] + 1)

    @property
    def reach_lr(self) -> int:
        """The reach in whole LR pixels (both axes): the halo that makes chunked ``A`` exact."""
        return max(math.ceil(f / r) for f, r in zip(self.reach, self.ratio, strict=True))

    def lr_shape(self, shape: Sequence[int]) -> tuple[int, int]:
        """LR pixels ``(ny, nx)`` of a fine map of ``shape`` (last two axes)."""
        return (shape[-2] // self.ratio[0], shape[-1] // self.ratio[1])

    def forward(self, x: Any) -> Any:
        """``A x``: the LR expectation of fine-grid maps ``x`` (..., ny, nx), float64."""
        xp = array_module(x)
        x = xp.asarray(x, dtype=xp.float64)
        if x.ndim < 2 or x.shape[-2] < self.ratio[0] or x.shape[-1] < self.ratio[1]:
            raise ValueError(f"x must be (..., y, x) with at least {self.ratio} pixels; got shape {x.shape}.")
        (dy, dx), (uy, ux), (ry, rx) = self.pad, self.start, self.ratio
        lead = x.ndim - 2
        padded = xp.pad(x, [(0, 0)] * lead + [(dy, dy), (dx, dx)], mode="edge")
        taps = xp.asarray(self.taps).reshape((1,) * lead + self.taps.shape)
        ny, nx = self.lr_shape(x.shape)
        return _fftconvolve(padded, taps, "valid")[..., uy:uy + ry * ny:ry, ux:ux + rx * nx:rx]

    def adjoint(self, y: Any, shape: Sequence[int]) -> Any:
        """``Aᵀ y``: LR maps ``y`` (..., my, mx) back onto a fine grid of ``shape`` (ny, nx), float64."""
        xp = array_module(y)
        y = xp.asarray(y, dtype=xp.float64)
        ny, nx = int(shape[-2]), int(shape[-1])
        if y.shape[-2:] != self.lr_shape((ny, nx)):
            raise ValueError(f"y has LR shape {y.shape[-2:]} but a fine grid of {(ny, nx)} holds "
                             f"{self.lr_shape((ny, nx))} LR pixels.")
        (dy, dx), (uy, ux), (ry, rx) = self.pad, self.start, self.ratio
        ky, kx = self.taps.shape
        lead = y.shape[:-2]
        z = xp.zeros((*lead, ny + 2 * dy - ky + 1, nx + 2 * dx - kx + 1), dtype=xp.float64)
        z[..., uy:uy + ry * y.shape[-2]:ry, ux:ux + rx * y.shape[-1]:rx] = y
        flipped = xp.asarray(self.taps[::-1, ::-1].copy()).reshape((1,) * len(lead) + self.taps.shape)
        full = _fftconvolve(z, flipped, "full")  # (..., ny + 2 dy, nx + 2 dx)
        out = full[..., dy:dy + ny, :].copy()  # Eᵀ along y: padded rows add onto the edge rows
        out[..., 0, :] += full[..., :dy, :].sum(axis=-2)
        out[..., -1, :] += full[..., dy + ny:, :].sum(axis=-2)
        edge = out[..., :, dx:dx + nx].copy()  # then along x
        edge[..., :, 0] += out[..., :, :dx].sum(axis=-1)
        edge[..., :, -1] += out[..., :, dx + nx:].sum(axis=-1)
        return edge
