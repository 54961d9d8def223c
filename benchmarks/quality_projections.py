"""Quality on tomographic projections: RDN models (names or paths) beside bicubic.

A projection sums the emission along the beam through the whole particle, so
it is much smoother than a 2-D map of a thin section. This table shows what
that does to each bundled model. The scenes are slabs of NMC particles as the
demo makes them (``nmc_volume`` of 64 x 256 x 256 voxels, four voxels per
scan step, seed 7, never used in training), projected at 0 and 60 degrees
and fly-scanned with Poisson noise in the demo's two settings:

- FZP: probe 61.6 nm FWHM, step 50 nm (output pixel 25 nm);
- MLL: probe 24.7 nm FWHM, step 30 nm (output pixel 15 nm);

at two count levels: ``counts`` 25 (the phantom's default, about 4000 Ni
counts per LR pixel through the particle's middle) and 2.5 (the demo's).
The truth is the noise-free projection averaged over each output pixel.
PSNR is the standard one with the truth's range, per map; the table gives
the mean over the two angles for Ni and Mo.

    python benchmarks/quality_projections.py [MODEL ...]   # default: every bundled model
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

from xrfsr_dask import nmc_volume, project, psnr, simulate_scan
from xrfsr_dask.model import bundled_models, load_model, predict
from xrfsr_dask.model.data import _binned
from xrfsr_dask.model.rdn import upsample_bicubic

SETTINGS = {"FZP": {"probe_nm": 61.6, "step_nm": 50.0}, "MLL": {"probe_nm": 24.7, "step_nm": 30.0}}
MODELS = tuple(sys.argv[1:]) or tuple(bundled_models())
COUNTS = (25.0, 2.5)
ELEMENTS = ["Ni_K", "Mo_L"]


def main() -> None:
    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    nets = {Path(name).name.removesuffix(".safetensors"): load_model(name) for name in MODELS}
    for setting, optic in SETTINGS.items():
        voxel = optic["step_nm"] / 4
        for counts in COUNTS:
            volume = nmc_volume((64, 256, 256), voxel_nm=voxel, seed=7, radius_nm=0.4 * 256 * voxel,
                                grain_nm=6 * optic["step_nm"], counts=counts, elements=ELEMENTS)
            series = project(volume, angles=[0.0, 60.0])
            lr = simulate_scan(series, step_nm=optic["step_nm"], probe=optic["probe_nm"], scan_mode="fly",
                               noise=True, seed=3).values
            truth = _binned(np.asarray(series.values, dtype=np.float64), 2)
            flat = lr.reshape(-1, 1, *lr.shape[-2:])
            estimates = {"bicubic": upsample_bicubic(torch.from_numpy(flat), 2).numpy().reshape(truth.shape)}
            for name, net in nets.items():
                estimates[name] = predict(net, lr, device="cpu")
            row = {"bench": "quality_projections", "setting": setting, **optic, "counts_per_voxel": counts,
                   "lr_max_counts": float(lr.max()), "output_pixel_nm": optic["step_nm"] / 2}
            for method, estimate in estimates.items():
                for e, element in enumerate(ELEMENTS):
                    scores = [float(psnr(truth[e, a], estimate[e, a])) for a in range(truth.shape[1])]
                    row[f"{method}_{element}_psnr_db"] = round(float(np.mean(scores)), 2)
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
