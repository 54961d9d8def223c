"""Poisson-likelihood refinement of enhanced maps: quality, consistency and cost against the iterations.

Test scenes are NMC phantoms (5 nm pixels, 512 x 512) from seeds of the test
split (or, with ``--family``, maps of a structure family of
:mod:`xrfsr_dask.families` at ``counts=2000``, e.g. the held-out ``circuit``), scanned as in
``benchmarks/quality.py``'s FZP-like setting: probe 60
nm FWHM, step 50 nm, fly scan along x, Poisson noise, at two flux scales
(0.5: about 1000 Ni counts per scan pixel in dense grains; 0.05: about 100).
Each scan is enhanced by the bundled default model (``enhance(lr)``, whatever
model is bundled) and then refined with :func:`xrfsr_dask.consistency.refine`
for N = 0, 5, 20, 50 iterations and ``"auto"`` (each map stopped by the
discrepancy principle; ``stopped_at`` gives the mean updates taken) at two
weights; bicubic interpolation of the
LR map, refined the same way, is the baseline. The truth is the noise-free
phantom averaged over each output pixel (``model.data._binned``).

Per row (means over 4 elements x phantoms): PSNR against the truth
(standard, data range = the truth's range per map), the mean Poisson
deviance of the measured counts under the refined map (about 1 per pixel
when consistent; ``expected_mean_deviance`` is what noise alone gives), the
count ratio (forward-projected / measured counts) and the total-count ratio
(mean refined / mean measured). Timing: ``ours_s`` is the refinement of all
maps (NumPy, one process), ``peer_s`` the network's enhancement of the same
maps, ``ratio = peer_s / ours_s``. A second part measures seams: chunked
(32 LR pixels) against whole-map refinement, max |difference| / data range,
against the halo.

    python benchmarks/refine.py [--phantoms 3] [--family circuit --no-seams] > benchmarks/results/refine-cpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings

import numpy as np
import torch

from xrfsr_dask import nmc_particle, simulate_scan, structure_maps
from xrfsr_dask.consistency import ScanOperator, consistency, refine
from xrfsr_dask.enhance import enhance
from xrfsr_dask.metrics import psnr
from xrfsr_dask.model.data import SPLIT_OFFSETS, _binned
from xrfsr_dask.model.rdn import upsample_bicubic

HR_PIXEL_NM, STEP_NM, PROBE_NM, SCALE = 5.0, 50.0, 60.0, 2
COUNT_SCALES = (0.5, 0.05)
ITERATIONS = (0, 5, 20, 50, "auto")
WEIGHTS = (0.1, 1.0)


def _scene(seed: int, count_scale: float, family: str = "nmc"):
    if family == "nmc":
        hr = nmc_particle((512, 512), pixel_nm=HR_PIXEL_NM, seed=seed)
    else:
        hr = structure_maps(family, (512, 512), pixel_nm=HR_PIXEL_NM, seed=seed, counts=2000.0)
    lr = simulate_scan(hr, step_nm=STEP_NM, probe=PROBE_NM, scan_mode="fly", noise=True, scale=count_scale, seed=seed)
    factor = round(STEP_NM / SCALE / HR_PIXEL_NM)
    ny, nx = (n * SCALE for n in lr.shape[-2:])
    truth = _binned(hr.values.astype(np.float64), factor)[..., :ny, :nx] * count_scale
    return lr, truth


def _scores(estimate, truth, lr) -> dict:
    reference = estimate.copy(data=truth.astype(np.float32)) if truth is not None else None
    check = consistency(estimate, lr).compute()
    scores = {
        "psnr_db": float(psnr(reference, estimate.astype(np.float32)).mean()) if truth is not None else None,
        "mean_deviance": float(check.mean_deviance.mean()),
        "expected_mean_deviance": float(check.expected_mean_deviance.mean()),
        "excess_deviance": float(check.excess_deviance.mean()),
        "count_ratio": float(check.count_ratio.mean()),
        "total_count_ratio": float(check.total_count_ratio.mean()),
        "consistent_maps": int(check.consistent.sum()),
    }
    for element in check.element.values:
        scores[f"excess_{element}"] = float(check.excess_deviance.sel(element=element))
    return scores


def quality(phantoms: int, model_name: str | None, family: str = "nmc") -> list[dict]:
    lines = []
    for count_scale in COUNT_SCALES:
        rows: dict[tuple, list[dict]] = {}
        times: dict[tuple, float] = {}
        network_s = 0.0
        model = None
        for k in range(phantoms):
            lr, truth = _scene(SPLIT_OFFSETS["test"] + 1000 + k, count_scale, family)
            start = time.perf_counter()
            net = enhance(lr, model_name).compute()
            network_s += time.perf_counter() - start
            model = net.attrs["provenance"][-1]["parameters"]["model"]
            bicubic = net.copy(data=upsample_bicubic(torch.from_numpy(lr.values[None]), SCALE)[0].numpy())
            # The noise-free truth itself: what a perfectly consistent map scores.
            rows.setdefault(("truth", 0, None), []).append(_scores(net.copy(data=truth.astype(np.float32)), None, lr))
            times[("truth", 0, None)] = 0.0
            for start_name, x0 in (("RDN", net), ("bicubic", bicubic)):
                for weight in WEIGHTS:
                    for n in ITERATIONS:
                        if n == 0 and weight != WEIGHTS[0]:
                            continue
                        start = time.perf_counter()
                        refined = refine(x0, lr, iterations=n, weight=weight).compute()
                        key = (start_name, n, weight if n else None)
                        times[key] = times.get(key, 0.0) + time.perf_counter() - start
                        scores = _scores(refined, truth, lr)
                        if n == "auto":
                            stops = refined.attrs["provenance"][-1]["parameters"]["stopped_at"]
                            scores["stopped_at"] = float(np.mean(list(stops.values())))
                        rows.setdefault(key, []).append(scores)
        for (start_name, n, weight), scores in rows.items():
            line = {
                "bench": "refine", "family": family, "start": start_name,
                "model": model if start_name == "RDN" else None,
                "count_scale": count_scale, "iterations": n, "weight": weight,
                "size": f"{phantoms} x 4 maps of {lr.shape[-2]} x {lr.shape[-1]} LR px",
                **{k: None if scores[0][k] is None else round(float(np.mean([s[k] for s in scores])), 4)
                   for k in scores[0]},
                "ours_s": round(times[(start_name, n, weight)], 3), "peer": "network enhancement (enhance)",
                "peer_s": round(network_s, 3),
                "device": f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
            }
            line["consistent_maps"] = f"{sum(s['consistent_maps'] for s in scores)}/{4 * len(scores)}"
            line["ratio"] = round(line["peer_s"] / line["ours_s"], 3) if line["ours_s"] else None
            lines.append(line)
    return lines


def seams() -> list[dict]:
    hr = nmc_particle((1024, 1024), pixel_nm=HR_PIXEL_NM, seed=SPLIT_OFFSETS["test"] + 2000, elements=["Ni_K"])
    lr = simulate_scan(hr, step_nm=STEP_NM, probe=PROBE_NM, scan_mode="fly", noise=True, scale=0.5, seed=1)
    x0 = enhance(lr).compute()
    op = ScanOperator.from_scan(PROBE_NM, step_nm=(STEP_NM, STEP_NM), ratio=(SCALE, SCALE), scan_mode="fly")
    lines = []
    for weight in (0.0, 1.0):
        for n in (5, 20, 50):
            whole = refine(x0, lr, iterations=n, weight=weight).values
            span = float(whole.max() - whole.min())
            errors = {}
            for halo in (op.reach_lr, 2 * op.reach_lr, 3 * op.reach_lr, 4 * op.reach_lr, None):
                chunked = refine(x0.chunk(y=64, x=64), lr.chunk(y=32, x=32), iterations=n, weight=weight, halo=halo)
                used = chunked.attrs["provenance"][-1]["parameters"]["halo"]
                errors[f"{used}{' (default)' if halo is None else ''}"] = float(
                    np.abs(chunked.values - whole).max() / span)
            lines.append({"bench": "refine-seams", "iterations": n, "weight": weight, "chunk_lr_px": 32,
                          "reach_lr_px": op.reach_lr, "max_error_over_range_by_halo": errors,
                          "size": f"{lr.shape[-2]} x {lr.shape[-1]} LR px"})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantoms", type=int, default=3)
    parser.add_argument("--model", default=None, help="Model name or path (default: the bundled default).")
    parser.add_argument("--family", default="nmc",
                        help="nmc (the default) or a family of xrfsr_dask.families (at counts=2000), e.g. circuit")
    parser.add_argument("--no-seams", action="store_true", help="skip the seams part")
    args = parser.parse_args()
    warnings.simplefilter("ignore", category=RuntimeWarning)
    for line in [*quality(args.phantoms, args.model, args.family), *([] if args.no_seams else seams())]:
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
