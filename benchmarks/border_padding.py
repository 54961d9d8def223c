"""What the network's zero padding at a map's border costs, and what padding the input wins back.

The bundled model for series (``DEFAULT_MODELS["series"]``; the committed
results were measured with the earlier ``rdn-small-x2-tomo``) sees zeros beyond a map's edge (its
convolutions pad with zeros). The demo's projections are slabs only 16 LR
rows high, so many of their pixels lie near an edge. Here 16-row slabs are
cut (at LR rows 8, 12, 16 and 20, away from the projection's own top and
bottom) from demo-like fly-scanned projections of a taller particle
(160 x 256 x 256 voxels, four voxels per step, counts 2.5, Ni and Mo, at 0,
45, 90 and 135 degrees, seed 7) and enhanced:

- ``zeros``: as they are (what ``predict`` does);
- ``edge`` / ``reflect`` / ``symmetric``: the slab padded by the receptive
  radius with :func:`numpy.pad` in that mode (normalised by the slab's own
  scale), enhanced, cropped;
- ``full-context``: the whole projection enhanced, then cropped: real data
  beyond the slab's edge, the best any padding could do.

PSNR (standard, the truth's range) against the noise-free projection
averaged over each output pixel, per element, over all rows and over the
border rows (the first and last 4 LR rows of each slab), mean over slabs and
angles. One JSON line per setting, element and method.

    python benchmarks/border_padding.py
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch

from xrfsr_dask import nmc_volume, project, simulate_scan
from xrfsr_dask.model import DEFAULT_MODELS, load_model, map_scale, predict
from xrfsr_dask.model.data import _binned

SETTINGS = {"FZP": (61.6, 50.0), "MLL": (24.7, 30.0)}
PAD = 21  # the receptive radius of the small preset
SLAB, STARTS, BORDER = 16, (8, 12, 16, 20), 4
ELEMENTS = ["Ni_K", "Mo_L"]


def _psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(10 * np.log10(np.ptp(truth) ** 2 / np.mean((estimate - truth) ** 2)))


def _maps(parts: list[np.ndarray], truths: list[np.ndarray], e: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(estimate, truth) of element ``e`` for every slab and angle."""
    return [(est[e, a], tru[e, a]) for est, tru in zip(parts, truths, strict=True) for a in range(tru.shape[1])]


def main() -> None:
    warnings.simplefilter("ignore")  # the slabs are thinner than the receptive field: that is the point
    torch.set_num_threads(2)
    net = load_model(DEFAULT_MODELS["series"])
    for setting, (probe_nm, step_nm) in SETTINGS.items():
        volume = nmc_volume((160, 256, 256), voxel_nm=step_nm / 4, seed=7, radius_nm=0.4 * 256 * step_nm / 4,
                            grain_nm=6 * step_nm, counts=2.5, elements=ELEMENTS)
        series = project(volume, angles=[0.0, 45.0, 90.0, 135.0])
        lr = simulate_scan(series, step_nm=step_nm, probe=probe_nm, scan_mode="fly", noise=True, seed=3).values
        truth = _binned(np.asarray(series.values, dtype=np.float64), 2)
        whole = predict(net, lr, device="cpu")
        estimates: dict[str, list[np.ndarray]] = {}
        truths = []
        for start in STARTS:
            rows = slice(2 * start, 2 * (start + SLAB))
            slab = lr[..., start:start + SLAB, :]
            truths.append(truth[..., rows, :])
            estimates.setdefault("zeros", []).append(predict(net, slab, device="cpu"))
            for mode in ("edge", "reflect", "symmetric"):
                padded = np.pad(slab, [(0, 0)] * (slab.ndim - 2) + [(PAD, PAD), (PAD, PAD)], mode=mode)
                estimates.setdefault(mode, []).append(predict(
                    net, padded, scale=map_scale(slab, 0.999), device="cpu")[..., 2 * PAD:-2 * PAD, 2 * PAD:-2 * PAD])
            estimates.setdefault("full-context", []).append(whole[..., rows, :])
        band = np.zeros(2 * SLAB, bool)
        band[:2 * BORDER] = band[2 * (SLAB - BORDER):] = True
        for e, element in enumerate(ELEMENTS):
            base = [_psnr(x[band], t[band]) for x, t in _maps(estimates["zeros"], truths, e)]
            for method, parts in estimates.items():
                pairs = _maps(parts, truths, e)
                border = [_psnr(x[band], t[band]) for x, t in pairs]
                gain = np.subtract(border, base)
                print(json.dumps({
                    "bench": "border_padding", "setting": setting, "element": element, "method": method,
                    "model": net.card["name"], "weights_sha256": net.card["weights_sha256"], "maps": len(pairs),
                    "psnr_db": round(float(np.mean([_psnr(x, t) for x, t in pairs])), 2),
                    "border_rows_psnr_db": round(float(np.mean(border)), 2),
                    "border_rows_gain_vs_zeros_db": {"min": round(float(gain.min()), 2),
                                                     "max": round(float(gain.max()), 2)},
                }), flush=True)


if __name__ == "__main__":
    main()
