"""The 2-D probe fit compiled for the CPU: one Levenberg–Marquardt problem per image, images in parallel.

The batched NumPy solver (:mod:`xrfsr_dask._lm` with the moment form of
:mod:`xrfsr_dask._gaussfit`) keeps a GPU busy, but on a CPU its cost is
memory traffic: every step writes and re-reads a few arrays the size of the
whole batch. Here each image is fitted from start to finish while its pixels
sit in the L1 cache, by the same algorithm — the quadratic-form parameters
(A, yc, xc, a, b, c, B), Marquardt's damping with the same floor, factors and
limits, MINPACK's convergence tests — and with the same standard errors
(curve_fit's ``uniform`` or the HC2 sandwich ``robust``), so the two paths
agree to rounding. numba compiles it once per installation (cached) and runs
images on all of numba's threads.

The Gaussian ``exp(-q/2)`` is evaluated by a branch-free exponential that the
compiler vectorises (a degree-13 Taylor polynomial on ``|r| ≤ ln(2)/2`` and
the power of two put together from its bits), accurate to a few units in the
last place, which is what makes a 32² image cost microseconds.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from xrfsr_dask import _lm

__all__ = ["fit_probes", "screen"]

_LOG2E = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 split so that k·_LN2_HI is exact for |k| < 2**20
_LN2_LO = 1.9082149292705877e-10
# 1/k! for k = 0..13: the Taylor series of exp on |r| <= ln(2)/2 to below 1e-17 relative.
_TAYLOR = tuple(1.0 / math.factorial(k) for k in range(14))
_EXP_MIN, _EXP_MAX = -708.0, 709.0
_FLOAT_MAX = np.finfo(np.float64).max
_K = 7
# Codes of _gaussfit.STATUS (that module imports this one).
_MAX_ITERATIONS_STATUS, _NON_FINITE_STATUS, _NO_PEAK_STATUS, _BORDER_STATUS = 1, 2, 3, 4
# Reordering sums (vectorised reductions) and fused multiply-adds; NaN and inf keep their meaning. The
# kernels also divide the NumPy way (x/0 gives inf, no ZeroDivisionError check), which lets loops vectorise.
_FAST = {"reassoc", "contract", "nsz"}


@numba.njit(cache=True)
def _exp_into(arg: np.ndarray, out: np.ndarray, powers: np.ndarray) -> None:
    """``out[:] = exp(arg)`` for a 1-D buffer, in vectorisable loops (``powers`` is int64 scratch)."""
    for i in range(arg.size):
        x = min(max(arg[i], _EXP_MIN), _EXP_MAX)
        k = math.floor(x * _LOG2E + 0.5)
        r = (x - k * _LN2_HI) - k * _LN2_LO
        p = _TAYLOR[13]
        p = p * r + _TAYLOR[12]
        p = p * r + _TAYLOR[11]
        p = p * r + _TAYLOR[10]
        p = p * r + _TAYLOR[9]
        p = p * r + _TAYLOR[8]
        p = p * r + _TAYLOR[7]
        p = p * r + _TAYLOR[6]
        p = p * r + _TAYLOR[5]
        p = p * r + _TAYLOR[4]
        p = p * r + _TAYLOR[3]
        p = p * r + _TAYLOR[2]
        p = p * r + _TAYLOR[1]
        out[i] = p * r + _TAYLOR[0]
        powers[i] = (np.int64(k) + 1023) << 52
    scale = powers.view(np.float64)
    for i in range(arg.size):
        out[i] *= scale[i]


@numba.njit(cache=True)
def _solve(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """``out = a⁻¹ b`` for one small square system (Gaussian elimination, partial pivoting; ``a``, ``b`` overwritten).

    A zero pivot leaves inf/NaN in ``out``, which the caller treats as a failed step.
    """
    n = a.shape[0]
    for col in range(n):
        pivot = col
        for row in range(col + 1, n):
            if abs(a[row, col]) > abs(a[pivot, col]):
                pivot = row
        if pivot != col:
            for j in range(n):
                a[col, j], a[pivot, j] = a[pivot, j], a[col, j]
            b[col], b[pivot] = b[pivot], b[col]
        inv = 1.0 / a[col, col]
        for row in range(col + 1, n):
            f = a[row, col] * inv
            if f != 0.0:
                for j in range(col, n):
                    a[row, j] -= f * a[col, j]
                b[row] -= f * b[col]
    for row in range(n - 1, -1, -1):
        s = b[row]
        for j in range(row + 1, n):
            s -= a[row, j] * out[j]
        out[row] = s / a[row, row]


@numba.njit(cache=True)
def _inverse(normal: np.ndarray, out: np.ndarray) -> None:
    """``(JᵀJ)⁻¹`` with the ridge of :func:`xrfsr_dask._lm._inverse` (non-finite entries taken as 0).

    Gauss–Jordan elimination with partial pivoting on ``[A | I]``.
    """
    n = normal.shape[0]
    work = np.empty((n, 2 * n))
    largest = -np.inf
    for i in range(n):
        d = normal[i, i] if np.isfinite(normal[i, i]) else 0.0
        largest = max(largest, d)
    ridge = 1e-15 * largest + 1e-300
    for r in range(n):
        for c in range(n):
            v = normal[r, c]
            work[r, c] = v if np.isfinite(v) else 0.0
            work[r, n + c] = 1.0 if r == c else 0.0
        work[r, r] += ridge
    for col in range(n):
        pivot = col
        for row in range(col + 1, n):
            if abs(work[row, col]) > abs(work[pivot, col]):
                pivot = row
        if pivot != col:
            for j in range(2 * n):
                work[col, j], work[pivot, j] = work[pivot, j], work[col, j]
        inv = 1.0 / work[col, col]
        for j in range(2 * n):
            work[col, j] *= inv
        for row in range(n):
            f = work[row, col]
            if row != col and f != 0.0:
                for j in range(2 * n):
                    work[row, j] -= f * work[col, j]
    out[:, :] = work[:, n:]


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _gaussian(p, yy, xx, arg, e, powers):
    """``e = exp(-q/2)`` at quadratic-form parameters ``p`` on the flat pixel coordinates ``yy``, ``xx``."""
    yc, xc, a, b, c = p[1], p[2], p[3], p[4], p[5]
    for i in range(yy.size):
        dy, dx = yy[i] - yc, xx[i] - xc
        arg[i] = -0.5 * (a * dx * dx + 2.0 * b * dx * dy + c * dy * dy)
    _exp_into(arg, e, powers)


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _system(p, data, yy, xx, e, normal, grad):
    """Normal equations ``JᵀJ``, ``Jᵀr`` and the residual sum of squares at ``p``, with ``e`` from :func:`_gaussian`."""
    amp, yc, xc, a, b, c, off = p[0], p[1], p[2], p[3], p[4], p[5], p[6]
    # Sums in scalars (not an array) so that the compiler keeps them in vector registers.
    n00 = n01 = n02 = n03 = n04 = n05 = n11 = n12 = n13 = n14 = n15 = 0.0
    n22 = n23 = n24 = n25 = n33 = n34 = n35 = n44 = n45 = n55 = 0.0
    g0 = g1 = g2 = g3 = g4 = g5 = g6 = s0 = s1 = s2 = s3 = s4 = s5 = rss = 0.0
    for i in range(data.size):
        dy, dx = yy[i] - yc, xx[i] - xc
        ag = amp * e[i]
        r = data[i] - (ag + off)
        j0 = e[i]
        j1 = ag * (b * dx + c * dy)
        j2 = ag * (a * dx + b * dy)
        j3 = -0.5 * ag * dx * dx
        j4 = -ag * dx * dy
        j5 = -0.5 * ag * dy * dy
        n00 += j0 * j0
        n01 += j0 * j1
        n02 += j0 * j2
        n03 += j0 * j3
        n04 += j0 * j4
        n05 += j0 * j5
        n11 += j1 * j1
        n12 += j1 * j2
        n13 += j1 * j3
        n14 += j1 * j4
        n15 += j1 * j5
        n22 += j2 * j2
        n23 += j2 * j3
        n24 += j2 * j4
        n25 += j2 * j5
        n33 += j3 * j3
        n34 += j3 * j4
        n35 += j3 * j5
        n44 += j4 * j4
        n45 += j4 * j5
        n55 += j5 * j5
        g0 += j0 * r
        g1 += j1 * r
        g2 += j2 * r
        g3 += j3 * r
        g4 += j4 * r
        g5 += j5 * r
        g6 += r
        s0 += j0
        s1 += j1
        s2 += j2
        s3 += j3
        s4 += j4
        s5 += j5
        rss += r * r
    upper = (n00, n01, n02, n03, n04, n05, n11, n12, n13, n14, n15, n22, n23, n24, n25, n33, n34, n35, n44, n45, n55)
    t = 0
    for row in range(6):
        for col in range(row, 6):
            normal[row, col] = upper[t]
            normal[col, row] = upper[t]
            t += 1
    grad[0], grad[1], grad[2], grad[3], grad[4], grad[5], grad[6] = g0, g1, g2, g3, g4, g5, g6
    for row, total in enumerate((s0, s1, s2, s3, s4, s5)):
        normal[row, 6] = total
        normal[6, row] = total
    normal[6, 6] = data.size
    return rss


@numba.njit(cache=True)
def _fit_one(data, yy, xx, max_iter, xtol, ftol, params, normal, e):
    """Levenberg–Marquardt on one image from ``params``, as :func:`xrfsr_dask._lm.solve`.

    On return ``params``, ``normal`` and ``e`` hold the solution, ``JᵀJ`` and
    the Gaussian there; returns (rss, iterations, converged).
    """
    m = data.size
    arg, e_trial = np.empty(m), np.empty(m)
    powers = np.empty(m, dtype=np.int64)
    grad = np.empty(_K)
    trial, delta = np.empty(_K), np.empty(_K)
    trial_normal, trial_grad = np.empty((_K, _K)), np.empty(_K)
    damped, rhs = np.empty((_K, _K)), np.empty(_K)
    scale2 = 0.0
    for i in range(m):
        scale2 += data[i] * data[i]
    lam = _lm.LAMBDA_START
    _gaussian(params, yy, xx, arg, e, powers)
    rss = _system(params, data, yy, xx, e, normal, grad)
    iterations = 0
    converged = False
    for _ in range(max_iter):
        largest = -np.inf
        for i in range(_K):
            largest = max(largest, normal[i, i])
        for r in range(_K):
            for c in range(_K):
                damped[r, c] = normal[r, c]
            damped[r, r] += lam * max(normal[r, r], _lm.DIAGONAL_FLOOR * largest)
            rhs[r] = grad[r]
        _solve(damped, rhs, delta)
        step2, size2 = 0.0, 0.0
        for i in range(_K):
            trial[i] = params[i] + delta[i]
            step2 += delta[i] * delta[i]
            size2 += params[i] * params[i]
        _gaussian(trial, yy, xx, arg, e_trial, powers)
        trial_rss = _system(trial, data, yy, xx, e_trial, trial_normal, trial_grad)
        old_rss = rss
        better = np.isfinite(trial_rss) and trial_rss <= old_rss
        if better:
            params[:] = trial
            rss = trial_rss
            normal[:, :] = trial_normal
            grad[:] = trial_grad
            e[:] = e_trial
            lam /= 3.0
        else:
            lam *= 2.0
        iterations += 1
        small_step = math.sqrt(step2) <= xtol * (math.sqrt(size2) + xtol)
        small_gain = (old_rss - trial_rss) <= ftol * old_rss
        converged = (better and (small_step or small_gain)) or old_rss <= 1e-28 * scale2
        if converged or lam > _lm.LAMBDA_MAX:
            break
    return rss, iterations, converged


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _dot(u, v, w):
    """``Σ u·v·w``."""
    total = 0.0
    for i in range(u.size):
        total += u[i] * v[i] * w[i]
    return total


@numba.njit(cache=True)
def _angle_derivative(angles, out):
    """``∂(a, b, c)/∂(σ₁, σ₂, θ)`` embedded in the 7×7 identity: the H of ``_QuadraticGaussian.angle_normal``."""
    sa, sb, phi = angles[3], angles[4], angles[5]
    c, s = math.cos(phi), math.sin(phi)
    b = c * s * (1 / sa**2 - 1 / sb**2)
    out[:, :] = 0.0
    for i in (0, 1, 2, 6):
        out[i, i] = 1.0
    out[3, 3], out[4, 3], out[5, 3] = -2 * c * c / sa**3, -2 * c * s / sa**3, -2 * s * s / sa**3
    out[3, 4], out[4, 4], out[5, 4] = -2 * s * s / sb**3, 2 * c * s / sb**3, -2 * c * c / sb**3
    out[3, 5], out[4, 5], out[5, 5] = -2 * b, (c * c - s * s) * (1 / sa**2 - 1 / sb**2), 2 * b


@numba.njit(cache=True)
def _product(a, b, transpose_a):
    """``a b`` or ``aᵀ b`` for small square matrices (loops: no BLAS call for 7×7)."""
    n = a.shape[0]
    out = np.zeros((n, n))
    for r in range(n):
        for k in range(n):
            f = a[k, r] if transpose_a else a[r, k]
            for c in range(n):
                out[r, c] += f * b[k, c]
    return out


@numba.njit(cache=True)
def _congruent(h, a):
    """``hᵀ a h``."""
    return _product(h, _product(a, h, False), True)


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _sandwich_meat(q, data, yy, xx, e, inverse, meat):
    """HC2 ``meat = Σ jᵢjᵢᵀ rᵢ²/(1 - hᵢ)``, ``hᵢ = jᵢᵀ inverse jᵢ`` (0 where hᵢ ≥ 1), quadratic-form rows ``jᵢ``.

    Written out in scalars, like :func:`_system`, so that the compiler vectorises it over pixels.
    """
    amp, yc, xc, a, b, c, off = q[0], q[1], q[2], q[3], q[4], q[5], q[6]
    q00, q01, q02, q03 = inverse[0, 0], inverse[0, 1], inverse[0, 2], inverse[0, 3]
    q04, q05, q06 = inverse[0, 4], inverse[0, 5], inverse[0, 6]
    q11, q12, q13 = inverse[1, 1], inverse[1, 2], inverse[1, 3]
    q14, q15, q16 = inverse[1, 4], inverse[1, 5], inverse[1, 6]
    q22, q23, q24, q25, q26 = inverse[2, 2], inverse[2, 3], inverse[2, 4], inverse[2, 5], inverse[2, 6]
    q33, q34, q35, q36 = inverse[3, 3], inverse[3, 4], inverse[3, 5], inverse[3, 6]
    q44, q45, q46 = inverse[4, 4], inverse[4, 5], inverse[4, 6]
    q55, q56 = inverse[5, 5], inverse[5, 6]
    q66 = inverse[6, 6]
    m00 = m01 = m02 = m03 = m04 = m05 = m06 = m11 = m12 = m13 = 0.0
    m14 = m15 = m16 = m22 = m23 = m24 = m25 = m26 = m33 = m34 = 0.0
    m35 = m36 = m44 = m45 = m46 = m55 = m56 = m66 = 0.0
    for i in range(data.size):
        dy, dx = yy[i] - yc, xx[i] - xc
        ag = amp * e[i]
        j0 = e[i]
        j1 = ag * (b * dx + c * dy)
        j2 = ag * (a * dx + b * dy)
        j3 = -0.5 * ag * dx * dx
        j4 = -ag * dx * dy
        j5 = -0.5 * ag * dy * dy
        j6 = 1.0
        r = data[i] - (ag + off)
        leverage = (
            q00 * j0 * j0 + 2.0 * q01 * j0 * j1 + 2.0 * q02 * j0 * j2 + 2.0 * q03 * j0 * j3 +
            2.0 * q04 * j0 * j4 + 2.0 * q05 * j0 * j5 + 2.0 * q06 * j0 * j6 + q11 * j1 * j1 +
            2.0 * q12 * j1 * j2 + 2.0 * q13 * j1 * j3 + 2.0 * q14 * j1 * j4 + 2.0 * q15 * j1 * j5 +
            2.0 * q16 * j1 * j6 + q22 * j2 * j2 + 2.0 * q23 * j2 * j3 + 2.0 * q24 * j2 * j4 +
            2.0 * q25 * j2 * j5 + 2.0 * q26 * j2 * j6 + q33 * j3 * j3 + 2.0 * q34 * j3 * j4 +
            2.0 * q35 * j3 * j5 + 2.0 * q36 * j3 * j6 + q44 * j4 * j4 + 2.0 * q45 * j4 * j5 +
            2.0 * q46 * j4 * j6 + q55 * j5 * j5 + 2.0 * q56 * j5 * j6 + q66 * j6 * j6
        )
        w = r * r / (1.0 - leverage)
        w = w if leverage < 1.0 and abs(w) <= _FLOAT_MAX else 0.0  # a select, which vectorises
        m00 += w * j0 * j0
        m01 += w * j0 * j1
        m02 += w * j0 * j2
        m03 += w * j0 * j3
        m04 += w * j0 * j4
        m05 += w * j0 * j5
        m06 += w * j0 * j6
        m11 += w * j1 * j1
        m12 += w * j1 * j2
        m13 += w * j1 * j3
        m14 += w * j1 * j4
        m15 += w * j1 * j5
        m16 += w * j1 * j6
        m22 += w * j2 * j2
        m23 += w * j2 * j3
        m24 += w * j2 * j4
        m25 += w * j2 * j5
        m26 += w * j2 * j6
        m33 += w * j3 * j3
        m34 += w * j3 * j4
        m35 += w * j3 * j5
        m36 += w * j3 * j6
        m44 += w * j4 * j4
        m45 += w * j4 * j5
        m46 += w * j4 * j6
        m55 += w * j5 * j5
        m56 += w * j5 * j6
        m66 += w * j6 * j6
    t = 0
    upper = (m00, m01, m02, m03, m04, m05, m06, m11, m12, m13,
             m14, m15, m16, m22, m23, m24, m25, m26, m33, m34,
             m35, m36, m44, m45, m46, m55, m56, m66)
    for row in range(_K):
        for col in range(row, _K):
            meat[row, col] = meat[col, row] = upper[t]
            t += 1


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _standard_errors(data, yy, xx, q, angles, normal, e, rss, robust, out):
    """Standard errors of (A, yc, xc, σ₁, σ₂, θ, B), as :func:`xrfsr_dask._lm.standard_errors`.

    ``q``, ``normal``, ``e``: the quadratic-form solution, its ``JᵀJ`` and
    Gaussian. The leverages of HC2 do not depend on the parametrisation, so
    the sandwich is formed with the quadratic-form Jacobian and carried to
    the angles by ``H`` (J_angles = J_quadratic·H).
    """
    m = data.size
    h = np.empty((_K, _K))
    _angle_derivative(angles, h)
    inverse = np.empty((_K, _K))
    _inverse(_congruent(h, normal), inverse)
    if not robust:
        for i in range(_K):
            out[i] = math.sqrt(abs(inverse[i, i] * rss / max(m - _K, 1)))
        return
    # HC2 in the quadratic form with the inverse taken in the angles (H (JᵀJ)⁻¹_angles Hᵀ), so that its
    # ridge is the batched solver's; the meat is then carried to the angles as Hᵀ meat H.
    meat = np.empty((_K, _K))
    _sandwich_meat(q, data, yy, xx, e, _product(h, _product(inverse, h.T.copy(), False), False), meat)
    sandwich = _product(inverse, _product(_congruent(h, meat), inverse, False), False)
    for i in range(_K):
        out[i] = math.sqrt(abs(sandwich[i, i]))


@numba.njit(cache=True)
def _to_angles(q, out):
    """(A, yc, xc, a, b, c, B) to (A, yc, xc, σ₁, σ₂, θ, B), as :func:`xrfsr_dask._gaussfit._from_quadratic`."""
    a, b, c = q[3], q[4], q[5]
    mean = 0.5 * (a + c)
    root = math.sqrt((0.5 * (a - c)) ** 2 + b * b)
    out[:] = q
    out[3] = 1.0 / math.sqrt(mean - root) if mean - root > 0.0 else np.nan
    out[4] = 1.0 / math.sqrt(mean + root) if mean + root > 0.0 else np.nan
    out[5] = 0.5 * math.atan2(2.0 * b, a - c) + 0.5 * math.pi


@numba.njit(cache=True, fastmath=_FAST, error_model="numpy")
def _start(img, y, x, out):
    """Moment estimates in quadratic form, as ``_gaussfit._to_quadratic(_gaussfit._start2d(...))``."""
    ny, nx = img.shape
    border = 0.0
    for j in range(nx):
        border += img[0, j] + img[ny - 1, j]
    for i in range(1, ny - 1):
        border += img[i, 0] + img[i, nx - 1]
    off = border / (2 * nx + 2 * (ny - 2))
    amp = img.max() - off
    cut = 0.25 * amp
    m0 = sy = sx = syy = sxx = sxy = 0.0
    # Weights below the cut are selected to zero rather than skipped by a branch, so that the loops vectorise.
    for i in range(ny):
        row = sr = 0.0
        for j in range(nx):
            w = img[i, j] - off
            w = w if w > cut else 0.0
            row += w
            sr += w * x[j]
        m0 += row
        sy += row * y[i]
        sx += sr
    yc, xc = sy / m0, sx / m0
    for i in range(ny):
        dy = y[i] - yc
        row = sr = srr = 0.0
        for j in range(nx):
            w = img[i, j] - off
            w = w if w > cut else 0.0
            dx = x[j] - xc
            row += w
            sr += w * dx
            srr += w * dx * dx
        syy += row * dy * dy
        sxx += srr
        sxy += sr * dy
    syy, sxx, sxy = syy / m0, sxx / m0, sxy / m0
    half = 0.5 * (sxx + syy)
    root = math.sqrt((0.5 * (sxx - syy)) ** 2 + sxy**2)
    pixel = min(y[1] - y[0], x[1] - x[0])
    sa = math.sqrt(_lm.CUT_VARIANCE * max(half + root, pixel**2 / 4))
    sb = math.sqrt(_lm.CUT_VARIANCE * max(half - root, pixel**2 / 4))
    phi = 0.5 * math.atan2(2.0 * sxy, sxx - syy)
    c, s = math.cos(phi), math.sin(phi)
    ia, ib = 1 / sa**2, 1 / sb**2
    out[0], out[1], out[2], out[6] = amp, yc, xc, off
    out[3], out[4], out[5] = c * c * ia + s * s * ib, c * s * (ia - ib), s * s * ia + c * c * ib


@numba.njit(cache=True, parallel=True)
def screen(data):
    """Status per image of ``data`` (n, ny, nx) for the problems seen before a fit, as ``_gaussfit._screen``."""
    n, ny, nx = data.shape
    status = np.zeros(n, dtype=np.int64)
    for item in numba.prange(n):
        img = data[item]
        low, high, where = np.inf, -np.inf, 0
        finite = True
        for i in range(ny):
            for j in range(nx):
                v = img[i, j]
                if not np.isfinite(v):
                    finite = False
                    continue
                low = min(low, v)
                if v > high:
                    high, where = v, i * nx + j
        if not finite:
            status[item] = _NON_FINITE_STATUS
        elif high - low <= 0:
            status[item] = _NO_PEAK_STATUS
        elif where // nx in (0, ny - 1) or where % nx in (0, nx - 1):
            status[item] = _BORDER_STATUS
    return status


@numba.njit(cache=True, parallel=True)
def fit_probes(data, y, x, status, max_iter, xtol, ftol, robust):
    """Fit every image of ``data`` (n, ny, nx) whose ``status`` (from :func:`screen`) is 0.

    ``y``, ``x`` are the centred, scaled pixel coordinates. Returns the
    packed rows of :func:`xrfsr_dask._gaussfit.fit_arrays` (n, 17):
    (A, yc, xc, σ₁, σ₂, θ, B), their standard errors, RMS residual,
    iterations and status (0 converged, 1 iteration limit, or the screened
    code with NaN results).
    """
    n, ny, nx = data.shape
    m = ny * nx
    yy = np.empty(m)
    xx = np.empty(m)
    for i in range(ny):
        for j in range(nx):
            yy[i * nx + j], xx[i * nx + j] = y[i], x[j]
    packed = np.full((n, 2 * _K + 3), np.nan)
    for item in numba.prange(n):
        if status[item]:
            packed[item, 2 * _K + 1] = 0
            packed[item, 2 * _K + 2] = status[item]
            continue
        img = data[item]
        params, normal, angles, e = np.empty(_K), np.empty((_K, _K)), np.empty(_K), np.empty(m)
        _start(img, y, x, params)
        flat = img.reshape(m)
        rss, iterations, converged = _fit_one(flat, yy, xx, max_iter, xtol, ftol, params, normal, e)
        _to_angles(params, angles)
        packed[item, :_K] = angles
        _standard_errors(flat, yy, xx, params, angles, normal, e, rss, robust, packed[item, _K : 2 * _K])
        packed[item, 2 * _K] = math.sqrt(rss / m)
        packed[item, 2 * _K + 1] = iterations
        packed[item, 2 * _K + 2] = 0 if converged else _MAX_ITERATIONS_STATUS
    return packed
