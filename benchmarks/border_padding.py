"""What the network's zero padding at a map's border costs, and what padding the input would win back.

The bundled ``rdn-small-x2-tomo`` sees zeros beyond a map's edge (its
convolutions pad with zeros). The demo's projections are slabs only 16 LR
rows high, so many of their pixels lie near an edge. Here 16-row slabs are
cut (at LR rows 10 and 16) from demo-like fly-scanned projections of a
taller particle (160 x 256 x 256 voxels, four voxels per step, counts 2.5,
Ni and Mo at 0 and 60 degrees, seed 7) and enhanced:

- ``zeros``: as they are (what ``predict`` does);
- ``reflect`` / ``symmetric`` / ``edge``: the slab padded by the receptive
  radius (22 LR px) with :func:`numpy.pad` in that mode, enhanced, cropped;
- ``full-context``: the whole projection enhanced, then cropped: real data
  beyond the slab's edge, the best any padding could do.

PSNR (standard, the truth's range) against the noise-free projection
averaged over each output pixel, over all rows, the border rows (the first
and last 4 LR rows of each slab) and the inner rows. One JSON line per
setting and method.

    python benchmarks/border_padding.py
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import torch

from xrfsr_dask import nmc_volume, project, simulate_scan
from xrfsr_dask.model import load_model, predict
from xrfsr_dask.model.data import _binned

SETTINGS = {"FZP": (61.6, 50.0), "MLL": (24.7, 30.0)}
PAD = 22
SLAB, STARTS, BORDER = 16, (10, 16), 4


def _psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    return float(10 * np.log10(np.ptp(truth) ** 2 / np.mean((estimate - truth) ** 2)))


def main() -> None:
    warnings.simplefilter("ignore")  # the slabs are thinner than the receptive field: that is the point
    torch.set_num_threads(2)
    net = load_model("rdn-small-x2-tomo")
    for setting, (probe_nm, step_nm) in SETTINGS.items():
        volume = nmc_volume((160, 256, 256), voxel_nm=step_nm / 4, seed=7, radius_nm=0.4 * 256 * step_nm / 4,
                            grain_nm=6 * step_nm, counts=2.5, elements=["Ni_K", "Mo_L"])
        series = project(volume, angles=[0.0, 60.0])
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
            for mode in ("reflect", "symmetric", "edge"):
                padded = np.pad(slab, [(0, 0)] * (slab.ndim - 2) + [(PAD, PAD), (PAD, PAD)], mode=mode)
                estimates.setdefault(mode, []).append(
                    predict(net, padded, device="cpu")[..., 2 * PAD:-2 * PAD, 2 * PAD:-2 * PAD])
            estimates.setdefault("full-context", []).append(whole[..., rows, :])
        truth_rows = np.concatenate(truths, axis=-2)
        band = np.zeros(truth_rows.shape[-2], bool)
        for k in range(len(STARTS)):
            first = 2 * SLAB * k
            band[first:first + 2 * BORDER] = band[first + 2 * (SLAB - BORDER):first + 2 * SLAB] = True
        maps = [(e, a) for e in range(truth_rows.shape[0]) for a in range(truth_rows.shape[1])]
        for method, parts in estimates.items():
            est = np.concatenate(parts, axis=-2)
            print(json.dumps({
                "bench": "border_padding", "setting": setting, "method": method, "model": "rdn-small-x2-tomo",
                "psnr_db": round(float(np.mean([_psnr(est[m], truth_rows[m]) for m in maps])), 2),
                "border_rows_psnr_db": round(float(np.mean(
                    [_psnr(est[m][band], truth_rows[m][band]) for m in maps])), 2),
                "inner_rows_psnr_db": round(float(np.mean(
                    [_psnr(est[m][~band], truth_rows[m][~band]) for m in maps])), 2),
            }), flush=True)


if __name__ == "__main__":
    main()
