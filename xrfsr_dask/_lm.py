"""Batched Levenberg–Marquardt least squares on NumPy or CuPy.

Many small independent problems (one per image or line profile) are solved
together: every array has the batch as its first axis, each problem keeps its
own damping, and problems that have converged drop out of the working set, so
the cost follows the problems still running. There is no Python loop over
problems, which is what makes the same code fast on a GPU.

A model hands the solver its normal equations — ``JᵀJ``, ``Jᵀr`` and the
residual sum of squares at given parameters — so a model can build them
without ever forming the Jacobian (see :mod:`xrfsr_dask.probe`), or from one
(:func:`jacobian_system`).

The damping is Marquardt's: ``JᵀJ`` is augmented by ``λ·diag(JᵀJ)`` (the
diagonal floored at a small fraction of its largest entry, so a parameter the
data barely constrains cannot make the system singular). A step that lowers
the sum of squares is taken and ``λ`` shrinks; otherwise ``λ`` grows and the
step is retried. Convergence follows MINPACK: the relative decrease of the sum
of squares below ``ftol`` or the relative step below ``xtol``.

References
----------
Marquardt, D. W. (1963). An algorithm for least-squares estimation of
nonlinear parameters. J. Soc. Ind. Appl. Math. 11, 431–441.
https://doi.org/10.1137/0111030

MacKinnon, J. G. & White, H. (1985). Some heteroskedasticity-consistent
covariance matrix estimators with improved finite sample properties.
J. Econometrics 29, 305–325. https://doi.org/10.1016/0304-4076(85)90158-7
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LMResult", "System", "jacobian_system", "sandwich_meat", "solve", "standard_errors"]

# system(params (n, k), data (n, m)) -> (JᵀJ (n, k, k), Jᵀr (n, k), rss (n,))
System = Callable[[Any, Any], tuple[Any, Any, Any]]
# evaluate(params (n, k), jac) -> (model (n, m), jacobian (n, m, k) or None)
Evaluate = Callable[[Any, bool], tuple[Any, Any]]

LAMBDA_START = 1e-3
LAMBDA_MAX = 1e12
DIAGONAL_FLOOR = 1e-9
CUT_VARIANCE = 0.75 / (1.0 - 0.25 * (1.0 + math.log(4.0)))
"""σ² over the second moment of a Gaussian's pixels above a quarter of its peak (about 1.859), each weighted by
its value: per principal axis the moment is ``σ²·(1 - (1 + ln 4)/4) / (3/4)`` (the disc ``r² < 2σ² ln 4``
after whitening). The moment starts of the 2-D fits scale by it; the cruder 2 cost one more iteration."""


@dataclass(frozen=True)
class LMResult:
    """Per-problem results; every array has the batch on axis 0."""

    params: Any
    normal: Any
    rss: Any
    iterations: Any
    converged: Any


def jacobian_system(evaluate: Evaluate, xp: Any) -> System:
    """Normal equations from a model that returns its Jacobian."""

    def system(params: Any, data: Any) -> tuple[Any, Any, Any]:
        model, jac = evaluate(params, True)
        resid = data - model
        jt = xp.swapaxes(jac, 1, 2)
        return jt @ jac, (jt @ resid[..., None])[..., 0], xp.sum(resid * resid, axis=1)

    return system


def _inverse(xp: Any, normal: Any) -> Any:
    """``(JᵀJ)⁻¹`` per problem, with a tiny ridge: an undetermined parameter gets an enormous, not infinite, error."""
    normal = xp.where(xp.isfinite(normal), normal, 0.0)
    diag = xp.diagonal(normal, axis1=1, axis2=2)
    ridge = 1e-15 * xp.max(diag, axis=1, keepdims=True) + 1e-300
    return xp.linalg.inv(normal + ridge[:, :, None] * xp.eye(normal.shape[1], dtype=normal.dtype))


def sandwich_meat(xp: Any, jac: Any, resid: Any) -> Any:
    """``Jᵀ diag(rᵢ² / (1 - hᵢ)) J`` with the leverages ``hᵢ = diag(J (JᵀJ)⁻¹ Jᵀ)``: the middle of HC2."""
    jt = xp.swapaxes(jac, 1, 2)
    leverage = xp.sum((jac @ _inverse(xp, jt @ jac)) * jac, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = xp.where(leverage < 1, resid * resid / (1 - leverage), 0.0)
    return jt @ (jac * weight[..., None])


def standard_errors(xp: Any, normal: Any, rss: Any, dof: int, meat: Any = None) -> Any:
    """Standard errors of the parameters per problem.

    Without ``meat``: ``sqrt(diag((JᵀJ)⁻¹) · rss / dof)``, the estimate
    curve_fit reports, which assumes the same noise variance at every sample.
    With ``meat`` from :func:`sandwich_meat`: the heteroscedasticity-consistent
    sandwich estimate HC2, ``sqrt(diag((JᵀJ)⁻¹ · meat · (JᵀJ)⁻¹))``, right
    whatever the noise variance does from sample to sample (MacKinnon &
    White 1985).
    """
    inverse = _inverse(xp, normal)
    if meat is None:
        var = xp.diagonal(inverse, axis1=1, axis2=2) * (rss / max(dof, 1))[:, None]
    else:
        meat = xp.where(xp.isfinite(meat), meat, 0.0)
        var = xp.diagonal(inverse @ meat @ inverse, axis1=1, axis2=2)
    return xp.sqrt(xp.abs(var))


def _step(xp: Any, normal: Any, grad: Any, lam: Any) -> Any:
    diag = xp.diagonal(normal, axis1=1, axis2=2)
    diag = xp.maximum(diag, DIAGONAL_FLOOR * xp.max(diag, axis=1, keepdims=True))
    eye = xp.eye(normal.shape[1], dtype=normal.dtype)
    damped = normal + (lam[:, None] * diag)[:, :, None] * eye
    return xp.linalg.solve(damped, grad[..., None])[..., 0]


def solve(
    system: System, data: Any, p0: Any, *, xp: Any, max_iter: int, xtol: float, ftol: float
) -> LMResult:
    """Minimise the residual sum of squares of every problem, from ``p0`` (n, k)."""
    params = xp.array(p0, copy=True)
    n = params.shape[0]
    lam = xp.full(n, LAMBDA_START, dtype=params.dtype)
    iterations = xp.zeros(n, dtype=xp.int32)
    converged = xp.zeros(n, dtype=bool)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        final_normal, grad, rss = system(params, data)
        normal = final_normal
        running = xp.arange(n)
        for _ in range(max_iter):
            if running.size == 0:
                break
            p, d = params[running], data[running]
            old_rss = rss[running]
            delta = _step(xp, normal, grad, lam[running])
            trial = p + delta
            trial_normal, trial_grad, trial_rss = system(trial, d)
            better = xp.isfinite(trial_rss) & (trial_rss <= old_rss)
            params[running] = xp.where(better[:, None], trial, p)
            rss[running] = xp.where(better, trial_rss, old_rss)
            normal = xp.where(better[:, None, None], trial_normal, normal)
            final_normal[running] = normal
            grad = xp.where(better[:, None], trial_grad, grad)
            lam[running] = xp.where(better, lam[running] / 3.0, lam[running] * 2.0)
            iterations[running] += 1
            step = xp.sqrt(xp.sum(delta * delta, axis=1))
            small_step = step <= xtol * (xp.sqrt(xp.sum(p * p, axis=1)) + xtol)
            small_gain = (old_rss - trial_rss) <= ftol * old_rss
            done = better & (small_step | small_gain)
            # Noise-free data: a sum of squares at rounding level is as converged as it gets.
            done |= old_rss <= 1e-28 * xp.sum(d * d, axis=1)
            converged[running] = done
            keep = ~(done | (lam[running] > LAMBDA_MAX))
            running, normal, grad = running[keep], normal[keep], grad[keep]
    return LMResult(params=params, normal=final_normal, rss=rss, iterations=iterations, converged=converged)
