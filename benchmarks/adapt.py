"""When does self-supervised adaptation help? Bicubic, the base model and the adapted model against the truth.

Scenes (512 x 512 HR pixels of 5 nm):

- ``circuit``: integrated-circuit layouts (:func:`xrfsr_dask.families.structure_maps`),
  a structure family no bundled model was trained or selected on;
- ``nmc``: NMC particles of the test split (seeds 200000, 200001), the kind of
  structure the bundled model was trained on.

Each is scanned like an FZP beamline: fly scan, step 50 nm, probe 60 nm
FWHM, Poisson noise at about 300 counts per pixel in the dense regions of the
brightest element (flux scale 0.3 for the circuits, whose brightest element
reads 1000 counts at scale 1; 0.15 for NMC, 2000 Ni counts). The LR map
(4 x 51 x 51) is all the adaptation sees: :func:`xrfsr_dask.model.adapt.adapt`
fine-tunes the model on pairs simulated from it at a 100 nm step, with the
probe recorded in its attrs. The truth is the noise-free HR map averaged onto
the 25 nm output grid (``_binned``), times the flux scale.

Per scene: PSNR (:func:`xrfsr_dask.psnr`, standard, data range = each truth
map's range; mean over the 4 elements, and per element) of bicubic
interpolation, the base model and the adapted model, the adaptation's wall
and CPU seconds, and its self-supervised L1 loss before and after. The model
measured is named with the first 12 hex digits of its ``weights_sha256``.

    python benchmarks/adapt.py [--model NAME_OR_PATH] [--circuit-seeds 1 2 3] [--nmc-seeds 200000 200001]
                               [--epochs N] [--steps-per-epoch N] [--learning-rate LR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _baselines import bicubic

from xrfsr_dask import nmc_particle, psnr, simulate_scan, xrf_maps
from xrfsr_dask.model import DEFAULT_MODEL, load_model, predict
from xrfsr_dask.model.adapt import adapt
from xrfsr_dask.model.data import _binned

HR_PIXEL_NM = 5.0
SHAPE = (512, 512)
STEP_NM, PROBE_NM = 50.0, 60.0
NMC_SEED = 200_000
FLUX = {"circuit": 0.3, "nmc": 0.15}
RESULTS = Path(__file__).parent / "results" / "adapt-cpu.jsonl"


def _scene(kind: str, seed: int):
    if kind == "nmc":
        return nmc_particle(SHAPE, pixel_nm=HR_PIXEL_NM, seed=seed)
    from xrfsr_dask.families import structure_maps

    return structure_maps("circuit", SHAPE, pixel_nm=HR_PIXEL_NM, seed=seed)


def _psnr(truth: np.ndarray, estimate: np.ndarray, elements: list[str]) -> tuple[float, dict[str, float]]:
    t = xrf_maps(truth.astype(np.float32), elements=elements, step_nm=STEP_NM / 2)
    values = np.asarray(psnr(t, t.copy(data=estimate.astype(np.float32))))
    return round(float(values.mean()), 2), {e: round(float(v), 2) for e, v in zip(elements, values, strict=True)}


def run(model_name: str, scenes: list[tuple[str, int]], settings: dict) -> list[dict]:
    model = load_model(model_name)
    scale = model.config.scale
    factor = round(STEP_NM / scale / HR_PIXEL_NM)
    lines = []
    for kind, seed in scenes:
        hr = _scene(kind, seed)
        lr = simulate_scan(hr, step_nm=STEP_NM, probe=PROBE_NM, scan_mode="fly", noise=True, scale=FLUX[kind],
                           seed=seed).compute()
        ny, nx = (n * scale for n in lr.shape[-2:])
        truth = _binned(hr.values.astype(np.float64), factor)[..., :ny, :nx] * FLUX[kind]
        elements = [str(e) for e in lr.element.values]
        cpu0, wall0 = time.process_time(), time.perf_counter()
        adapted = adapt(model, lr, seed=0, device="cpu", progress=False, **settings)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        lr_values = lr.values
        estimates = {
            "bicubic": bicubic(lr_values, scale),
            "base": predict(model, lr_values, device="cpu"),
            "adapted": predict(adapted, lr_values, device="cpu"),
        }
        scores = {m: _psnr(truth, e, elements) for m, e in estimates.items()}
        record = adapted.card["adaptation"]
        line = {
            "bench": "adapt", "scene": kind, "seed": seed, "size": "x".join(str(n) for n in lr.shape),
            "scene_sha256_12": hashlib.sha256(np.ascontiguousarray(hr.values, "<f8").tobytes()).hexdigest()[:12],
            "dense_counts": round(float(np.quantile(truth, 0.99)), 1),
            "model": model.card.get("name"), "weights_sha256_12": str(model.card.get("weights_sha256"))[:12],
            **{f"psnr_{m}_db": s[0] for m, s in scores.items()},
            "gain_vs_base_db": round(scores["adapted"][0] - scores["base"][0], 2),
            "psnr_by_element_db": {m: s[1] for m, s in scores.items()},
            "adapt_s": round(wall, 1), "adapt_cpu_s": round(cpu, 1), "threads": torch.get_num_threads(),
            "ss_l1_before": record["loss"]["before"], "ss_l1_after": record["loss"]["after"],
            "ss_l1_bicubic": record["loss"]["bicubic"],
            "settings": {k: record["settings"][k] for k in
                         ("epochs", "steps_per_epoch", "batch_size", "learning_rate", "patch", "seed")},
            "device": "cpu",
        }
        lines.append(line)
        print(json.dumps(line), flush=True)
    return lines


def table(lines: list[dict]) -> str:
    head = ("| scene | seed | bicubic dB | base dB | adapted dB | adapted - base | adapt s (CPU s) "
            "| self-sup. L1: bicubic, base -> adapted |\n|---|---|---|---|---|---|---|---|")
    rows = [
        f"| {x['scene']} | {x['seed']} | {x['psnr_bicubic_db']:.2f} | {x['psnr_base_db']:.2f} | "
        f"{x['psnr_adapted_db']:.2f} | {x['gain_vs_base_db']:+.2f} | {x['adapt_s']:.0f} ({x['adapt_cpu_s']:.0f}) | "
        f"{x['ss_l1_bicubic']:.4f}, {x['ss_l1_before']:.4f} -> {x['ss_l1_after']:.4f} |"
        for x in lines
    ]
    first = lines[0]
    return (f"model {first['model']} (weights_sha256 {first['weights_sha256_12']}...), "
            f"settings {first['settings']}\n" + "\n".join([head, *rows]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--circuit-seeds", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--nmc-seeds", type=int, nargs="*", default=[NMC_SEED, NMC_SEED + 1])
    parser.add_argument("--epochs", type=int, default=None, help="default: adapt's")
    parser.add_argument("--steps-per-epoch", type=int, default=None, help="default: adapt's")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: adapt's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON lines are appended here.")
    args = parser.parse_args()
    warnings.simplefilter("ignore", category=RuntimeWarning)
    torch.set_num_threads(args.threads)
    scenes = [("circuit", s) for s in args.circuit_seeds] + [("nmc", s) for s in args.nmc_seeds]
    settings = {k: v for k, v in (("epochs", args.epochs), ("steps_per_epoch", args.steps_per_epoch),
                                  ("learning_rate", args.learning_rate)) if v is not None}
    lines = run(args.model, scenes, settings)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("a") as f:
        f.writelines(json.dumps(line) + "\n" for line in lines)
    print(table(lines))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
