"""Quality table: the RDN beside LR, bicubic and Richardson–Lucy on held-out simulated scans.

Test scenes are NMC phantoms (5 nm pixels, 512 x 512) from seeds of the test
split, never seen in training, scanned in two settings:

- FZP-like: probe 60 nm FWHM, step 50 nm, fly scan (output pixel 25 nm);
- MLL-like: probe 25 nm FWHM, step 30 nm, fly scan (output pixel 15 nm);

with Poisson noise at a flux scale of 0.5 (about 1000 Ni counts per pixel in
dense grains). The truth is the noise-free phantom averaged over each output
pixel. Each method puts its estimate on the output grid:

- LR input: every LR pixel repeated ``scale x scale`` times (what was measured);
- bicubic: bicubic interpolation of the LR map;
- Richardson–Lucy: scikit-image's ``richardson_lucy`` with the true scan blur
  (probe and fly motion, on the LR grid), then bicubic; its iteration count
  is the best of 5, 10, 20, 40, 80, 160 and 320 against the truth (an oracle choice
  that favours it);
- RDN: :func:`xrfsr_dask.model.predict` with the bundled model.

Per map (4 elements x phantoms): PSNR (standard, data range = the truth's
range), SSIM, and the FRC resolution against the truth at the 0.5 threshold
(the criterion equivalent to 1/7 between two half datasets), NaN when the
curve never drops below it: then the estimate correlates with the truth
above 0.5 up to the Nyquist frequency, a resolution of at most two output
pixels. FRC resolutions are full periods 1/f (as in the committed results
and the docs' tables; half periods are half of them). The table gives means
over maps; ``frc_nm`` is the mean over maps whose curve crossed,
``frc_crossed`` how many did, and ``frc_nm_by_element`` the same per
element.

    python benchmarks/quality.py [--model NAME_OR_PATH] [--phantoms 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import numpy as np
from _baselines import bicubic, mean_scores, richardson_lucy

from xrfsr_dask import nmc_particle, simulate_scan, xrf_maps
from xrfsr_dask.model import load_model, predict
from xrfsr_dask.model.data import SPLIT_OFFSETS, _binned
from xrfsr_dask.simulate import probe_kernel

SETTINGS = {"FZP-like": {"probe_nm": 60.0, "step_nm": 50.0}, "MLL-like": {"probe_nm": 25.0, "step_nm": 30.0}}
HR_PIXEL_NM = 5.0
COUNT_SCALE = 0.5


def run(model_name: str, phantoms: int) -> list[dict]:
    model = load_model(model_name)
    scale = model.config.scale
    lines = []
    for label, setting in SETTINGS.items():
        step = setting["step_nm"]
        per_method: dict[str, list[dict]] = {}
        rl_iterations = []
        for k in range(phantoms):
            seed = SPLIT_OFFSETS["test"] + 1000 + k
            hr = nmc_particle((512, 512), pixel_nm=HR_PIXEL_NM, seed=seed)
            lr = simulate_scan(hr, step_nm=step, probe=setting["probe_nm"], scan_mode="fly", noise=True,
                               scale=COUNT_SCALE, seed=seed)
            factor = round(step / scale / HR_PIXEL_NM)
            ny, nx = (n * scale for n in lr.shape[-2:])
            truth_values = _binned(hr.values.astype(np.float64), factor)[..., :ny, :nx] * COUNT_SCALE
            truth = xrf_maps(truth_values.astype(np.float32), elements=list(hr.element.values),
                             step_nm=step / scale)
            kernel = probe_kernel(setting["probe_nm"], pixel_nm=(step, step), scan_mode="fly", step_nm=(step, step))
            lr_values = lr.values
            rl, n_iter = richardson_lucy(lr_values, kernel, truth_values, scale)
            rl_iterations.append(n_iter[0])
            estimates = {
                "LR input": np.repeat(np.repeat(lr_values, scale, -2), scale, -1),
                "bicubic": bicubic(lr_values, scale),
                "Richardson-Lucy + bicubic": rl,
                "RDN": predict(model, lr_values, device="cpu"),
            }
            for method, estimate in estimates.items():
                per_method.setdefault(method, []).append(mean_scores(estimate, truth))
        for method, scores in per_method.items():
            crossed = [s["frc_nm"] for s in scores if np.isfinite(s["frc_nm"])]
            n_crossed = sum(int(s["frc_crossed"].split("/")[0]) for s in scores)
            n_maps = sum(int(s["frc_crossed"].split("/")[1]) for s in scores)
            line = {
                "bench": "quality", "setting": label, "method": method, "model": model.card.get("name"),
                "probe_nm": setting["probe_nm"], "step_nm": step, "output_pixel_nm": step / scale,
                "psnr_db": round(float(np.mean([s["psnr_db"] for s in scores])), 2),
                "ssim": round(float(np.mean([s["ssim"] for s in scores])), 4),
                "frc_nm": round(float(np.mean(crossed)), 1) if crossed else None,
                "frc_crossed": f"{n_crossed}/{n_maps}",
                "phantoms": phantoms,
            }
            elements = scores[0]["frc_by_element"]
            line["frc_nm_by_element"] = {}
            for element in elements:
                values = np.array([s["frc_by_element"][element] for s in scores])
                finite = values[np.isfinite(values)]
                line["frc_nm_by_element"][element] = (
                    f"{finite.mean():.1f} ({finite.size}/{values.size} crossed)" if finite.size
                    else f"not crossed (0/{values.size})"
                )
            if method.startswith("Richardson"):
                line["rl_iterations"] = rl_iterations
            lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="rdn-small-x2")
    parser.add_argument("--phantoms", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore", category=RuntimeWarning)
    for line in run(args.model, args.phantoms):
        print(json.dumps(line), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
