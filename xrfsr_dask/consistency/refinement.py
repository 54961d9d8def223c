"""Refinement: move an enhanced map the least distance that raises the Poisson likelihood of the measurement."""

from __future__ import annotations

import math
from typing import Any

import dask.array as dsa
import numpy as np
import xarray as xr

from xrfsr_dask._backend import array_module
from xrfsr_dask.consistency._align import meta_like, overlapped, pair_up, probe_record, resolve_halo, trim
from xrfsr_dask.consistency.operator import ProbeLike, ScanOperator
from xrfsr_dask.consistency.poisson import MU_FLOOR
from xrfsr_dask.schema import add_provenance

__all__ = ["refine", "refine_array"]


def _refine_checks(iterations: int, weight: float) -> None:
    if not (isinstance(iterations, int | np.integer) and iterations >= 0):
        raise ValueError(f"iterations must be an integer >= 0; got {iterations!r}.")
    if not (isinstance(weight, int | float) and weight >= 0 and not math.isnan(weight)):
        raise ValueError(f"weight must be a number >= 0 (math.inf keeps the network's output); got {weight!r}.")


def refine_array(
    x0: Any,
    measured: Any,
    operator: ScanOperator,
    *,
    iterations: int = 20,
    weight: float = 1.0,
    history: bool = False,
) -> Any:
    """Refine a fine-grid estimate toward the Poisson likelihood of the measurement (bare arrays).

    Minimises, over ``x ≥ 0``,

    .. math::

        F(x) = \\sum_i [\\mu_i - y_i \\log \\mu_i]
             + \\frac{\\lambda}{r_y r_x} \\sum_j \\left[x_{0j} \\log\\frac{x_{0j}}{x_j} - x_{0j} + x_j\\right],
        \\qquad \\mu = A x + \\epsilon

    by ``iterations`` steps of the MAP-EM update of De Pierro (1995): the EM
    surrogate of the likelihood is separable, and so is the proximity term
    (the Kullback–Leibler divergence of ``x`` from ``x₀``), so each step
    minimises per fine pixel and in closed form,
    ``x ← (x e + p x₀) / (a + p)`` with ``a = Aᵀ1``, ``e = Aᵀ(y/μ)`` and
    ``p = λ/(r_y r_x)``. Every step lowers ``F`` (a majorise–minimise
    scheme) and keeps ``x ≥ 0``; ``λ = 0`` is Richardson–Lucy, ``λ → ∞``
    keeps ``x₀``.

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
        is the Poisson negative log-likelihood of ``x₀`` read as a
        measurement of ``x``, scaled to one LR pixel per ``r_y r_x`` fine
        pixels: ``λ = 1`` trusts the network as much as one more
        measurement of the same counts.
    history
        Also return ``{"nll": [...], "penalty": [...]}``, the two terms of
        ``F`` at ``x⁰ … x^N`` (``nll`` is ``Σ μ − y log μ`` over valid pixels).

    Returns
    -------
    array or (array, dict)
        The refined map, float64, same shape as ``x0``.

    Notes
    -----
    Counts: summed over pixels, the update gives ``Σ μ − Σ y + p (Σ x −
    Σ x₀) = 0`` at every step where ``a`` is uniform (``a = 1/(r_y r_x)``
    inside the map), so an ``x₀`` that keeps the measured counts (as the
    count-conserving network layer makes it) keeps them through every
    iteration, and a uniform flux error of ``x₀`` shrinks to ``λ/(1 + λ)``
    of itself at convergence (the measurement weighs 1, ``x₀`` weighs ``λ``).
    A quadratic proximity term has no such property: it moves counts out of
    the map wherever it redistributes them. Pixels where ``x`` and ``x₀``
    are both zero stay zero (the update is multiplicative in ``x``). Small
    ``λ`` fits the noise of ``y`` as the iterations go on (the mean
    deviance falls below what noise alone gives); ``λ ≳ 1`` converges in a
    few iterations (docs/enhance.md has measurements). ``ε =``
    :data:`MU_FLOOR`. Computed in float64.

    References
    ----------
    Richardson, W. H. J. Opt. Soc. Am. 62, 55 (1972). https://doi.org/10.1364/JOSA.62.000055
    Lucy, L. B. Astron. J. 79, 745 (1974). https://doi.org/10.1086/111605
    De Pierro, A. R. A modified expectation maximization algorithm for
    penalized likelihood estimation in emission tomography. IEEE Trans.
    Med. Imaging 14, 132 (1995). https://doi.org/10.1109/42.370409
    """
    _refine_checks(iterations, weight)
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
    prox = weight / (operator.ratio[0] * operator.ratio[1]) if math.isfinite(weight) else None
    record: dict[str, list[float]] = {"nll": [], "penalty": []}

    def objective(x: Any, mu: Any) -> None:
        record["nll"].append(float(xp.sum(mask * (mu - y * xp.log(mu)))))
        if prox is None:
            record["penalty"].append(0.0)
            return
        ratio = xp.where(x0 > 0, x0 / xp.where(x > 0, x, 1.0), 1.0)
        record["penalty"].append(float(prox * xp.sum(x0 * xp.log(ratio) - x0 + x)))

    x = x0
    for _ in range(iterations if prox is not None else 0):
        mu = xp.maximum(operator.forward(x), 0.0) + MU_FLOOR
        if history:
            objective(x, mu)
        q = x * xp.maximum(operator.adjoint(mask * y / mu, shape), 0.0)
        if weight == 0:
            x = xp.where(a > 0, q / xp.where(a > 0, a, 1.0), x)
        else:
            x = (q + prox * x0) / (a + prox)
    if history:
        objective(x, xp.maximum(operator.forward(x), 0.0) + MU_FLOOR)
        if prox is None:  # weight = inf: no step was taken
            record = {k: v * (iterations + 1) for k, v in record.items()}
    x = xp.where(missing, xp.nan, x)
    return (x, record) if history else x


def _refine_block(fine: Any, lr: Any, *, operator: ScanOperator, depth: tuple[int, int], nblocks: tuple[int, int],
                  block_id: tuple[int, ...], **options: Any) -> Any:
    out = refine_array(fine, lr, operator, **options)
    fine_depth = (depth[0] * operator.ratio[0], depth[1] * operator.ratio[1])
    return trim(out, fine_depth, block_id, nblocks).astype(np.float32)


def refine(
    enhanced: xr.DataArray,
    measured: xr.DataArray,
    *,
    iterations: int = 20,
    weight: float = 1.0,
    probe: ProbeLike | None = None,
    halo: int | None = None,
) -> xr.DataArray:
    """Refine an enhanced map toward the Poisson likelihood of the measurement, staying near it.

    Runs :func:`refine_array` on each dask chunk with ``halo`` LR pixels of
    overlap, after aligning the two grids as
    :func:`~xrfsr_dask.consistency.consistency` does.

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
        Overrides ``measured.attrs["probe_fwhm_nm"]``, as in
        :func:`~xrfsr_dask.consistency.consistency`.
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
        record of ``iterations``, ``weight``, ``halo`` and the probe.

    Raises
    ------
    GridMismatchError, LabelMismatchError, MissingMetadataError, SchemaError
        As for :func:`~xrfsr_dask.consistency.consistency`.
    ValueError
        Negative ``iterations`` or ``weight``, or a halo below
        the kernel's reach.

    Notes
    -----
    The objective, the update and why it keeps the counts are in
    :func:`refine_array`. The update is multiplicative in its data term,
    so pixels the network set exactly to zero move only through the
    proximity term. Check first (:func:`~xrfsr_dask.consistency.consistency`):
    refinement helps maps with a positive ``excess_deviance`` and only fits
    noise in maps that are already consistent.

    References
    ----------
    De Pierro, A. R. IEEE Trans. Med. Imaging 14, 132 (1995).
    https://doi.org/10.1109/42.370409
    """
    _refine_checks(iterations, weight)
    pair = pair_up(enhanced, measured, probe)
    op = pair.operator
    exact = max(1, 2 * iterations) * op.reach_lr
    default = min(exact, op.reach_lr * (2 + math.ceil(math.sqrt(iterations) / 2)))
    halo = resolve_halo(halo, default, minimum=op.reach_lr, what="refine")
    parts = overlapped(pair, halo)
    data = dsa.map_blocks(
        _refine_block, parts.fine_halo, parts.lr_halo, chunks=parts.fine.chunks, dtype=np.float32,
        meta=meta_like(parts.fine, np.float32), operator=op, depth=parts.depth, nblocks=parts.lr.numblocks[-2:],
        iterations=iterations, weight=weight,
    )
    out = pair.fine.copy(data=data)
    return add_provenance(out, "xrfsr_dask.consistency.refine", {
        "iterations": iterations, "weight": weight, "halo": halo, **probe_record(pair.probe),
        "ratio": list(op.ratio), "crop": pair.crop,
        "objective": "sum(mu - y log mu) + weight/(ry rx) sum(x0 log(x0/x) - x0 + x), mu = A x",
    })
