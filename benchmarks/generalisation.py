"""Generalisation table: does enhancement beat the best classical baseline on structures it was not trained on?

Scenes (5 nm HR pixels, ``--size`` square, 512 by default) of every
structure family, the NMC particles of :func:`xrfsr_dask.nmc_particle` and
those of :data:`xrfsr_dask.families.FAMILIES`, ``--seeds`` of each (2 by
default) from the test split (``SPLIT_OFFSETS["test"] + k``, never seen in
training). Families in :data:`~xrfsr_dask.families.HELD_OUT` were never
trained on by any model: their rows say ``held_out: true`` and the table
lists them apart. Each scene is fly-scanned (Poisson noise, seeded) with

- FZP-like optics: Gaussian probe 60 nm FWHM, 50 nm steps (output pixel 25 nm);
- MLL-like optics: 25 nm FWHM, 30 nm steps (output pixel 15 nm);

at two count levels: the phantom's ``counts=`` (NMC: Ni counts per pixel in
the dense bulk of a grain; the families: the same for their brightest
element) set to 300 and to 30 counts per pixel, the simulated flux
``scale=1``. The rows give the level reached, ``dense_counts``: the 99th
percentile of the brightest element's HR map, averaged over seeds.

The truth is the noise-free HR map averaged over each output pixel (half a
step), times the flux scale. Every method puts its estimate on that grid:

- ``LR repeated``: each LR pixel repeated 2 x 2 times (what was measured);
- ``bicubic``: :func:`xrfsr_dask.model.rdn.upsample_bicubic`;
- ``Richardson-Lucy (oracle)``: scikit-image's Richardson–Lucy with the true
  scan blur on the LR grid, then bicubic, at the iteration count (1 to 320)
  closest to the truth, chosen per map (``rl_iterations``);
- ``LSQ deconvolution (oracle)``: Tikhonov-regularised least squares onto
  the output grid with the known probe, ``scipy.sparse.linalg.lsmr`` with
  ``damp`` on :class:`xrfsr_dask.consistency.ScanOperator` (the scan as a
  blur and a decimation, with its exact adjoint), centred on the bicubic
  estimate, at the ``damp`` (0.003 to 10) closest to the truth, chosen per
  map (``lsq_damp``) — the approach of the VSPI method in APS's ptychozoon;
- every bundled model of scale 2 (:func:`xrfsr_dask.model.bundled_models`,
  or ``--models``), through the public path
  ``xrfsr_dask.enhance.enhance(lr, model=name).compute()``; with
  ``--refine N[,W]`` also each model's output refined towards the
  measurement (``enhance(..., refine=N, refine_weight=W)``; ``N`` may be
  ``auto``), as its own row.

The oracle choices favour the baselines: they use the truth no user has.

Metrics per map (element x seed), then averaged: PSNR (``psnr_db``, standard
``10 log10(MAX^2/MSE)``, MAX the range of that map's truth), SSIM, the FRC
resolution against the truth at the 0.5 threshold (``frc_nm``, full period
``1/f``, the mean over maps whose curve crossed; ``frc_crossed`` how many
did: a curve that never crosses correlates above 0.5 up to Nyquist), and
the total-count error ``count_error_pct`` = 100 (mean of the estimate /
mean of the truth - 1), signed mean over maps, with the largest magnitude
in ``count_error_max_pct``. That error includes the Poisson noise of the
measured total, which no method can remove (the ``LR repeated`` row is that
floor: up to tens of % for an element at 1 % of the brightest at 30
counts); ``count_error_vs_lr_pct`` (and ``..._max_pct``) compares with the
measured counts instead, mean of the estimate / mean of the LR map - 1: the
counts a method adds or loses itself. A model row's ``margin_db`` is its
PSNR minus the best of bicubic, Richardson–Lucy and LSQ. The issue's aim is
a margin of at least +1 dB on every family with total counts kept within
1 %; the table's ``aim`` column applies it with the error against the
measured counts, in every map.

JSON lines go to ``--output`` (``benchmarks/results/generalisation-cpu.jsonl``;
with ``--quick``, ``generalisation-cpu-quick.jsonl`` in the temporary folder), one per family x optics x
count level x method; a markdown table per optics and count level goes to
standard output, with the runtime.

    python benchmarks/generalisation.py [--families nmc,...] [--seeds 2] [--size 512]
                                        [--models NAME ...] [--refine N[,W] ...] [--quick] [--output PATH]
"""

from __future__ import annotations

import os

# Threaded BLAS turns lsmr's vector norms into waits for busy cores on a shared machine (3x slower
# overall); everything here is FFTs and small vectors, so one thread loses nothing.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from _baselines import RL_ITERATIONS, bicubic, count_error_pct, lsq_deconvolution, map_scores, richardson_lucy
from tqdm import tqdm

from xrfsr_dask import XrfsrWarning, nmc_particle, simulate_scan, xrf_maps
from xrfsr_dask.consistency import ScanOperator
from xrfsr_dask.enhance import enhance
from xrfsr_dask.families import FAMILIES, HELD_OUT, structure_maps
from xrfsr_dask.model import bundled_models, load_model, model_serves, resolve_device
from xrfsr_dask.model.data import SPLIT_OFFSETS, _binned
from xrfsr_dask.simulate import probe_kernel

OPTICS = {"FZP-like": {"probe_nm": 60.0, "step_nm": 50.0}, "MLL-like": {"probe_nm": 25.0, "step_nm": 30.0}}
COUNT_LEVELS = (300.0, 30.0)
"""Counts per pixel in dense regions of the brightest element (the phantoms' ``counts=``)."""
FLUX_SCALE = 1.0
HR_PIXEL_NM = 5.0
SCALE = 2
"""Output grid: half the scan step."""
NMC = "nmc"
BASELINES = ("bicubic", "Richardson-Lucy (oracle)", "LSQ deconvolution (oracle)")
"""The non-network methods a model must beat (``LR repeated`` is no contender)."""
RL_CHOICES = (1, 2, 3, *RL_ITERATIONS)
"""Richardson–Lucy iteration counts the oracle picks from: few iterations smooth, which low counts need."""
RESULTS = Path(__file__).parent / "results" / "generalisation-cpu.jsonl"
QUICK_RESULTS = Path(tempfile.gettempdir()) / "generalisation-cpu-quick.jsonl"
"""Where ``--quick`` writes its rows: a smoke run is no result to commit."""


def all_families() -> list[str]:
    """``"nmc"`` and the families of :mod:`xrfsr_dask.families`, in its order."""
    return [NMC, *(name for name in FAMILIES if name != NMC)]


def phantom(family: str, size: int, seed: int, counts: float) -> xr.DataArray:
    """HR maps (element, y, x) of one scene."""
    if family == NMC:
        return nmc_particle((size, size), pixel_nm=HR_PIXEL_NM, seed=seed, counts=counts)
    return structure_maps(family, (size, size), pixel_nm=HR_PIXEL_NM, seed=seed, counts=counts)


def _as_maps(values: np.ndarray, like: xr.DataArray, pixel_nm: float) -> xr.DataArray:
    return xrf_maps(values.astype(np.float32), elements=[str(e) for e in like.element.values], step_nm=pixel_nm)


def estimates(
    hr: xr.DataArray, optic: dict, seed: int, models: Sequence[str],
) -> tuple[xr.DataArray, np.ndarray, dict, dict]:
    """The truth on the output grid, the LR scan, every method's estimate on the output grid, the oracle choices."""
    step, probe = optic["step_nm"], optic["probe_nm"]
    lr = simulate_scan(hr, step_nm=step, probe=probe, scan_mode="fly", noise=True, scale=FLUX_SCALE, seed=seed)
    lr_values = lr.values.astype(np.float64)
    factor = round(step / SCALE / HR_PIXEL_NM)
    ny, nx = (n * SCALE for n in lr.shape[-2:])
    truth_values = _binned(hr.values.astype(np.float64), factor)[..., :ny, :nx] * FLUX_SCALE
    truth = _as_maps(truth_values, hr, step / SCALE)

    smooth = bicubic(lr_values, SCALE).astype(np.float64)
    kernel = probe_kernel(probe, pixel_nm=(step, step), scan_mode="fly", step_nm=(step, step))
    rl, rl_iterations = richardson_lucy(lr_values, kernel, truth_values, SCALE, iterations=RL_CHOICES,
                                        per_map=True)
    operator = ScanOperator.from_scan(probe, step_nm=(step, step), ratio=(SCALE, SCALE), scan_mode="fly")
    lsq, damps = lsq_deconvolution(
        lr_values, operator.forward, lambda y: operator.adjoint(y, (ny, nx)), truth_values, prior=smooth,
    )
    out = {
        "LR repeated": np.repeat(np.repeat(lr_values, SCALE, -2), SCALE, -1),
        "bicubic": smooth,
        "Richardson-Lucy (oracle)": rl,
        "LSQ deconvolution (oracle)": lsq,
    }
    with warnings.catch_warnings():
        # A model trained for projections warns on maps, and a small --size warns that maps are
        # smaller than the receptive field: both are what this benchmark measures.
        warnings.simplefilter("ignore", XrfsrWarning)
        for name in models:
            model, refine, weight = _variant(name)
            out[name] = enhance(lr, model=model, refine=refine, refine_weight=weight).compute().values
    return truth, lr_values, out, {"rl_iterations": rl_iterations, "lsq_damp": damps}


REFINED = " + refine "
"""Joins a model's name and its refinement in a method label: ``NAME + refine N (weight W)``."""


def _variant(label: str) -> tuple[str, int | str, float]:
    """``(model, refine iterations or "auto", refine weight)`` of a method label."""
    if REFINED not in label:
        return label, 0, 1.0
    model, _, rest = label.partition(REFINED)
    iterations, _, weight = rest.partition(" (weight ")
    return model, iterations if iterations == "auto" else int(iterations), float(weight.rstrip(")"))


def _summary(per_map: dict[str, list]) -> dict:
    psnr_db = np.concatenate(per_map["psnr_db"])
    frc_nm = np.concatenate(per_map["frc_nm"])
    errors = np.concatenate(per_map["count_error_pct"])
    own = np.concatenate(per_map["count_error_vs_lr_pct"])
    crossed = frc_nm[np.isfinite(frc_nm)]
    return {
        "psnr_db": round(float(psnr_db.mean()), 2),
        "ssim": round(float(np.concatenate(per_map["ssim"]).mean()), 4),
        "frc_nm": round(float(crossed.mean()), 1) if crossed.size else None,
        "frc_crossed": f"{crossed.size}/{frc_nm.size}",
        "count_error_pct": round(float(errors.mean()), 2),
        "count_error_max_pct": round(float(np.abs(errors).max()), 2),
        "count_error_vs_lr_pct": round(float(own.mean()), 2),
        "count_error_vs_lr_max_pct": round(float(np.abs(own).max()), 2),
    }


def run_group(family: str, optic_name: str, counts: float, *, seeds: Sequence[int], size: int,
              models: Sequence[str], bar: tqdm) -> list[dict]:
    """Rows of one family x optics x count level, every method, averaged over seeds and elements."""
    optic = OPTICS[optic_name]
    start = time.perf_counter()
    per_method: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    choices: dict[str, list] = defaultdict(list)
    dense, elements = [], None
    for seed in seeds:
        hr = phantom(family, size, seed, counts)
        truth, lr, found, chosen = estimates(hr, optic, seed, models)
        elements = [str(e) for e in truth.element.values]
        dense.append(float(np.percentile(hr.values, 99, axis=(-2, -1)).max()))
        for key, value in chosen.items():
            choices[key].extend(value)
        for method, estimate in found.items():
            scores = map_scores(estimate, truth, data_range="map")
            scores["count_error_pct"] = count_error_pct(estimate, truth.values)
            scores["count_error_vs_lr_pct"] = count_error_pct(estimate, lr)
            for key, value in scores.items():
                per_method[method][key].append(value)
        bar.update(1)
    seconds = round(time.perf_counter() - start, 1)
    common = {
        "bench": "generalisation", "family": family, "held_out": family in HELD_OUT, "optic": optic_name,
        "probe_nm": optic["probe_nm"], "step_nm": optic["step_nm"], "output_pixel_nm": optic["step_nm"] / SCALE,
        "counts": counts, "dense_counts": round(float(np.mean(dense)), 1), "flux_scale": FLUX_SCALE,
        "size": size, "hr_pixel_nm": HR_PIXEL_NM, "seeds": list(seeds), "elements": elements,
    }
    rows = []
    for method, per_map in per_method.items():
        is_model = method in models
        row = {**common, "method": "model" if is_model else method, "model": method if is_model else None,
               **_summary(per_map)}
        row["psnr_db_by_element"] = dict(zip(
            elements, np.round(np.mean(per_map["psnr_db"], axis=0), 2).tolist(), strict=True))
        if method.startswith("Richardson"):
            row["rl_iterations"] = choices["rl_iterations"]
        if method.startswith("LSQ"):
            row["lsq_damp"] = choices["lsq_damp"]
        rows.append(row)
    best = max((r for r in rows if r["method"] in BASELINES), key=lambda r: r["psnr_db"])
    for row in rows:
        if row["model"] is not None:
            row["margin_db"] = round(row["psnr_db"] - best["psnr_db"], 2)
            row["best_baseline"] = best["method"]
        row["device"] = str(resolve_device("auto"))
        row["group_s"] = seconds
    return rows


def _table_row(family: str, rows: list[dict], models: Sequence[str]) -> str:
    mine = {r["model"] or r["method"]: r for r in rows}
    best = max((mine[m] for m in BASELINES), key=lambda r: r["psnr_db"])
    cells = [family, best["method"].split(" (")[0], f"{best['psnr_db']:.2f}"]
    for name in models:
        r = mine[name]
        aim = r["margin_db"] >= 1.0 and r["count_error_vs_lr_max_pct"] <= 1.0
        cells += [f"{r['psnr_db']:.2f}", f"{r['margin_db']:+.2f}", f"{r['count_error_pct']:+.2f}",
                  f"{r['count_error_vs_lr_pct']:+.2f}", "yes" if aim else "no"]
    return "| " + " | ".join(cells) + " |"


def table(rows: list[dict], models: Sequence[str]) -> str:
    """Markdown tables per optics x count level: the families trained on, then the held-out ones."""
    out = [
        "PSNR: mean over elements and seeds, each map's own range. margin: model minus the best of bicubic, "
        "Richardson-Lucy and LSQ (oracle choices). counts: mean over maps of the total-count error against the "
        "truth and against the measured LR counts. aim: margin >= +1 dB and every map within 1 % of the measured "
        "counts."
    ]
    header = ["family", "best baseline", "PSNR dB"]
    for name in models:
        header += [f"{name} PSNR dB", "margin dB", "counts vs truth %", "vs measured %", "aim"]
    for optic in OPTICS:
        for counts in dict.fromkeys(r["counts"] for r in rows):
            group = [r for r in rows if r["optic"] == optic and r["counts"] == counts]
            if not group:
                continue
            out.append(f"\n### {optic} (probe {OPTICS[optic]['probe_nm']:g} nm, step {OPTICS[optic]['step_nm']:g} "
                       f"nm, output pixel {OPTICS[optic]['step_nm'] / SCALE:g} nm), {counts:g} counts per pixel\n")
            families = list(dict.fromkeys(r["family"] for r in group))
            for section in (False, True):
                listed = [f for f in families if (f in HELD_OUT) == section]
                if not listed:
                    continue
                if section:
                    out.append("\nHeld-out families (never trained on):\n")
                out.append("| " + " | ".join(header) + " |")
                out.append("|" + "---|" * len(header))
                for family in listed:
                    out.append(_table_row(family, [r for r in group if r["family"] == family], models))
    return "\n".join(out)


def scale2_models(requested: Sequence[str] | None) -> list[str]:
    """The requested (default: all bundled) models that refine by 2; others are reported and skipped."""
    names = list(requested) if requested is not None else bundled_models()
    kept = []
    for name in names:
        net = load_model(name)
        if net.config.scale != SCALE:
            print(f"skipping {name}: it refines by {net.config.scale}, the output grid here is step / {SCALE}",
                  file=sys.stderr)
            continue
        serves = model_serves(net.card)
        if serves is not None and "maps" not in serves:
            print(f"note: {name} was trained for {', '.join(serves)}, not maps; measured anyway", file=sys.stderr)
        kept.append(name)
    return kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", help="comma-separated families (default: nmc and every family)")
    parser.add_argument("--optics", default=",".join(OPTICS), help="comma-separated, of " + ", ".join(OPTICS))
    parser.add_argument("--counts", default=",".join(f"{c:g}" for c in COUNT_LEVELS),
                        help="comma-separated count levels (counts per pixel in dense regions)")
    parser.add_argument("--seeds", type=int, default=None, help="scenes per family (default 2; 1 with --quick)")
    parser.add_argument("--size", type=int, default=None, help="HR map side in pixels (default 512; 256 with --quick)")
    parser.add_argument("--models", nargs="*", default=None, help="model names or paths (default: every bundled one)")
    parser.add_argument("--refine", nargs="*", default=[], metavar="N[,WEIGHT]",
                        help="also each model refined by N MAP-EM iterations or N=auto (stopped by the discrepancy "
                             "principle): enhance(refine=N, refine_weight=WEIGHT)")
    parser.add_argument("--quick", action="store_true", help="one seed, 256 x 256: a smoke run")
    parser.add_argument("--output", default=None, help="JSON lines file, '-' for standard output "
                        "(default benchmarks/results/generalisation-cpu.jsonl; with --quick, in the temporary folder)")
    args = parser.parse_args()
    seeds_n = args.seeds if args.seeds is not None else (1 if args.quick else 2)
    size = args.size if args.size is not None else (256 if args.quick else 512)
    output = args.output if args.output is not None else str(QUICK_RESULTS if args.quick else RESULTS)
    families = args.families.split(",") if args.families else all_families()
    optics = args.optics.split(",")
    counts = [float(c) for c in args.counts.split(",")]
    for name in optics:
        if name not in OPTICS:
            parser.error(f"--optics: unknown {name!r}; choose from {', '.join(OPTICS)}")
    known = all_families()
    for family in families:
        if family not in known:
            parser.error(f"--families: unknown {family!r}; choose from {', '.join(known)}")
    models = scale2_models(args.models)
    for spec in args.refine:
        iterations, _, weight = spec.partition(",")
        count = iterations if iterations == "auto" else int(iterations)
        models += [f"{name}{REFINED}{count} (weight {float(weight or 1.0):g})" for name in list(models)
                   if REFINED not in name]
    seeds = [SPLIT_OFFSETS["test"] + k for k in range(seeds_n)]
    warnings.simplefilter("ignore", category=RuntimeWarning)

    start = time.perf_counter()
    rows: list[dict] = []
    sink = sys.stdout if output == "-" else open(output, "w")  # noqa: SIM115 - closed below
    total = len(families) * len(optics) * len(counts) * len(seeds)
    with tqdm(total=total, desc="scenes", unit="scene", file=sys.stderr) as bar:
        for family in families:
            for optic in optics:
                for level in counts:
                    bar.set_postfix_str(f"{family}, {optic}, {level:g} counts")
                    group = run_group(family, optic, level, seeds=seeds, size=size, models=models, bar=bar)
                    for row in group:
                        print(json.dumps(row), file=sink, flush=True)
                    rows.extend(group)
    if sink is not sys.stdout:
        sink.close()
    elapsed = time.perf_counter() - start
    print(table(rows, models))
    print("\nseconds per family x optics (all count levels, seeds and methods):")
    for family in families:
        for optic in optics:
            spent = sum(r["group_s"] for r in rows if r["family"] == family and r["optic"] == optic
                        and r["method"] == "bicubic")
            print(f"  {family}, {optic}: {spent:.0f} s")
    print(f"\ntotal runtime {elapsed:.0f} s ({len(families)} families x {len(optics)} optics x {len(counts)} "
          f"count levels x {len(seeds)} seeds, {size} x {size} HR pixels, {len(models)} models)"
          + ("" if output == "-" else f"; rows in {output}"))


if __name__ == "__main__":
    main()
