"""Does an enhanced map agree with what was measured? Poisson data-consistency check and refinement.

An enhanced map ``x`` holds, on a grid ``r`` times finer than the scan, the
counts an ideal point probe would record per scan point. Pushed through the
scan that recorded the low-resolution (LR) data — blur by the probe (and its
motion in a fly scan), sampling at the scan positions — it predicts the LR
expectation ``μ = A x``. :func:`consistency` compares ``μ`` with the
measured counts ``y`` through the Poisson deviance, per pixel and per map;
:func:`refine` moves ``x`` the least distance that lowers the Poisson
negative log-likelihood of ``y``.

The operator ``A`` (:class:`ScanOperator`) is the noise-free
:func:`~xrfsr_dask.simulate.simulate_scan` written as one FFT convolution
and a decimation, with its exact adjoint ``Aᵀ``, on NumPy or CuPy (the
namespace of the input). Both functions run lazily over dask chunks with
halos and give the whole-map result.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask
import dask.array as dsa
import numpy as np
import xarray as xr
from dask.array.overlap import ensure_minimum_chunksize

from xrfsr_dask._backend import _is_cupy, array_module
from xrfsr_dask._grid import coord_grid
from xrfsr_dask.errors import (
    GridMismatchError,
    LabelMismatchError,
    MissingMetadataError,
    SchemaError,
    StoreExistsError,
    XrfsrWarning,
)
from xrfsr_dask.io.store import DEFAULT_CHUNKS
from xrfsr_dask.probe import GaussianProbe
from xrfsr_dask.schema import add_provenance, kind_of, validate
from xrfsr_dask.simulate import probe_kernel

__all__ = [
    "COUNT_TOLERANCE",
    "DEVIANCE_TOLERANCE",
    "MU_FLOOR",
    "ScanOperator",
    "consistency",
    "consistency_to_zarr",
    "consistency_url",
    "expected_deviance",
    "poisson_deviance",
    "refine",
    "refine_array",
]

MU_FLOOR = 1e-6
"""Smallest expected count used in ``log μ`` and ``y / μ`` (in the data's units)."""
DEVIANCE_TOLERANCE = 1.25
"""Default verdict: a map is consistent while its mean deviance stays within this factor of the
mean deviance Poisson noise alone gives (:func:`expected_deviance`)..."""
COUNT_TOLERANCE = 0.02
"""...and its forward-projected counts are within this fraction of the measured counts."""
GRID_ATOL_PX = 0.01
"""Fine pixels by which an origin may miss the grid of the scan before it is refused."""
MARKER = "xrfsr_dask"

ProbeLike = float | Sequence[float] | GaussianProbe


# --------------------------------------------------------------------------- the operator


def _fftconvolve(a: Any, b: Any, mode: str) -> Any:
    """``fftconvolve`` over the last two axes, from SciPy or CuPy by the input's type."""
    if _is_cupy(a):
        from cupyx.scipy.signal import fftconvolve
    else:
        from scipy.signal import fftconvolve
    return fftconvolve(a, b, mode=mode, axes=(-2, -1))


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
                              step_nm=tuple(step_nm))
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


# --------------------------------------------------------------------------- Poisson statistics


def poisson_deviance(measured: Any, expected: Any) -> Any:
    """Per-pixel Poisson deviance ``2[y log(y/μ) − (y − μ)]`` (float64, NaN where either is NaN).

    Parameters
    ----------
    measured
        Counts ``y`` (NumPy or CuPy).
    expected
        Expectations ``μ``; values below :data:`MU_FLOOR` count as ``MU_FLOOR``.

    Returns
    -------
    array
        The deviance, ``≥ 0``; its mean is about 1 per pixel when ``y`` is a
        Poisson draw around ``μ`` with ``μ`` above ~10 counts (see
        :func:`expected_deviance` for fewer counts).

    References
    ----------
    McCullagh, P. & Nelder, J. A. Generalized Linear Models, 2nd ed.
    (Chapman & Hall, 1989), §2.3 and §6.2 (deviance of the Poisson model).
    https://doi.org/10.1007/978-1-4899-3242-6
    """
    xp = array_module(measured, expected)
    y = xp.asarray(measured, dtype=xp.float64)
    mu = xp.maximum(xp.asarray(expected, dtype=xp.float64), MU_FLOOR)
    positive = y > 0
    term = xp.where(positive, y * xp.log(xp.where(positive, y, 1.0) / mu), 0.0)
    return 2.0 * (term - (y - mu))


@functools.cache
def _deviance_table() -> tuple[np.ndarray, np.ndarray]:
    """``E[D](μ)`` on a log grid of ``μ`` from 1e-6 to 1e4, by summing the Poisson distribution."""
    from scipy.special import gammaln, xlogy

    mu = np.logspace(-6, 4, 401)
    out = np.empty_like(mu)
    for i, m in enumerate(mu):
        y = np.arange(0, int(m + 12 * math.sqrt(m) + 40))
        p = np.exp(xlogy(y, m) - m - gammaln(y + 1))
        out[i] = 2 * (np.sum(p * xlogy(y, y)) - xlogy(m, m))
    return np.log(mu), out


def expected_deviance(expected: Any) -> Any:
    """Mean Poisson deviance of a consistent pixel: ``E[D | μ] = 2(E[y log y] − μ log μ)``.

    About ``1 + 1/(6μ)`` for ``μ`` above ~10 counts; below, fewer than one
    (0.5 at ``μ ≈ 0.3``, ``→ 0`` as ``μ → 0``): low-count maps have a lower
    mean deviance even when consistent. Exact sums of the Poisson
    distribution tabulated for ``1e-6 ≤ μ ≤ 1e4`` and interpolated in
    ``log μ``; the asymptotic series above.

    Parameters
    ----------
    expected
        ``μ`` per pixel (NumPy or CuPy).

    Returns
    -------
    array
        ``E[D]`` per pixel, float64.
    """
    xp = array_module(expected)
    log_mu, table = _deviance_table()
    mu = xp.maximum(xp.asarray(expected, dtype=xp.float64), MU_FLOOR)
    inside = xp.interp(xp.log(mu), xp.asarray(log_mu), xp.asarray(table))
    big = mu > 1e4
    return xp.where(big, 1.0 + 1.0 / (6.0 * mu) + 1.0 / (6.0 * mu**2), inside)


# --------------------------------------------------------------------------- refinement on arrays


def _refine_checks(iterations: int, weight: float, offset: float) -> None:
    if not (isinstance(iterations, int | np.integer) and iterations >= 0):
        raise ValueError(f"iterations must be an integer >= 0; got {iterations!r}.")
    if not (isinstance(weight, int | float) and weight >= 0 and not math.isnan(weight)):
        raise ValueError(f"weight must be a number >= 0 (math.inf keeps the network's output); got {weight!r}.")
    if not (isinstance(offset, int | float) and math.isfinite(offset) and offset > 0):
        raise ValueError(f"offset must be a positive number of counts; got {offset!r}.")


def refine_array(
    x0: Any,
    measured: Any,
    operator: ScanOperator,
    *,
    iterations: int = 20,
    weight: float = 1.0,
    offset: float = 1.0,
    history: bool = False,
) -> Any:
    """Refine a fine-grid estimate toward the Poisson likelihood of the measurement (bare arrays).

    Minimises, over ``x ≥ 0``,

    .. math::

        F(x) = \\sum_i [\\mu_i - y_i \\log \\mu_i]
             + \\frac{\\lambda}{2 r_y r_x} \\sum_j \\frac{(x_j - x_{0j})^2}{x_{0j} + c},
        \\qquad \\mu = A x + \\epsilon

    by ``iterations`` steps of the MAP-EM (one-step-late free) update of
    De Pierro (1995): the EM surrogate of the likelihood is separable, so
    each step solves, per fine pixel, the quadratic
    ``p x² + (a − p x₀) x − x e = 0`` with ``a = Aᵀ1``, ``e = Aᵀ(y/μ)``
    (``x`` the current iterate on the right) and ``p = λ/(r_y r_x (x₀ + c))``,
    taking its non-negative root. Every step lowers ``F`` (a
    majorise–minimise scheme), keeps ``x ≥ 0``, and is Richardson–Lucy for
    ``λ = 0``; ``λ → ∞`` keeps ``x₀``.

    Parameters
    ----------
    x0
        The network's output on the fine grid ``(..., ny, nx)`` (NumPy or
        CuPy); negative values are clipped to 0, NaN pixels stay NaN (and
        count as 0 for their neighbours).
    measured
        LR counts ``y`` (..., ny // r_y, nx // r_x); NaN pixels are left out
        of the likelihood.
    operator
        The scan, :class:`ScanOperator`.
    iterations
        Number of updates ``N``.
    weight
        ``λ``: how strongly the output stays near ``x₀``. The proximity term
        is the second-order expansion of the Poisson log-likelihood of
        ``x₀`` read as a measurement of ``x`` with the LR dwell, scaled to
        one LR pixel per ``r_y r_x`` fine pixels: ``λ = 1`` trusts the
        network as much as one more measurement of the same counts.
    offset
        ``c``, counts added to ``x₀`` in the proximity weight, so that pixels
        the network set to zero can still move.
    history
        Also return ``{"nll": [...], "penalty": [...]}``, the two terms of
        ``F`` at ``x⁰ … x^N`` (``nll`` is ``Σ μ − y log μ`` over valid pixels).

    Returns
    -------
    array or (array, dict)
        The refined map, float64, same shape as ``x0``.

    Notes
    -----
    A weighted quadratic rather than a Kullback–Leibler proximity term: both
    measure the step in Poisson units (variance ∝ counts), the quadratic is
    the KL divergence's expansion about ``x₀``, and with it the EM step has
    a closed form (the positive root of a quadratic), where a KL term needs
    an inner solve of ``x log x`` per pixel. ``ε =`` :data:`MU_FLOOR`.

    References
    ----------
    Richardson, W. H. J. Opt. Soc. Am. 62, 55 (1972). https://doi.org/10.1364/JOSA.62.000055
    Lucy, L. B. Astron. J. 79, 745 (1974). https://doi.org/10.1086/111605
    De Pierro, A. R. A modified expectation maximization algorithm for
    penalized likelihood estimation in emission tomography. IEEE Trans.
    Med. Imaging 14, 132 (1995). https://doi.org/10.1109/42.370409
    """
    _refine_checks(iterations, weight, offset)
    xp = array_module(x0, measured)
    x0 = xp.asarray(x0, dtype=xp.float64)
    y = xp.asarray(measured, dtype=xp.float64)
    missing = xp.isnan(x0)
    x0 = xp.maximum(xp.where(missing, 0.0, x0), 0.0)
    valid = xp.isfinite(y)
    y = xp.where(valid, y, 0.0)
    mask = valid.astype(xp.float64)
    shape = x0.shape[-2:]
    a = operator.adjoint(mask, shape)
    prox = weight / (operator.ratio[0] * operator.ratio[1]) / (x0 + offset) if math.isfinite(weight) else None
    record: dict[str, list[float]] = {"nll": [], "penalty": []}

    def objective(x: Any, mu: Any) -> None:
        record["nll"].append(float(xp.sum(mask * (mu - y * xp.log(mu)))))
        record["penalty"].append(0.0 if prox is None else float(0.5 * xp.sum(prox * (x - x0) ** 2)))

    x = x0
    for _ in range(iterations if prox is not None else 0):
        mu = xp.maximum(operator.forward(x), 0.0) + MU_FLOOR
        if history:
            objective(x, mu)
        q = x * xp.maximum(operator.adjoint(mask * y / mu, shape), 0.0)
        if weight == 0:
            x = xp.where(a > 0, q / xp.where(a > 0, a, 1.0), x)
            continue
        b = a - prox * x0
        root = xp.sqrt(b * b + 4.0 * prox * q)
        # The non-negative root, in the form without cancellation for either sign of b.
        x = xp.where(b > 0, 2.0 * q / xp.where(b > 0, b + root, 1.0), (root - b) / (2.0 * prox))
    if history:
        objective(x, xp.maximum(operator.forward(x), 0.0) + MU_FLOOR)
        if prox is None:  # weight = inf: no step was taken
            record = {k: v * (iterations + 1) for k, v in record.items()}
    x = xp.where(missing, xp.nan, x)
    return (x, record) if history else x


# --------------------------------------------------------------------------- aligning the two grids


@dataclass(frozen=True, eq=False)
class _Pair:
    """The enhanced and measured data cropped to their common footprint, and the scan between them."""

    fine: xr.DataArray
    lr: xr.DataArray
    operator: ScanOperator
    probe: Any
    crop: dict[str, list[int]]


def _as_probe(probe: Any, measured: xr.DataArray) -> Any:
    if probe is None:
        fwhm = measured.attrs.get("probe_fwhm_nm")
        if fwhm is None:
            raise MissingMetadataError(
                "measured.attrs['probe_fwhm_nm'] is None: the forward model needs the probe size. Pass "
                "probe=<FWHM in nm> (one number, (major, minor), or a GaussianProbe, e.g. "
                "GaussianProbe.from_fit(fit_probe(...))), or --probe-fwhm on the command line, or set the "
                "attribute on the measured data."
            )
        return GaussianProbe(float(fwhm))
    if hasattr(probe, "image") and hasattr(probe, "fwhm_pair_nm"):
        return probe
    if isinstance(probe, Sequence) and not isinstance(probe, str):
        return GaussianProbe(tuple(float(v) for v in probe))
    if isinstance(probe, int | float):
        return GaussianProbe(float(probe))
    raise TypeError(f"probe must be a FWHM in nm, (major, minor) or a GaussianProbe; got {probe!r}.")


def _check_labels(enhanced: xr.DataArray, measured: xr.DataArray) -> xr.DataArray:
    """``enhanced`` with its elements in the measured order; refuses other elements or angles."""
    kind, other = kind_of(measured), kind_of(enhanced)
    if kind not in ("maps", "series") or kind != other:
        raise SchemaError(
            f"enhanced is {other} {enhanced.dims} and measured is {kind} {measured.dims}; both must be maps "
            "(element, y, x) or both series (element, angle, y, x) of the same scan."
        )
    have = [str(e) for e in enhanced.element.values]
    want = [str(e) for e in measured.element.values]
    if set(have) != set(want):
        missing = [e for e in want if e not in have]
        extra = [e for e in have if e not in want]
        raise LabelMismatchError(
            f"enhanced has elements {have} but measured has {want} (missing from enhanced: {missing}, not "
            f"measured: {extra}). Compare the same maps: select the common elements on both, e.g. "
            f"enhanced.sel(element={sorted(set(have) & set(want))}) and measured.sel(element=...)."
        )
    if have != want:
        enhanced = enhanced.sel(element=want)
    if kind == "series":
        a, b = np.asarray(enhanced.angle.values, float), np.asarray(measured.angle.values, float)
        if a.shape != b.shape or not np.allclose(a, b, atol=1e-6):
            raise LabelMismatchError(
                f"enhanced has {a.size} angles ({a[:4].tolist()}...) and measured {b.size} "
                f"({b[:4].tolist()}...); they must be the same projections: select matching angles, "
                "e.g. enhanced.sel(angle=measured.angle)."
            )
    return enhanced


def _axis_grid(enhanced: xr.DataArray, measured: xr.DataArray, dim: str) -> tuple[int, int, int, int]:
    """``(ratio, first LR pixel, end LR pixel, first fine pixel)`` of the common footprint along ``dim``."""
    axis = 0 if dim == "y" else 1
    step = float(measured.attrs["step_nm"][axis])
    lr_origin = float(measured[dim].values[0])
    grid = coord_grid(enhanced, dim, name="enhanced", purpose="the consistency check needs its grid")
    origin, pixel = grid or (float(enhanced[dim].values[0]), float(enhanced.attrs["step_nm"][axis]))
    ratio = step / pixel
    r = round(ratio)
    if r < 1 or abs(ratio - r) > 1e-3 * ratio:
        raise GridMismatchError(
            f"the enhanced pixel along {dim} is {pixel:g} nm and the measured step {step:g} nm: their ratio "
            f"{ratio:.4g} is not an integer. The enhanced map must be on a grid an integer number of times "
            "finer than the scan (enhance() makes step/scale); resample it onto such a grid."
        )
    edge = (lr_origin - step / 2 - (origin - pixel / 2)) / pixel  # fine index where LR pixel 0 starts
    j0 = round(edge)
    if abs(edge - j0) > GRID_ATOL_PX:
        raise GridMismatchError(
            f"the enhanced pixels do not tile the scan pixels along {dim}: LR pixel 0 starts at "
            f"{lr_origin - step / 2:g} nm, {abs(edge - j0):.3g} of a fine pixel from the nearest fine "
            f"pixel edge. Fine pixel centres must lie at measured.{dim}[0] - step/2 + pixel/2 + k*pixel "
            f"(the grid enhance() makes); fix the {dim} coordinate if it was shifted or mislabelled."
        )
    n_lr, n_fine = measured.sizes[dim], enhanced.sizes[dim]
    k0, k1 = max(0, -(j0 // r)), min(n_lr, (n_fine - j0) // r)
    if k1 <= k0:
        raise GridMismatchError(
            f"the enhanced map ({origin - pixel / 2:g} to {origin + pixel * (n_fine - 0.5):g} nm along {dim}) "
            f"covers no whole pixel of the measured scan ({lr_origin - step / 2:g} to "
            f"{lr_origin + step * (n_lr - 0.5):g} nm); compare data of the same region."
        )
    return r, k0, k1, j0 + k0 * r


def _pair(enhanced: xr.DataArray, measured: xr.DataArray, probe: Any) -> _Pair:
    enhanced, measured = validate(enhanced), validate(measured)
    enhanced = _check_labels(enhanced, measured)
    probe = _as_probe(probe, measured)
    ratio, crop, lr_sel, fine_sel = [], {}, {}, {}
    for dim in ("y", "x"):
        r, k0, k1, j0 = _axis_grid(enhanced, measured, dim)
        ratio.append(r)
        lr_sel[dim], fine_sel[dim] = slice(k0, k1), slice(j0, j0 + (k1 - k0) * r)
        crop[dim] = [k0, k1]
    step = tuple(float(v) for v in measured.attrs["step_nm"])
    operator = ScanOperator.from_scan(probe, step_nm=step, ratio=tuple(ratio),
                                      scan_mode=measured.attrs["scan_mode"], fast_axis=measured.attrs["fast_axis"])
    if str(measured.attrs.get("units", "counts")) != "counts":
        warnings.warn(
            f"measured units are {measured.attrs.get('units')!r}, not 'counts': the Poisson deviance and "
            "likelihood assume raw counts per scan point; normalised data (counts/s, per I0) give "
            "deviances on another scale.", XrfsrWarning, stacklevel=3,
        )
    return _Pair(enhanced.isel(fine_sel), measured.isel(lr_sel), operator, probe, crop)


def _lr_chunks(lr: xr.DataArray, halo: int) -> tuple[tuple[int, ...], ...]:
    """Dask chunks of the LR data: its own (or the store defaults), spatial ones at least ``halo``."""
    if isinstance(lr.data, dsa.Array):
        chunks = list(lr.data.chunks)
    else:
        chunks = [dsa.core.normalize_chunks(DEFAULT_CHUNKS[d], (n,))[0] for d, n in zip(lr.dims, lr.shape, strict=True)]
    for axis in (-2, -1):
        if len(chunks[axis]) > 1:
            total = sum(chunks[axis])
            chunks[axis] = (total,) if total < 2 * halo else ensure_minimum_chunksize(max(halo, 1), chunks[axis])
    return tuple(tuple(c) for c in chunks)


def _as_dask(data: Any, chunks: tuple[tuple[int, ...], ...]) -> dsa.Array:
    if not isinstance(data, dsa.Array):
        data = dsa.from_array(data, chunks=chunks, asarray=not _is_cupy(data))
    return data.rechunk(chunks)


@dataclass(frozen=True, eq=False)
class _Chunked:
    """Both arrays as dask, chunked alike (fine chunks ``r`` times the LR ones), and with halos."""

    fine: dsa.Array
    lr: dsa.Array
    fine_halo: dsa.Array
    lr_halo: dsa.Array
    depth: tuple[int, int]


def _overlapped(pair: _Pair, halo: int) -> _Chunked:
    chunks = _lr_chunks(pair.lr, halo)
    ry, rx = pair.operator.ratio
    lr = _as_dask(pair.lr.data, chunks)
    fine = _as_dask(pair.fine.data, (*chunks[:-2], tuple(c * ry for c in chunks[-2]), tuple(c * rx for c in chunks[-1])))
    nd = lr.ndim
    # No overlap along an axis that is one chunk: there is no neighbour to borrow from.
    depth = (halo if lr.numblocks[-2] > 1 else 0, halo if lr.numblocks[-1] > 1 else 0)
    lr_halo = dsa.overlap.overlap(lr, depth={nd - 2: depth[0], nd - 1: depth[1]}, boundary="none")
    fine_halo = dsa.overlap.overlap(fine, depth={nd - 2: depth[0] * ry, nd - 1: depth[1] * rx}, boundary="none")
    return _Chunked(fine, lr, fine_halo, lr_halo, depth)


def _trim(block: Any, depth: tuple[int, int], block_id: tuple[int, ...], nblocks: tuple[int, ...]) -> Any:
    """Cut the halo (``depth`` pixels per side) from the sides of a block that have a neighbour."""
    cut = []
    for i, axis in enumerate((-2, -1)):
        lo = depth[i] if block_id[axis] > 0 else 0
        hi = depth[i] if block_id[axis] < nblocks[i] - 1 else 0
        cut.append(slice(lo, block.shape[axis] - hi))
    return block[(..., *cut)]


def _meta(data: Any, dtype: Any) -> Any:
    xp = array_module(getattr(data, "_meta", data))
    return xp.empty((0,) * data.ndim, dtype=dtype)


def _forward_block(fine: Any, *, operator: ScanOperator, depth: tuple[int, int], nblocks: tuple[int, int],
                   block_id: tuple[int, ...]) -> Any:
    return _trim(operator.forward(fine), depth, block_id, nblocks)


def _refine_block(fine: Any, lr: Any, *, operator: ScanOperator, depth: tuple[int, int], nblocks: tuple[int, int],
                  block_id: tuple[int, ...], **options: Any) -> Any:
    out = refine_array(fine, lr, operator, **options)
    fine_depth = (depth[0] * operator.ratio[0], depth[1] * operator.ratio[1])
    return _trim(out, fine_depth, block_id, nblocks).astype(np.float32)


def _probe_record(probe: Any) -> dict[str, Any]:
    return {"probe_fwhm_nm": list(probe.fwhm_pair_nm), "probe_angle_deg": float(getattr(probe, "angle_deg", 0.0)),
            "probe": type(probe).__name__}


# --------------------------------------------------------------------------- the check


def consistency(
    enhanced: xr.DataArray,
    measured: xr.DataArray,
    *,
    probe: ProbeLike | None = None,
    halo: int | None = None,
    deviance_tolerance: float = DEVIANCE_TOLERANCE,
    count_tolerance: float = COUNT_TOLERANCE,
) -> xr.Dataset:
    """Check an enhanced map against the measured counts it came from, lazily and chunk by chunk.

    The enhanced map is pushed through the scan described by the measured
    data's own metadata (``probe_fwhm_nm``, ``step_nm``, ``scan_mode``,
    ``fast_axis``) — the noise-free :func:`~xrfsr_dask.simulate.simulate_scan`
    of it — and the prediction ``μ`` is compared with the counts ``y``.

    Parameters
    ----------
    enhanced
        Maps or a series on a grid an integer number of times finer than the
        measured scan, its pixels tiling the scan pixels (as
        :func:`~xrfsr_dask.enhance.enhance` makes it); NumPy, CuPy or dask.
        Only the scan pixels it covers whole are compared (both are cropped
        to the common footprint, recorded in ``attrs["crop"]``).
    measured
        The LR maps or series, in counts per scan point.
    probe
        The probe to model, overriding ``measured.attrs["probe_fwhm_nm"]``:
        FWHM in nm, ``(major, minor)``, or a
        :class:`~xrfsr_dask.probe.GaussianProbe` (e.g. from a fit).
    halo
        LR pixels of overlap between chunks; by default (and at least) the
        kernel's reach, which makes the chunked result equal the whole-map one.
    deviance_tolerance, count_tolerance
        The verdict ``consistent``: mean deviance at most
        ``deviance_tolerance`` times the mean deviance of Poisson noise
        (``expected_mean_deviance``) and ``|count_ratio − 1|`` at most
        ``count_tolerance``.

    Returns
    -------
    xarray.Dataset
        Lazy (dask) variables on the measured grid:

        ``expected`` (element, [angle,] y, x)
            ``μ = A x``, the counts the enhanced map predicts (measured units).
        ``deviance`` (element, [angle,] y, x)
            ``2[y log(y/μ) − (y − μ)]`` per scan pixel (dimensionless).
        ``mean_deviance``, ``expected_mean_deviance`` (element, [angle])
            Its mean over the finite pixels, and the mean a consistent map
            would give from Poisson noise alone (``≈ 1`` above ~10 counts).
        ``count_ratio`` (element, [angle])
            ``Σ μ / Σ y``: forward-projected enhanced counts over measured.
        ``total_count_ratio`` (element, [angle])
            Mean of the enhanced map over mean of the measured map: counts
            conserved on the fine grid (both in counts per scan point).
        ``pixels`` (element, [angle])
            Finite pixels compared.
        ``consistent`` (element, [angle])
            The verdict above.

        Attrs carry the scan (``step_nm``, ``ratio``, ``scan_mode``,
        ``fast_axis``, ``probe_fwhm_nm``), ``crop``, the tolerances, and
        ``provenance``: the enhanced data's records plus this one.

    Raises
    ------
    GridMismatchError
        The fine pixel is not the scan step divided by an integer, the fine
        pixels do not tile the scan pixels, or the two do not overlap.
    LabelMismatchError
        Different elements or angles.
    MissingMetadataError
        The measured data carry no probe size and ``probe`` is not given.
    SchemaError
        Inputs that break the data model, or maps against a series.

    Notes
    -----
    The Poisson deviance of pixel ``i`` is twice the log-likelihood ratio of
    the saturated model (``μ = y``) and ``μ``:

    .. math:: D_i = 2\\left[y_i \\log\\frac{y_i}{\\mu_i} - (y_i - \\mu_i)\\right],

    ``y log y = 0`` at ``y = 0``, ``μ ≥`` :data:`MU_FLOOR`. For Poisson
    ``y`` around the true ``μ``, ``E[D] ≈ 1 + 1/(6μ)`` (the χ² limit with
    one degree of freedom), so a mean well above 1 — or above
    ``expected_mean_deviance`` for low counts — says the enhanced map
    predicts counts the measurement contradicts, and the ``deviance`` map
    shows where. Hot spots where the measured data had NaN are left out
    (NaN deviance).

    References
    ----------
    McCullagh, P. & Nelder, J. A. Generalized Linear Models, 2nd ed.
    (Chapman & Hall, 1989), §6.2. https://doi.org/10.1007/978-1-4899-3242-6

    Examples
    --------
    >>> import numpy as np
    >>> from xrfsr_dask import nmc_particle, simulate_scan
    >>> hr = nmc_particle((128, 128), pixel_nm=25.0, elements=["Ni_K"], counts=400.0, background=50.0)
    >>> lr = simulate_scan(hr, step_nm=50.0, probe=60.0, scan_mode="fly", noise=True)
    >>> check = consistency(hr, lr)          # the truth is consistent with its own scan
    >>> 0.9 < float(check.mean_deviance.sel(element="Ni_K")) < 1.1
    True
    """
    pair = _pair(enhanced, measured, probe)
    op = pair.operator
    for name, value in (("deviance_tolerance", deviance_tolerance), ("count_tolerance", count_tolerance)):
        if not (isinstance(value, int | float) and value > 0):
            raise ValueError(f"{name} must be a positive number; got {value!r}.")
    halo = _halo(halo, op.reach_lr, minimum=op.reach_lr, what="consistency")
    parts = _overlapped(pair, halo)
    y, fine = parts.lr, parts.fine
    expected = parts.fine_halo.map_blocks(
        _forward_block, chunks=y.chunks, dtype=np.float64, meta=_meta(y, np.float64), operator=op,
        depth=parts.depth, nblocks=y.numblocks[-2:],
    )
    deviance = dsa.map_blocks(poisson_deviance, y, expected, dtype=np.float64, meta=_meta(y, np.float64))
    valid = dsa.isfinite(deviance)
    e_dev = dsa.where(valid, dsa.map_blocks(expected_deviance, expected, dtype=np.float64,
                                            meta=_meta(y, np.float64)), np.nan)
    dims, spatial = pair.lr.dims, (-2, -1)
    y64 = y.astype(np.float64)
    mean_dev = dsa.nanmean(deviance, axis=spatial)
    mean_edev = dsa.nanmean(e_dev, axis=spatial)
    count_ratio = dsa.where(valid, expected, 0).sum(axis=spatial) / dsa.where(valid, y64, 0).sum(axis=spatial)
    total_ratio = dsa.nanmean(fine.astype(np.float64), axis=spatial) / dsa.nanmean(y64, axis=spatial)
    verdict = (mean_dev <= deviance_tolerance * mean_edev) & (abs(count_ratio - 1) <= count_tolerance)
    units = pair.lr.attrs.get("units", "counts")
    maps = dims[:-2]
    coords = {k: v for k, v in pair.lr.coords.items()}
    ds = xr.Dataset(
        {
            "expected": (dims, expected.astype(np.float32), {
                "units": units, "long_name": "counts predicted by the enhanced map (forward model)"}),
            "deviance": (dims, deviance.astype(np.float32), {
                "units": "1", "long_name": "Poisson deviance per scan pixel, 2[y log(y/mu) - (y - mu)]"}),
            "mean_deviance": (maps, mean_dev, {"units": "1 (per scan pixel)", "long_name": "mean Poisson deviance"}),
            "expected_mean_deviance": (maps, mean_edev, {
                "units": "1 (per scan pixel)", "long_name": "mean deviance of Poisson noise around the prediction"}),
            "count_ratio": (maps, count_ratio, {
                "units": "1", "long_name": "forward-projected enhanced counts / measured counts"}),
            "total_count_ratio": (maps, total_ratio, {
                "units": "1", "long_name": "mean of the enhanced map / mean of the measured map"}),
            "pixels": (maps, valid.sum(axis=spatial), {"units": "1", "long_name": "finite scan pixels compared"}),
            "consistent": (maps, verdict, {"long_name": "mean deviance and count ratio within tolerance"}),
        },
        coords=coords,
    )
    ds.attrs = {
        "step_nm": list(pair.lr.attrs["step_nm"]), "ratio": list(op.ratio), "scan_mode": pair.lr.attrs["scan_mode"],
        "fast_axis": pair.lr.attrs["fast_axis"], **_probe_record(pair.probe), "crop": pair.crop,
        "deviance_tolerance": float(deviance_tolerance), "count_tolerance": float(count_tolerance),
        "units": units, "measured_provenance": list(pair.lr.attrs.get("provenance", [])),
        "provenance": list(pair.fine.attrs.get("provenance", [])),
    }
    return add_provenance(ds, "xrfsr_dask.consistency.consistency", {
        **_probe_record(pair.probe), "halo": halo, "crop": pair.crop, "ratio": list(op.ratio),
        "deviance_tolerance": deviance_tolerance, "count_tolerance": count_tolerance,
    })


def _halo(halo: int | None, default: int, *, minimum: int, what: str) -> int:
    if halo is None:
        return default
    if not (isinstance(halo, int | np.integer) and halo >= minimum):
        raise ValueError(
            f"halo must be an integer >= {minimum} LR pixels for {what} (the kernel's reach: less would make "
            f"chunk seams show); got {halo!r}. Leave it out for the default ({default})."
        )
    return int(halo)


def consistency_url(destination: str) -> str:
    """Where :func:`~xrfsr_dask.enhance.enhance_to_zarr` with ``check=True`` writes the check of ``destination``.

    ``scan_hr.zarr`` → ``scan_hr.consistency.zarr`` (any URL; ``.consistency.zarr``
    is appended when the name does not end in ``.zarr``).
    """
    stem = destination.rstrip("/")
    return (stem[:-5] if stem.endswith(".zarr") else stem) + ".consistency.zarr"


def consistency_to_zarr(
    enhanced: str | xr.DataArray,
    measured: str | xr.DataArray,
    destination: str | None = None,
    *,
    probe: ProbeLike | None = None,
    halo: int | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Compute :func:`consistency` and write it to a zarr v3 store, marked complete last.

    Parameters
    ----------
    enhanced, measured
        DataArrays or URLs/paths of xrfsr_dask stores.
    destination
        URL of the new store; by default :func:`consistency_url` of the
        enhanced store's URL (required when ``enhanced`` is a DataArray).
    probe, halo
        As for :func:`consistency`.
    overwrite
        Replace an existing store at ``destination``.
    storage_options
        fsspec options for all three stores.

    Returns
    -------
    xarray.Dataset
        The check, computed (the per-pixel maps as written, the summaries in
        memory). The store's root attributes carry
        ``{"xrfsr_dask": {"complete": true, ...}}`` once every chunk landed.

    Raises
    ------
    StoreExistsError
        ``destination`` exists and ``overwrite`` is false.
    """
    from xrfsr_dask.io.store import _location, open_xrf, store_status

    if isinstance(enhanced, str):
        destination = destination or consistency_url(enhanced)
        enhanced = open_xrf(enhanced, storage_options=storage_options)
    if isinstance(measured, str):
        measured = open_xrf(measured, storage_options=storage_options)
    if destination is None:
        raise ValueError("destination is required when enhanced is a DataArray (no store URL to put it beside).")
    result = consistency(enhanced, measured, probe=probe, halo=halo)
    url, options = _location(destination, storage_options)
    if store_status(url, storage_options=options).exists and not overwrite:
        raise StoreExistsError(f"{url} already exists; pass overwrite=True (--overwrite) to replace it.")
    result.attrs[MARKER] = {"complete": False, "kind": "consistency"}
    maps = [v for v in result.data_vars if result[v].ndim == result["deviance"].ndim]
    summaries = [v for v in result.data_vars if v not in maps]
    # The summaries are small reductions over whole maps: compute them once, together with the map writes.
    written = result[maps].to_zarr(url, mode="w", zarr_format=3, consolidated=False, compute=False,
                                   storage_options=options)
    _, computed = dask.compute(written, result[summaries])
    computed.attrs = {}
    computed.to_zarr(url, mode="a", zarr_format=3, consolidated=False, storage_options=options)
    import zarr

    group = zarr.open_group(url, mode="r+", storage_options=options)
    group.attrs[MARKER] = {"complete": True, "kind": "consistency"}
    out = xr.open_zarr(url, zarr_format=3, consolidated=False, storage_options=options)
    return out.load()


# --------------------------------------------------------------------------- refinement


def refine(
    enhanced: xr.DataArray,
    measured: xr.DataArray,
    *,
    iterations: int = 20,
    weight: float = 1.0,
    probe: ProbeLike | None = None,
    offset: float = 1.0,
    halo: int | None = None,
) -> xr.DataArray:
    """Refine an enhanced map toward the Poisson likelihood of the measurement, staying near it.

    Runs :func:`refine_array` on each dask chunk with ``halo`` LR pixels of
    overlap, after aligning the two grids as :func:`consistency` does.

    Parameters
    ----------
    enhanced
        The network's output ``x₀``: maps or a series on the fine grid
        (NumPy, CuPy or dask).
    measured
        The LR counts ``y`` it was enhanced from.
    iterations
        ``N``, MAP-EM updates (0 returns ``x₀``, cropped to the common
        footprint and clipped at 0).
    weight
        ``λ``, the weight of staying near ``x₀`` (see :func:`refine_array`);
        ``math.inf`` keeps ``x₀``; 0 is plain Richardson–Lucy from ``x₀``.
    probe
        Overrides ``measured.attrs["probe_fwhm_nm"]``, as in :func:`consistency`.
    offset
        ``c`` in the proximity weight ``1/(x₀ + c)``, in the data's units.
    halo
        LR pixels of overlap around each chunk, at least the kernel's reach
        (:attr:`ScanOperator.reach_lr`). Exact stitching would need ``2 N``
        reaches (each update looks one reach out and back), but the
        influence of a chunk's edge decays much faster: the default,
        ``reach · (2 + ⌈√N / 2⌉)`` capped at ``2 N`` reaches, keeps the
        stitched result within 1e-6 of the data range of whole-map
        refinement for N ≤ 50, even for plain Richardson–Lucy
        (docs/enhance.md has the error against the halo).

    Returns
    -------
    xarray.DataArray
        Lazy float32 refined counts on the enhanced grid (cropped to the
        measured footprint), with the enhanced attrs and a provenance
        record of ``iterations``, ``weight``, ``offset``, ``halo`` and the probe.

    Raises
    ------
    GridMismatchError, LabelMismatchError, MissingMetadataError, SchemaError
        As for :func:`consistency`.
    ValueError
        Negative ``iterations``, ``weight`` or ``offset``, or a halo below
        the kernel's reach.

    Notes
    -----
    The objective, the update and why the proximity term is quadratic are
    in :func:`refine_array`. The update is multiplicative in its data term,
    so pixels the network set exactly to zero move only through the
    proximity term.

    References
    ----------
    De Pierro, A. R. IEEE Trans. Med. Imaging 14, 132 (1995).
    https://doi.org/10.1109/42.370409
    """
    _refine_checks(iterations, weight, offset)
    pair = _pair(enhanced, measured, probe)
    op = pair.operator
    exact = max(1, 2 * iterations) * op.reach_lr
    halo = _halo(halo, min(exact, op.reach_lr * (2 + math.ceil(math.sqrt(iterations) / 2))), minimum=op.reach_lr,
                 what="refine")
    parts = _overlapped(pair, halo)
    data = dsa.map_blocks(
        _refine_block, parts.fine_halo, parts.lr_halo, chunks=parts.fine.chunks, dtype=np.float32,
        meta=_meta(parts.fine, np.float32), operator=op, depth=parts.depth, nblocks=parts.lr.numblocks[-2:],
        iterations=iterations, weight=weight, offset=offset,
    )
    out = pair.fine.copy(data=data)
    return add_provenance(out, "xrfsr_dask.consistency.refine", {
        "iterations": iterations, "weight": weight, "offset": offset, "halo": halo, **_probe_record(pair.probe),
        "ratio": list(op.ratio), "crop": pair.crop,
        "objective": "sum(mu - y log mu) + weight/(2 ry rx) sum((x - x0)^2 / (x0 + offset)), mu = A x",
    })
