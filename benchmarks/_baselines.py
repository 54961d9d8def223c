"""Non-network baselines and scores shared by the quality benchmarks (run as ``python benchmarks/<name>.py``).

Every estimate lives on the output grid, ``scale`` times finer than the LR
scan; the truth is the noise-free HR map averaged over each output pixel.

- :func:`bicubic`: bicubic interpolation of the LR maps (the library's
  :func:`~xrfsr_dask.model.rdn.upsample_bicubic`, the grid convention of
  the whole library);
- :func:`richardson_lucy`: scikit-image's Richardson–Lucy with the true scan
  blur on the LR grid, then bicubic; iteration count chosen by oracle;
- :func:`lsq_deconvolution`: Tikhonov-regularised least squares onto the
  output grid with the known probe (``scipy.sparse.linalg.lsmr`` with
  ``damp`` on a forward operator and its adjoint), the approach of the
  VSPI method in APS's ptychozoon; ``damp`` chosen by oracle;
- :func:`map_scores` / :func:`mean_scores`: PSNR, SSIM and FRC of an estimate against the truth;
- :func:`count_error_pct`: total-count error per map.

The oracle choices (the best value against the truth) favour the baselines:
a network that beats them beats every setting of these methods a user could
pick without the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import torch
import xarray as xr
from scipy.sparse.linalg import LinearOperator, lsmr
from skimage.restoration import richardson_lucy as _skimage_richardson_lucy

from xrfsr_dask import frc, psnr, ssim
from xrfsr_dask.model.rdn import upsample_bicubic

RL_ITERATIONS = (5, 10, 20, 40, 80, 160, 320)
"""Richardson–Lucy iteration counts the oracle chooses from."""
LSQ_DAMPS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
"""Tikhonov weights (``lsmr``'s ``damp``, relative: the forward operator has unit gain) the oracle chooses from."""
LSQ_MAX_ITER = 300
"""LSMR iterations at most per map and ``damp``."""

Operator = Callable[[np.ndarray], np.ndarray]


def bicubic(maps: np.ndarray, scale: int) -> np.ndarray:
    """Bicubic interpolation of ``(..., H, W)`` maps onto the grid ``scale`` times finer, float32."""
    lead = maps.shape[:-2]
    flat = np.ascontiguousarray(maps, dtype=np.float32).reshape(-1, 1, *maps.shape[-2:])
    out = upsample_bicubic(torch.from_numpy(flat), scale)[:, 0].numpy()
    return out.reshape(*lead, *out.shape[-2:])


def _oracle(candidates: np.ndarray, truth: np.ndarray, per_map: bool) -> np.ndarray:
    """Index of the candidate (first axis) with the least squared error, per map or over all maps."""
    err = ((candidates - truth[None]) ** 2).mean(axis=(-2, -1))  # (candidate, map)
    if per_map:
        return np.argmin(err, axis=0)
    return np.full(err.shape[1], np.argmin(err.sum(axis=1)))


def richardson_lucy(
    lr: np.ndarray,
    kernel: np.ndarray,
    truth: np.ndarray,
    scale: int,
    *,
    iterations: Sequence[int] = RL_ITERATIONS,
    per_map: bool = False,
) -> tuple[np.ndarray, list[int]]:
    """Richardson–Lucy on the LR grid with ``kernel``, then bicubic, at the oracle iteration count.

    Parameters
    ----------
    lr
        ``(map, H, W)`` LR counts.
    kernel
        The scan blur (probe and fly motion) sampled on the LR pixels.
    truth
        ``(map, scale·H, scale·W)`` truth the oracle compares with.
    iterations
        Candidate iteration counts.
    per_map
        Choose the count per map (each element its own); otherwise one
        count for all maps, the least total squared error.

    Returns
    -------
    estimate, iterations
        The estimate ``(map, scale·H, scale·W)`` and the count chosen for each map.
    """
    peak = lr.max(axis=(-2, -1), keepdims=True)
    norm = lr / peak
    candidates = np.stack([
        bicubic(np.stack([_skimage_richardson_lucy(m, kernel, num_iter=n, clip=False) for m in norm]) * peak, scale)
        for n in iterations
    ])
    best = _oracle(candidates, truth, per_map)
    estimate = candidates[best, np.arange(lr.shape[0])]
    return estimate, [int(iterations[b]) for b in best]


def lsq_deconvolution(
    lr: np.ndarray,
    forward: Operator,
    adjoint: Operator,
    truth: np.ndarray,
    *,
    prior: np.ndarray,
    damps: Sequence[float] = LSQ_DAMPS,
    per_map: bool = True,
    max_iter: int = LSQ_MAX_ITER,
) -> tuple[np.ndarray, list[float]]:
    """Tikhonov-regularised least-squares deconvolution onto the fine grid, at the oracle ``damp``.

    For each map solves ``min ‖A x − b‖² + damp² ‖x − x₀‖²`` with
    ``scipy.sparse.linalg.lsmr`` on a :class:`~scipy.sparse.linalg.LinearOperator`
    whose matvec is ``forward`` (fine grid to LR grid: the scan blur, then
    sampling at the LR pixel centres) and whose rmatvec is its exact
    ``adjoint``; the prior ``x₀`` (bicubic) keeps a strong ``damp`` from
    pulling the counts towards zero, and the largest ``damp`` tends to it.

    Parameters
    ----------
    lr
        ``(map, H, W)`` LR counts.
    forward, adjoint
        ``(h, w) -> (H, W)`` and ``(H, W) -> (h, w)`` on single maps.
    truth
        ``(map, h, w)`` truth the oracle compares with (its shape is the fine grid's).
    prior
        ``(map, h, w)`` the Tikhonov centre ``x₀``.
    damps
        Candidate weights.
    per_map
        Choose ``damp`` per map (default: elements differ in counts, so in
        noise) or one for all maps.
    max_iter
        LSMR iterations at most.

    Returns
    -------
    estimate, damps
        The estimate ``(map, h, w)`` and the ``damp`` chosen for each map.
    """
    fine_shape, lr_shape = truth.shape[-2:], lr.shape[-2:]
    operator = LinearOperator(
        (int(np.prod(lr_shape)), int(np.prod(fine_shape))),
        matvec=lambda v: forward(np.reshape(v, fine_shape)).ravel(),
        rmatvec=lambda u: adjoint(np.reshape(u, lr_shape)).ravel(),
        dtype=np.float64,
    )
    candidates = np.empty((len(damps), *truth.shape))
    for m in range(lr.shape[0]):
        x0 = prior[m].astype(np.float64)
        residual = (lr[m].astype(np.float64) - forward(x0)).ravel()
        for i, damp in enumerate(damps):
            dx = lsmr(operator, residual, damp=damp, atol=1e-6, btol=1e-6, maxiter=max_iter)[0]
            candidates[i, m] = x0 + dx.reshape(fine_shape)
    best = _oracle(candidates, truth, per_map)
    estimate = candidates[best, np.arange(lr.shape[0])]
    return estimate, [float(damps[b]) for b in best]


def _frc_nm(ds: xr.Dataset) -> np.ndarray:
    """Full-period FRC resolution ``1/f`` at the 0.5 crossing, per map (NaN: never crossed)."""
    return ds.resolution_full_period_nm.sel(threshold="0.5").values


def map_scores(estimate: np.ndarray, truth: xr.DataArray, *, data_range: Literal["stack", "map"]) -> dict:
    """PSNR (standard), SSIM and FRC resolution of each map of ``estimate`` against ``truth``, as arrays.

    ``data_range``: ``"map"``, each map's own range (max − min of its truth);
    ``"stack"``, the range of the whole truth stack for every map. The FRC
    resolution is the full period ``1/f`` at the 0.5 crossing, NaN where the
    curve never drops below it (the estimate then correlates with the truth
    above 0.5 up to the Nyquist frequency).
    """
    est = truth.copy(data=estimate.astype(np.float32))
    span = float(truth.max() - truth.min()) if data_range == "stack" else None
    return {
        "psnr_db": np.atleast_1d(np.asarray(psnr(truth, est, data_range=span), dtype=np.float64)),
        "ssim": np.atleast_1d(np.asarray(ssim(truth, est, data_range=span), dtype=np.float64)),
        "frc_nm": np.atleast_1d(_frc_nm(frc(truth, est, thresholds=(0.5,), progress=False))),
    }


def mean_scores(estimate: np.ndarray, truth: xr.DataArray) -> dict:
    """Means over maps of :func:`map_scores` with the stack's data range, rounded (quality.py's rows).

    ``frc_nm`` is the mean over maps whose curve crossed 0.5 (NaN when none
    did), ``frc_crossed`` how many did, ``frc_by_element`` each map's value.
    """
    per_map = map_scores(estimate, truth, data_range="stack")
    res = per_map["frc_nm"]
    crossed = res[np.isfinite(res)]
    return {
        "psnr_db": round(float(np.mean(per_map["psnr_db"])), 2), "ssim": round(float(np.mean(per_map["ssim"])), 4),
        "frc_nm": round(float(crossed.mean()), 1) if crossed.size else float("nan"),
        "frc_crossed": f"{crossed.size}/{res.size}",
        "frc_by_element": dict(zip([str(e) for e in truth.element.values], res.tolist(), strict=True)),
    }


def count_error_pct(estimate: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Total-count error of each map in %: ``100 (mean(estimate) / mean(truth) − 1)`` over the last two axes."""
    est = np.asarray(estimate, dtype=np.float64).mean(axis=(-2, -1))
    ref = np.asarray(truth, dtype=np.float64).mean(axis=(-2, -1))
    return 100.0 * (est / ref - 1.0)
