"""Batched Gaussian and knife-edge fits on bare NumPy/CuPy arrays.

The maths behind :mod:`xrfsr_dask.probe`, with no xarray: inputs are arrays
whose leading axes are the batch, coordinates are centred and scaled so that
the normal equations are well conditioned, and the result is one packed
float64 row per item on the host (parameters, standard errors, RMS residual,
iterations, status).

The 2-D fit iterates on the quadratic form ``q = a·dx² + 2b·dx·dy + c·dy²``
of the exponent rather than on (σ₁, σ₂, θ): every column of the Jacobian is
then the Gaussian times a polynomial of degree ≤ 2 in (dx, dy), so ``JᵀJ``
and ``Jᵀr`` follow from a few weighted image moments, and those moments —
about the fixed pixel grid — are one matrix product of the batch with a
table of monomials, shared by all images. The Jacobian (batch × pixels × 7)
is never formed while iterating; it is built once at the end, in the
(σ₁, σ₂, θ) parameters, for the robust standard errors.

That batched solver (:func:`solve_batched`) serves CuPy and the line fits.
Probe images on the CPU go to :mod:`xrfsr_dask._probe_kernel`, the same
algorithm compiled and run one image at a time: 0.11 s for 10,000 images
of 32² on two idle cores (0.27-0.55 s under load), where the batched
solver took 2.9-3.8 s under load (``benchmarks/probe_fit.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from xrfsr_dask import _lm
from xrfsr_dask._backend import array_module, erf, to_host

__all__ = ["STATUS", "fit_arrays", "solve_batched"]

STATUS: tuple[str, ...] = (
    "converged",
    "max_iterations",
    "non_finite_input",
    "no_peak",
    "peak_at_border",
    "centre_outside",
    "width_out_of_range",
    "fit_failed",
)
SCREENED = ("non_finite_input", "no_peak", "peak_at_border")
REASONS = {
    "non_finite_input": "contains NaN or infinite values; mask or remove them before fitting",
    "no_peak": "has no peak above its background (constant or all zero); check the channel",
    "peak_at_border": "has its brightest pixel on the border; crop or re-centre so the probe lies inside",
}
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# Pixels × batch items held in one working set (a few arrays of this size).
_WORKING_SET = {"numpy": 2**17, "cupy": 2**27}

# Monomials X**i Y**j up to degree 4 (the moments JᵀJ needs), and the six the
# columns of the Jacobian are made of: 1, dx, dy, dx², dx·dy, dy².
_POWERS = [(i, d - i) for d in range(5) for i in range(d, -1, -1)]
_INDEX = {power: k for k, power in enumerate(_POWERS)}
_COLUMN_POWERS = [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
_M1 = np.array([_INDEX[p] for p in _COLUMN_POWERS])
_M2 = np.array([[_INDEX[(p[0] + q[0], p[1] + q[1])] for q in _COLUMN_POWERS] for p in _COLUMN_POWERS])
# Moving moments from the grid origin to the centre (xc, yc): binomial expansion.
_BINOM = np.zeros((15, 15))
_SHIFT_X = np.zeros((15, 15), dtype=np.int64)
_SHIFT_Y = np.zeros((15, 15), dtype=np.int64)
for _t, (_i, _j) in enumerate(_POWERS):
    for _s, (_k, _l) in enumerate(_POWERS):
        if _k <= _i and _l <= _j:
            _BINOM[_t, _s] = math.comb(_i, _k) * math.comb(_j, _l)
            _SHIFT_X[_t, _s], _SHIFT_Y[_t, _s] = _i - _k, _j - _l


class _QuadraticGaussian:
    """Normal equations of ``A·exp(-q/2) + B`` from image moments; p = (A, yc, xc, a, b, c, B)."""

    def __init__(self, xp: Any, y: Any, x: Any) -> None:
        self.xp = xp
        yy = xp.repeat(y, x.size)
        xx = xp.tile(x, y.size)
        self.size = yy.size
        self.quadratic = xp.stack([xp.ones_like(xx), xx, yy, xx * xx, xx * yy, yy * yy])
        self.monomials = xp.stack([xx**i * yy**j for i, j in _POWERS], axis=1)
        self.binom, self.sx, self.sy = (xp.asarray(a) for a in (_BINOM, _SHIFT_X, _SHIFT_Y))

    @staticmethod
    def angle_normal(xp: Any, normal: Any, p: Any) -> Any:
        """``JᵀJ`` in the (A, yc, xc, σ₁, σ₂, θ, B) parameters: ``HᵀNH``, H = ∂(a, b, c)/∂(σ₁, σ₂, θ)."""
        _, _, _, sa, sb, phi, _ = p.T
        c, s = xp.cos(phi), xp.sin(phi)
        b = c * s * (1 / sa**2 - 1 / sb**2)
        h = xp.zeros(normal.shape, dtype=normal.dtype)
        for i in (0, 1, 2, 6):
            h[:, i, i] = 1.0
        h[:, 3, 3], h[:, 4, 3], h[:, 5, 3] = -2 * c * c / sa**3, -2 * c * s / sa**3, -2 * s * s / sa**3
        h[:, 3, 4], h[:, 4, 4], h[:, 5, 4] = -2 * s * s / sb**3, 2 * c * s / sb**3, -2 * c * c / sb**3
        h[:, 3, 5], h[:, 4, 5], h[:, 5, 5] = -2 * b, (c * c - s * s) * (1 / sa**2 - 1 / sb**2), 2 * b
        return xp.swapaxes(h, 1, 2) @ normal @ h

    def _gaussian(self, p: Any) -> Any:
        xp = self.xp
        _, yc, xc, a, b, c, _ = p.T
        coef = xp.stack(
            [a * xc * xc + 2 * b * xc * yc + c * yc * yc, -2 * (a * xc + b * yc), -2 * (b * xc + c * yc), a, 2 * b, c],
            axis=1,
        )
        return xp.exp(-0.5 * (coef @ self.quadratic))

    def __call__(self, p: Any, data: Any) -> tuple[Any, Any, Any]:
        xp = self.xp
        n = p.shape[0]
        amp, yc, xc, a, b, c, off = p.T
        e = self._gaussian(p)
        resid = data - (amp[:, None] * e + off[:, None])
        # Degree-4 moments of e² for JᵀJ; degree-2 moments of e and r·e for the rest.
        weights = xp.empty((2, n, self.size), dtype=e.dtype)
        weights[0] = e
        xp.multiply(resid, e, out=weights[1])
        low = (weights.reshape(2 * n, self.size) @ self.monomials[:, :6]).reshape(2, n, 6)
        origin = xp.zeros((3, n, 15), dtype=e.dtype)
        origin[0] = (e * e) @ self.monomials
        origin[1:, :, :6] = low
        powers_x = xp.stack([xp.ones_like(xc), -xc, xc * xc, -xc * xc * xc, xc**4], axis=1)
        powers_y = xp.stack([xp.ones_like(yc), -yc, yc * yc, -yc * yc * yc, yc**4], axis=1)
        shift = self.binom * powers_x[:, self.sx] * powers_y[:, self.sy]
        central = (shift @ origin[..., None])[..., 0]
        m2, m1, r1 = central[0][:, _M2], central[1][:, _M1], central[2][:, _M1]
        cols = xp.zeros((n, 6, 6), dtype=e.dtype)
        cols[:, 0, 0] = 1.0
        cols[:, 1, 1], cols[:, 1, 2] = amp * b, amp * c
        cols[:, 2, 1], cols[:, 2, 2] = amp * a, amp * b
        cols[:, 3, 3], cols[:, 4, 4], cols[:, 5, 5] = -0.5 * amp, -amp, -0.5 * amp
        normal = xp.empty((n, 7, 7), dtype=e.dtype)
        normal[:, :6, :6] = cols @ m2 @ xp.swapaxes(cols, 1, 2)
        normal[:, :6, 6] = (cols @ m1[..., None])[..., 0]
        normal[:, 6, :6] = normal[:, :6, 6]
        normal[:, 6, 6] = self.size
        grad = xp.empty((n, 7), dtype=e.dtype)
        grad[:, :6] = (cols @ r1[..., None])[..., 0]
        grad[:, 6] = xp.sum(resid, axis=1)
        return normal, grad, xp.sum(resid * resid, axis=1)


def _to_quadratic(xp: Any, p: Any) -> Any:
    amp, yc, xc, sa, sb, phi, off = p.T
    c, s = xp.cos(phi), xp.sin(phi)
    ia, ib = 1 / sa**2, 1 / sb**2
    return xp.stack([amp, yc, xc, c * c * ia + s * s * ib, c * s * (ia - ib), s * s * ia + c * c * ib, off], axis=1)


def _from_quadratic(xp: Any, p: Any) -> Any:
    amp, yc, xc, a, b, c, off = p.T
    mean = 0.5 * (a + c)
    root = xp.sqrt((0.5 * (a - c)) ** 2 + b * b)
    with np.errstate(invalid="ignore", divide="ignore"):
        sa = 1 / xp.sqrt(mean - root)
        sb = 1 / xp.sqrt(mean + root)
    phi = 0.5 * xp.arctan2(2 * b, a - c) + 0.5 * math.pi
    return xp.stack([amp, yc, xc, sa, sb, phi, off], axis=1)


def _gauss2d(p: Any, coords: Any, jac: bool) -> tuple[Any, Any]:
    """``A·exp(-u²/2σ₁² - v²/2σ₂²) + B`` with p = (A, yc, xc, σ₁, σ₂, θ, B)."""
    y, x = coords
    amp, yc, xc, sa, sb, phi, off = (p[:, i : i + 1] for i in range(7))
    xp = array_module(p)
    c, s = xp.cos(phi), xp.sin(phi)
    dy, dx = y - yc, x - xc
    u = dx * c + dy * s
    v = -dx * s + dy * c
    ia, ib = 1.0 / sa**2, 1.0 / sb**2
    e = xp.exp(-0.5 * (u * u * ia + v * v * ib))
    model = amp * e + off
    if not jac:
        return model, None
    ae = amp * e
    columns = [
        e,
        ae * (u * s * ia + v * c * ib),
        ae * (u * c * ia - v * s * ib),
        ae * u * u * ia / sa,
        ae * v * v * ib / sb,
        ae * u * v * (ib - ia),
        xp.ones_like(e),
    ]
    return model, xp.stack(columns, axis=2)


def _gauss1d(p: Any, x: Any, jac: bool) -> tuple[Any, Any]:
    """``A·exp(-(x-x₀)²/2σ²) + B`` with p = (A, x₀, σ, B)."""
    amp, xc, sig, off = (p[:, i : i + 1] for i in range(4))
    xp = array_module(p)
    dx = x - xc
    e = xp.exp(-0.5 * (dx / sig) ** 2)
    model = amp * e + off
    if not jac:
        return model, None
    ae = amp * e
    return model, xp.stack([e, ae * dx / sig**2, ae * dx**2 / sig**3, xp.ones_like(e)], axis=2)


def _edge1d(p: Any, x: Any, jac: bool) -> tuple[Any, Any]:
    """``A·(1 + erf((x-x₀)/(√2σ)))/2 + B`` with p = (A, x₀, σ, B)."""
    amp, xc, sig, off = (p[:, i : i + 1] for i in range(4))
    xp = array_module(p)
    z = (x - xc) / (math.sqrt(2.0) * sig)
    step = 0.5 * (1.0 + erf(z))
    model = amp * step + off
    if not jac:
        return model, None
    slope = amp * xp.exp(-z * z) / math.sqrt(math.pi)
    return model, xp.stack([step, -slope / (math.sqrt(2.0) * sig), -slope * z / sig, xp.ones_like(z)], axis=2)


def _start2d(xp: Any, img: Any, y: Any, x: Any) -> Any:
    """Moment estimates of (A, yc, xc, σ₁, σ₂, θ, B) per image."""
    border = xp.concatenate([img[:, 0, :], img[:, -1, :], img[:, 1:-1, 0], img[:, 1:-1, -1]], axis=1)
    off = xp.mean(border, axis=1)
    amp = xp.max(img, axis=(1, 2)) - off
    w = img - off[:, None, None]
    w = xp.where(w > 0.25 * amp[:, None, None], w, 0.0)
    m0 = xp.sum(w, axis=(1, 2))
    yy, xx = y[None, :, None], x[None, None, :]
    yc = xp.sum(w * yy, axis=(1, 2)) / m0
    xc = xp.sum(w * xx, axis=(1, 2)) / m0
    dy, dx = yy - yc[:, None, None], xx - xc[:, None, None]
    syy = xp.sum(w * dy * dy, axis=(1, 2)) / m0
    sxx = xp.sum(w * dx * dx, axis=(1, 2)) / m0
    sxy = xp.sum(w * dx * dy, axis=(1, 2)) / m0
    half = 0.5 * (sxx + syy)
    root = xp.sqrt((0.5 * (sxx - syy)) ** 2 + sxy**2)
    pixel = float(min(y[1] - y[0], x[1] - x[0]))
    sa = xp.sqrt(_lm.CUT_VARIANCE * xp.maximum(half + root, pixel**2 / 4))
    sb = xp.sqrt(_lm.CUT_VARIANCE * xp.maximum(half - root, pixel**2 / 4))
    phi = 0.5 * xp.arctan2(2.0 * sxy, sxx - syy)
    return xp.stack([amp, yc, xc, sa, sb, phi, off], axis=1)


def _start1d(xp: Any, prof: Any, x: Any, kind: str) -> Any:
    """Estimates of (A, x₀, σ, B) per profile."""
    pixel = float(x[1] - x[0])
    if kind == "gaussian":
        off = 0.5 * (xp.mean(prof[:, :2], axis=1) + xp.mean(prof[:, -2:], axis=1))
        amp = xp.max(prof, axis=1) - off
        w = prof - off[:, None]
        w = xp.where(w > 0.5 * amp[:, None], w, 0.0)
        xc = xp.sum(w * x, axis=1) / xp.sum(w, axis=1)
        sig = xp.maximum(xp.sum(w > 0, axis=1) * pixel / FWHM_PER_SIGMA, pixel / 2)
        return xp.stack([amp, xc, sig, off], axis=1)
    low = xp.mean(prof[:, :3], axis=1)
    amp = xp.mean(prof[:, -3:], axis=1) - low
    slope = xp.diff(prof, axis=1) * xp.sign(amp)[:, None]
    i = xp.argmax(slope, axis=1)
    steepest = xp.take_along_axis(slope, i[:, None], axis=1)[:, 0] / pixel
    sig = xp.abs(amp) / (xp.maximum(steepest, 1e-30) * math.sqrt(2 * math.pi))
    sig = xp.clip(sig, pixel / 2, float(x[-1] - x[0]))
    return xp.stack([amp, x[i] + pixel / 2, sig, low], axis=1)


def _screen(xp: Any, data: Any, *, peaked: bool) -> Any:
    """Status code per item for the problems visible before any fit (0: fit it)."""
    flat = data.reshape(data.shape[0], -1)
    finite = xp.all(xp.isfinite(flat), axis=1)
    clean = xp.where(finite[:, None], flat, 0.0)
    flat_range = xp.max(clean, axis=1) - xp.min(clean, axis=1)
    status = xp.where(flat_range <= 0, STATUS.index("no_peak"), 0)
    if peaked:
        pos = xp.unravel_index(xp.argmax(clean, axis=1), data.shape[1:])
        edge = xp.zeros_like(finite)
        for axis, p in enumerate(pos):
            edge |= (p == 0) | (p == data.shape[1 + axis] - 1)
        status = xp.where(edge & (status == 0), STATUS.index("peak_at_border"), status)
    return xp.where(finite, status, STATUS.index("non_finite_input"))


def _stand_in(kind: str, axes: Sequence[Any]) -> list[float]:
    """Parameters of a clean profile that replaces a bad item so the batch stays finite."""
    spans = [float(to_host(a)[-1] - to_host(a)[0]) for a in axes]
    width = 0.2 * min(spans)
    if kind == "probe":
        return [1.0, 0.0, 0.0, width, width, 0.0, 0.0]
    return [1.0, 0.0, width, 0.0]


def fit_arrays(
    data: Any,
    axes: Sequence[Any],
    *,
    kind: Literal["probe", "gaussian", "knife-edge"],
    max_iter: int,
    xtol: float,
    ftol: float,
    single: bool,
    errors: Literal["robust", "uniform"] = "robust",
) -> np.ndarray:
    """Fit every item of ``data`` (..., *field) sampled on centred, scaled ``axes``.

    Returns a float64 host array (..., 2k + 3): k parameters, their standard
    errors, RMS residual, iterations, status code. For ``kind="probe"`` the
    parameters are (A, yc, xc, σ₁, σ₂, θ, B); for lines (A, x₀, σ, B).
    ``errors="robust"``: sandwich (HC2) standard errors from the Jacobian at
    the solution, right for counts whose variance follows the signal;
    ``"uniform"``: curve_fit's, which assume one noise variance everywhere.
    """
    xp = array_module(data)
    if xp.iscomplexobj(data):
        data = xp.abs(data) ** 2
    field = data.shape[-len(axes) :]
    batch_shape = data.shape[: -len(axes)]
    data = xp.asarray(data, dtype=xp.float64).reshape((-1, *field))
    compiled = kind == "probe" and xp is np  # one image at a time, start to finish, while it is in cache
    if compiled:
        from xrfsr_dask import _probe_kernel  # imports numba: only when probes are fitted on the CPU
    status = _probe_kernel.screen(data) if compiled else _screen(xp, data, peaked=kind != "knife-edge")
    if single and int(status[0]):
        what = "probe image" if kind == "probe" else "line profile"
        raise ValueError(f"the {what} {REASONS[STATUS[int(status[0])]]}.")
    axes = [xp.asarray(a, dtype=xp.float64) for a in axes]
    if compiled:
        packed = _probe_kernel.fit_probes(  # type: ignore[call-arg]  # a numba dispatcher
            data, *axes, status, max_iter, xtol, ftol, errors == "robust"
        )
        return packed.reshape((*batch_shape, packed.shape[-1]))
    good = status == 0
    clean = xp.nan_to_num(data)
    model: Callable[[Any, Any, bool], tuple[Any, Any]]
    with np.errstate(invalid="ignore", divide="ignore"):  # bad items get a stand-in start below
        if kind == "probe":
            y, x = axes
            coords = (xp.repeat(y, x.size)[None, :], xp.tile(x, y.size)[None, :])
            model, p0 = _gauss2d, _start2d(xp, clean, y, x)
        else:
            coords = axes[0][None, :]
            model = _gauss1d if kind == "gaussian" else _edge1d
            p0 = _start1d(xp, clean, axes[0], kind)
    flat = data.reshape(data.shape[0], -1)
    stand_in = xp.asarray(_stand_in(kind, axes), dtype=xp.float64)[None, :]
    p0 = xp.where(good[:, None], p0, stand_in)
    flat = xp.where(good[:, None], flat, model(stand_in, coords, False)[0])
    k = p0.shape[1]
    packed = solve_batched(xp, flat, p0, axes, kind=kind, max_iter=max_iter, xtol=xtol, ftol=ftol, errors=errors)
    packed[:, 2 * k + 2] = xp.where(good, packed[:, 2 * k + 2], status)
    return to_host(packed).reshape((*batch_shape, 2 * k + 3))


def solve_batched(
    xp: Any,
    flat: Any,
    p0: Any,
    axes: Sequence[Any],
    *,
    kind: Literal["probe", "gaussian", "knife-edge"],
    max_iter: int,
    xtol: float,
    ftol: float,
    errors: Literal["robust", "uniform"],
) -> Any:
    """The whole batch (n, pixels) at once by :func:`xrfsr_dask._lm.solve`: CuPy, and line fits on NumPy.

    ``p0`` holds (A, yc, xc, σ₁, σ₂, θ, B) or (A, x₀, σ, B) per item; returns
    the packed rows of :func:`fit_arrays` (status 0 or ``max_iterations``).
    """
    n, m, k = flat.shape[0], flat.shape[1], p0.shape[1]
    model: Callable[[Any, Any, bool], tuple[Any, Any]]
    system: _lm.System
    if kind == "probe":
        y, x = axes
        coords = (xp.repeat(y, x.size)[None, :], xp.tile(x, y.size)[None, :])
        model = _gauss2d
    else:
        coords = axes[0][None, :]
        model = _gauss1d if kind == "gaussian" else _edge1d
    packed = xp.empty((n, 2 * k + 3), dtype=xp.float64)
    size = max(1, _WORKING_SET.get(xp.__name__, _WORKING_SET["numpy"]) // m)
    if kind == "probe":
        system = _QuadraticGaussian(xp, y, x)
    else:
        system = _lm.jacobian_system(lambda p, jac: model(p, coords, jac), xp)
    for start in range(0, n, size):
        sl = slice(start, min(start + size, n))
        p = _to_quadratic(xp, p0[sl]) if kind == "probe" else p0[sl]
        res = _lm.solve(system, flat[sl], p, xp=xp, max_iter=max_iter, xtol=xtol, ftol=ftol)
        params, normal, rss = res.params, res.normal, res.rss
        if kind == "probe":
            params = _from_quadratic(xp, params)
            normal = _QuadraticGaussian.angle_normal(xp, normal, params)
        meat = None
        if errors == "robust":  # from the Jacobian at the solution, formed once, k times the data: in parts
            meat = xp.empty((params.shape[0], k, k), dtype=xp.float64)
            part = max(1, size // k)
            for first in range(0, params.shape[0], part):
                few = slice(first, first + part)
                fitted, jac = model(params[few], coords, True)
                meat[few] = _lm.sandwich_meat(xp, jac, flat[sl][few] - fitted)
        packed[sl, :k] = params
        packed[sl, k : 2 * k] = _lm.standard_errors(xp, normal, rss, m - k, meat)
        packed[sl, 2 * k] = xp.sqrt(rss / m)
        packed[sl, 2 * k + 1] = res.iterations
        packed[sl, 2 * k + 2] = xp.where(res.converged, 0, STATUS.index("max_iterations"))
    return packed
