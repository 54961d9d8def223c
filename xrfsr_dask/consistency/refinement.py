"""Refinement: move an enhanced map the least distance that raises the Poisson likelihood of the measurement."""

from __future__ import annotations

import math
from typing import Any, Literal

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from xrfsr_dask._backend import array_module, to_host
from xrfsr_dask.consistency._align import (
    meta_like,
    overlapped,
    own_window,
    pair_up,
    probe_record,
    resolve_halo,
    trim,
)
from xrfsr_dask.consistency.operator import ProbeLike, ScanOperator
from xrfsr_dask.consistency.poisson import MU_FLOOR, expected_deviance, poisson_deviance
from xrfsr_dask.schema import add_provenance

__all__ = ["AUTO_MAX_ITERATIONS", "refine", "refine_array"]


AUTO_MAX_ITERATIONS = 30
"""Most MAP-EM updates ``iterations="auto"`` takes before it stops without meeting the discrepancy."""

Iterations = int | Literal["auto"]


def _refine_checks(iterations: Iterations, weight: float) -> None:
    if iterations == "auto":
        pass
    elif not (isinstance(iterations, int | np.integer) and not isinstance(iterations, bool) and iterations >= 0):
        raise ValueError(f"iterations must be an integer >= 0 or 'auto' (stop where the deviance meets what "
                         f"noise alone gives); got {iterations!r}.")
    if not (isinstance(weight, int | float) and weight >= 0 and not math.isnan(weight)):
        raise ValueError(f"weight must be a number >= 0 (math.inf keeps the network's output); got {weight!r}.")


def refine_array(
    x0: Any,
    measured: Any,
    operator: ScanOperator,
    *,
    iterations: Iterations = 20,
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
        Number of updates ``N``, or ``"auto"``: each map stops at the first
        iterate whose summed deviance is at most what Poisson noise alone
        gives under it (``Σ D ≤ Σ E[D | μ]``, the discrepancy principle),
        at most :data:`AUTO_MAX_ITERATIONS`. The last update is taken only
        in part, to where the excess ``Σ D − Σ E`` interpolated between
        the two iterates crosses 0, so that at low counts, where one full
        update can fit far into the noise, the map stops at the noise's
        level; a map that is consistent already keeps ``x₀``.
    weight
        ``λ``: how strongly the output stays near ``x₀``. The proximity term
        is the Poisson negative log-likelihood of ``x₀`` read as a
        measurement of ``x``, scaled to one LR pixel per ``r_y r_x`` fine
        pixels: ``λ = 1`` trusts the network as much as one more
        measurement of the same counts.
    history
        Also return ``{"nll": [...], "penalty": [...], "iterations": ...}``:
        the two terms of ``F`` at ``x⁰ … x^N`` (``nll`` is ``Σ μ − y log μ``
        over valid pixels, summed over all maps; with ``"auto"``, up to the
        last map's stop) and the updates each map took, fractional where
        ``"auto"`` took the last in part (nested lists shaped like the
        leading axes).

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
    few iterations (docs/enhance.md has measurements). ``"auto"`` stops
    each map where the data are fitted as well as the noise allows and no
    better, so it cannot fit noise; it cannot tell either how much of an
    excess is the fine grid's own discretisation (structure finer than its
    pixels: the noise-free truth binned to the output grid has an excess
    too at high counts), so such maps run to the cap, which with ``λ ≳ 1``
    is the converged MAP estimate. ``ε =`` :data:`MU_FLOOR`. Computed in
    float64.

    References
    ----------
    Morozov, V. A. On the solution of functional equations by the method of
    regularization. Soviet Math. Dokl. 7, 414 (1966) (the discrepancy
    principle).
    Richardson, W. H. J. Opt. Soc. Am. 62, 55 (1972). https://doi.org/10.1364/JOSA.62.000055
    Lucy, L. B. Astron. J. 79, 745 (1974). https://doi.org/10.1086/111605
    De Pierro, A. R. A modified expectation maximization algorithm for
    penalized likelihood estimation in emission tomography. IEEE Trans.
    Med. Imaging 14, 132 (1995). https://doi.org/10.1109/42.370409
    """
    _refine_checks(iterations, weight)
    return _refined(x0, measured, operator, iterations, weight, history)


def _refined(x0: Any, measured: Any, operator: ScanOperator, iterations: Iterations | np.ndarray, weight: float,
             history: bool = False) -> Any:
    """:func:`refine_array` without its checks; ``iterations`` may also be a count per map (leading axes)."""
    xp = array_module(x0, measured)
    x0, y, mask, missing = _prepared(x0, measured, xp)
    prox = _proximity(weight, operator)
    record: dict[str, Any] = {"nll": [], "penalty": []}

    def objective(x: Any, mu: Any) -> None:
        record["nll"].append(float(xp.sum(mask * (mu - y * xp.log(mu)))))
        if prox is None:
            record["penalty"].append(0.0)
            return
        ratio = xp.where(x0 > 0, x0 / xp.where(x > 0, x, 1.0), 1.0)
        record["penalty"].append(float(prox * xp.sum(x0 * xp.log(ratio) - x0 + x)))

    lead = x0.shape[:-2]
    auto = isinstance(iterations, str)
    target = np.array(np.broadcast_to(np.asarray(AUTO_MAX_ITERATIONS if auto else iterations, float), lead))
    found = np.full(lead, not auto)
    taken = np.full(lead, np.nan)
    out, previous, gap = x0, x0, None
    for k, (x, mu) in enumerate(_iterates(x0, y, mask, operator, prox, xp)):
        if history:
            objective(x, mu)
        if auto:
            deviance, expected = _discrepancy(y, mu, mask, xp)
            gap = _stops(gap, deviance - expected, k, target, found)
        due = found & np.isnan(taken) & (target <= k)
        if due.any():
            t = xp.asarray(np.where(due, target - (k - 1), 0.0))[..., None, None]  # 1: x itself
            between = xp.where(t == 1.0, x, previous + t * (x - previous))
            out = xp.where(xp.asarray(due)[..., None, None], between, out)
            taken[due] = target[due]
        if not np.isnan(taken).any():
            break
        previous = x
    if history:
        record["iterations"] = np.round(taken, 3).tolist()
    out = xp.where(missing, xp.nan, out)
    return (out, record) if history else out


def _stops(gap: np.ndarray | None, now: np.ndarray, k: int, target: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fix the stop of maps whose deviance excess ``now`` (``Σ D − Σ E`` at iterate ``k``) reached 0.

    The stop is fractional: between iterates ``k − 1`` and ``k`` where the
    excess, interpolated linearly, crosses 0 (the deviance is convex along
    the segment, so the blend lands at or just below the noise's level).
    Maps that never reach it stop at :data:`AUTO_MAX_ITERATIONS`. Updates
    ``target`` and ``found`` in place; returns ``now`` for the next call.
    """
    reached = ~found & (now <= 0)
    if gap is None:  # the first iterate, x₀ itself
        target[reached] = 0.0
    else:
        step = gap - now
        fraction = np.divide(gap, step, out=np.ones_like(gap), where=step > 0)
        target[reached] = k - 1 + np.clip(fraction, 0.0, 1.0)[reached]
    found |= reached | (k >= AUTO_MAX_ITERATIONS)
    return now


def _prepared(x0: Any, measured: Any, xp: Any) -> tuple[Any, Any, Any, Any]:
    """``x₀`` clipped at 0 with NaN as 0, ``y`` with NaN as 0, the mask of measured pixels, ``x₀``'s NaNs."""
    x0 = xp.asarray(x0, dtype=xp.float64)
    y = xp.asarray(measured, dtype=xp.float64)
    missing = xp.isnan(x0)
    x0 = xp.maximum(xp.where(missing, 0.0, x0), 0.0)
    valid = xp.isfinite(y)
    return x0, xp.where(valid, y, 0.0), valid.astype(xp.float64), missing


def _proximity(weight: float, operator: ScanOperator) -> float | None:
    """``p = λ/(r_y r_x)``, or None for ``λ = ∞`` (no update moves ``x₀``)."""
    return weight / (operator.ratio[0] * operator.ratio[1]) if math.isfinite(weight) else None


def _iterates(x0: Any, y: Any, mask: Any, operator: ScanOperator, prox: float | None, xp: Any) -> Any:
    """Yield ``(xᵏ, μᵏ)`` for ``k = 0, 1, …``: the MAP-EM iterates from ``x₀`` and their LR expectations."""
    shape = x0.shape[-2:]
    a = operator.adjoint(mask, shape)
    x = x0
    while True:
        mu = xp.maximum(operator.forward(x), 0.0) + MU_FLOOR
        yield x, mu
        if prox is None:
            continue
        q = x * xp.maximum(operator.adjoint(mask * y / mu, shape), 0.0)
        if prox == 0:
            x = xp.where(a > 0, q / xp.where(a > 0, a, 1.0), x)
        else:
            x = (q + prox * x0) / (a + prox)


def _discrepancy(y: Any, mu: Any, mask: Any, xp: Any, window: tuple[slice, slice] = (slice(None), slice(None))
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per map: the summed deviance of ``y`` under ``μ`` and the sum that noise alone gives (host arrays)."""
    part = (..., *window)
    m = mask[part]
    deviance = xp.sum(m * poisson_deviance(y[part], mu[part]), axis=(-2, -1))
    expected = xp.sum(m * expected_deviance(mu[part]), axis=(-2, -1))
    return to_host(deviance), to_host(expected)


def _trajectory_block(fine: Any, lr: Any, *, operator: ScanOperator, depth: tuple[int, int],
                      nblocks: tuple[int, int], block_id: tuple[int, ...], weight: float) -> np.ndarray:
    """``(deviance, expected)`` summed over the block's own LR pixels at iterates ``0 … AUTO_MAX_ITERATIONS``."""
    xp = array_module(fine, lr)
    x0, y, mask, _ = _prepared(fine, lr, xp)
    window = own_window(depth, block_id, nblocks, lr.shape)
    sums = np.empty((AUTO_MAX_ITERATIONS + 1, 2, *x0.shape[:-2]))
    iterates = _iterates(x0, y, mask, operator, _proximity(weight, operator), xp)
    for k, (_, mu) in zip(range(AUTO_MAX_ITERATIONS + 1), iterates, strict=False):
        sums[k] = _discrepancy(y, mu, mask, xp, window)
    return sums


def _discrepancy_stops(parts: Any, operator: ScanOperator, weight: float) -> np.ndarray:
    """Per map (the leading axes): where the whole map's deviance meets the noise's (see :func:`_stops`)."""
    lr = parts.lr
    lead_chunks = lr.chunks[:-2]
    fine_blocks, lr_blocks = parts.fine_halo.to_delayed(), parts.lr_halo.to_delayed()
    index = list(np.ndindex(*lr.numblocks))
    tasks = [dask.delayed(_trajectory_block)(fine_blocks[i], lr_blocks[i], operator=operator, depth=parts.depth,
                                             nblocks=lr.numblocks[-2:], block_id=i, weight=weight) for i in index]
    totals = np.zeros((AUTO_MAX_ITERATIONS + 1, 2, *lr.shape[:-2]))
    for i, sums in zip(index, dask.compute(*tasks), strict=True):
        where = tuple(slice(sum(c[:b]), sum(c[:b + 1])) for c, b in zip(lead_chunks, i[:-2], strict=True))
        totals[(slice(None), slice(None), *where)] += sums
    target = np.full(lr.shape[:-2], float(AUTO_MAX_ITERATIONS))
    found = np.zeros(lr.shape[:-2], dtype=bool)
    gap = None
    for k in range(AUTO_MAX_ITERATIONS + 1):
        gap = _stops(gap, totals[k, 0] - totals[k, 1], k, target, found)
    return target


def _refine_block(fine: Any, lr: Any, *, operator: ScanOperator, depth: tuple[int, int], nblocks: tuple[int, int],
                  block_id: tuple[int, ...], stops: np.ndarray | None = None,
                  block_info: dict[Any, Any] | None = None, **options: Any) -> Any:
    if stops is not None and block_info is not None:  # per-map iteration counts, found on the whole map
        where = tuple(slice(*loc) for loc in block_info[None]["array-location"][:-2])
        options["iterations"] = stops[where]
    out = _refined(fine, lr, operator, **options)
    fine_depth = (depth[0] * operator.ratio[0], depth[1] * operator.ratio[1])
    return trim(out, fine_depth, block_id, nblocks).astype(np.float32)


def refine(
    enhanced: xr.DataArray,
    measured: xr.DataArray,
    *,
    iterations: Iterations = 20,
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
        footprint and clipped at 0), or ``"auto"``: each map (each element,
        and each angle of a series) stops at the first iterate at which its
        deviance over the whole map meets what noise alone gives (see
        :func:`refine_array`), at most :data:`AUTO_MAX_ITERATIONS`. The
        stops are found first, in one pass over the data that is computed
        when ``refine`` is called (the refinement itself stays lazy), so
        the chunks of one map stop together and no seams appear.
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
        (docs/enhance.md has the error against the halo). ``"auto"`` takes
        the default of :data:`AUTO_MAX_ITERATIONS`.

    Returns
    -------
    xarray.DataArray
        Lazy float32 refined counts on the enhanced grid (cropped to the
        measured footprint), with the enhanced attrs and a provenance
        record of ``iterations``, ``weight``, ``halo`` and the probe (with
        ``"auto"``, also ``stopped_at``: the updates each map took, by
        element, fractional where the last was taken in part, a list over
        angles for a series).

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
    n = AUTO_MAX_ITERATIONS if iterations == "auto" else iterations
    exact = max(1, 2 * n) * op.reach_lr
    default = min(exact, op.reach_lr * (2 + math.ceil(math.sqrt(n) / 2)))
    halo = resolve_halo(halo, default, minimum=op.reach_lr, what="refine")
    parts = overlapped(pair, halo)
    record: dict[str, Any] = {"iterations": iterations, "weight": weight, "halo": halo}
    stops = None
    if iterations == "auto":
        stops = _discrepancy_stops(parts, op, weight)
        record["stopped_at"] = _stops_record(pair.lr, stops)
    data = dsa.map_blocks(
        _refine_block, parts.fine_halo, parts.lr_halo, chunks=parts.fine.chunks, dtype=np.float32,
        meta=meta_like(parts.fine, np.float32), operator=op, depth=parts.depth, nblocks=parts.lr.numblocks[-2:],
        iterations=iterations, weight=weight, stops=stops,
    )
    out = pair.fine.copy(data=data)
    return add_provenance(out, "xrfsr_dask.consistency.refine", {
        **record, **probe_record(pair.probe), "ratio": list(op.ratio), "crop": pair.crop,
        "objective": "sum(mu - y log mu) + weight/(ry rx) sum(x0 log(x0/x) - x0 + x), mu = A x",
        **({"stop": "first iterate with sum(deviance) <= sum(E[deviance | mu]) per map (discrepancy principle), "
                    f"at most {AUTO_MAX_ITERATIONS}"} if stops is not None else {}),
    })


def _stops_record(lr: xr.DataArray, stops: np.ndarray) -> dict[str, Any]:
    """``{element: updates}`` (a list over angles for a series), from stops on the leading axes of ``lr``."""
    lead = lr.dims[:-2]
    by_element = np.moveaxis(stops, lead.index("element"), 0)
    by_element = np.round(by_element, 3)
    return {str(e): (float(v) if v.ndim == 0 else v.tolist()) for e, v in zip(lr.element.values, by_element,
                                                                            strict=True)}
