"""Chunkwise enhancement throughput beside the bare network, and peak memory as data grow.

Throughput: a lazy series of 2 elements x 2 angles x 512 x 512 LR pixels in
256 x 256 chunks is enhanced by :func:`xrfsr_dask.enhance.enhance` on the
threaded scheduler (``ours``); the peer is the bare network called on each
whole 512 x 512 map in one process (no tiles, no halo, no normalisation):
the floor. ``ratio = bare_s / ours_s`` is the fraction of the bare
throughput that chunked inference keeps (aim >= 0.85); the halo's extra
pixels are part of its cost, so the run is repeated for several halos.

Seams: the largest difference between chunked (48 x 48 chunks) and
whole-image inference, over the data range, for halos from 0 to the
network's receptive radius, on a simulated NMC scan.

Memory: ``enhance_to_zarr`` from a zarr store to a zarr store in a fresh
process for 1x and 8x the data (2 elements x 4 or 32 angles x 1024 x 1024
LR, generated lazily, same 256 x 256 chunks), reporting the peak resident
memory of that process. These runs use the ``tiny`` preset, since
the question is whether memory grows with the data, not the network's speed.

    python benchmarks/enhance.py [--device cpu|gpu] [--halos 8,12,16] [--repeat 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import dask.array as dsa
import numpy as np
import torch
import xarray as xr
from _timing import best

import xrfsr_dask as xs
from xrfsr_dask.enhance import enhance, enhance_to_zarr
from xrfsr_dask.model import build_rdn, load_model, predict, save_model


def _series(n_angles: int, size: int = 512) -> xr.DataArray:
    rng = np.random.default_rng(0)
    counts = rng.poisson(100.0, size=(2, n_angles, size, size)).astype(np.float32)
    return xs.xrf_maps(counts, elements=["Ni_K", "Co_K"], angles=np.arange(n_angles, dtype=float), step_nm=50.0)


def _throughput(model_spec: str, device: str, halos: list[int], repeat: int) -> list[dict]:
    net = load_model(model_spec)
    series = _series(2)
    maps = series.values.reshape(-1, 1, 512, 512) / 100.0
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    net = net.to(dev)
    bf16 = device == "gpu"

    def bare() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            for m in maps:
                net(torch.from_numpy(m[None]).to(dev)).float().cpu()

    bare_s = best(bare, repeat)
    lines = []
    for halo in halos:
        lazy = enhance(series.chunk(element=1, angle=1, y=256, x=256), model_spec, halo=halo,
                       device="cuda" if device == "gpu" else "cpu")
        ours_s = best(lambda lazy=lazy: lazy.compute(scheduler="threads"), repeat)
        lines.append({
            "bench": f"enhance.{device}", "model": net.card.get("name"), "halo": halo,
            "size": "2 elements x 2 angles x 512x512 LR, chunks 256x256", "ours_s": round(ours_s, 3),
            "peer": "bare network on each whole map", "peer_s": round(bare_s, 3),
            "ratio": round(bare_s / ours_s, 3), "ratio_meaning": "fraction of bare-network throughput kept",
            "lr_mpix_per_s": round(series.size / 1e6 / ours_s, 4),
            "device": f"GPU {torch.cuda.get_device_name(0)}" if device == "gpu"
            else f"CPU {platform.processor() or platform.machine()}",
        })
    return lines


def _halo_error(model_spec: str) -> list[dict]:
    """Seam error of chunked inference against whole-image inference, per halo."""
    net = load_model(model_spec)
    hr = xs.nmc_particle((1280, 1280), pixel_nm=5.0, seed=200_500)
    lr = xs.simulate_scan(hr, step_nm=40.0, probe=50.0, scan_mode="fly", noise=True, scale=0.5, seed=3)
    whole = predict(net, lr.values, tile=4096, device="cpu")
    span = float(whole.max() - whole.min())
    lines = []
    for halo in (0, 2, 4, 6, 8, 12, 16, net.config.receptive_radius):
        out = enhance(lr.chunk(element=1, y=48, x=48), model_spec, halo=halo).values
        lines.append({
            "bench": "enhance.halo_error", "model": net.card.get("name"), "halo": halo,
            "size": "4 elements x 160x160 LR (NMC phantom, fly scan), chunks 48x48",
            "max_abs_error_over_range": float(f"{np.abs(out - whole).max() / span:.3g}"),
        })
    return lines


def _child(n_angles: int, model_spec: str, folder: str) -> None:
    """Store a lazily generated series of 1024 x 1024 maps, enhance it store to store, print peak RSS."""
    src, dst = f"{folder}/lr-{n_angles}.zarr", f"{folder}/hr-{n_angles}.zarr"
    rng = dsa.random.default_rng(0)
    counts = rng.poisson(100.0, size=(2, n_angles, 1024, 1024), chunks=(1, 1, 256, 256)).astype(np.float32)
    series = xs.xrf_maps(counts, elements=["Ni_K", "Co_K"], angles=np.arange(n_angles, dtype=float), step_nm=50.0)
    xs.save(series, src, chunks={"y": 256, "x": 256}, progress=False)
    enhance_to_zarr(src, dst, model_spec, progress=False)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"angles": n_angles, "peak_mib": round(peak_mib, 1), "lr_mib": counts.nbytes / 2**20}))


def _memory(folder: str) -> dict:
    torch.manual_seed(0)
    spec = str(save_model(build_rdn("tiny"), Path(folder) / "tiny"))
    runs = {}
    for n in (4, 32):
        out = subprocess.run([sys.executable, __file__, "--child", str(n), "--model", spec, "--folder", folder],
                             check=True, capture_output=True, text=True)
        runs[n] = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "bench": "enhance.memory", "model": "tiny (random weights)",
        "size": "2 elements x N angles x 1024x1024 LR, chunks 256x256, store to store, threaded scheduler",
        "lr_mib_1x": runs[4]["lr_mib"], "lr_mib_8x": runs[32]["lr_mib"],
        "peak_mib_1x": runs[4]["peak_mib"], "peak_mib_8x": runs[32]["peak_mib"],
        "ratio": round(runs[32]["peak_mib"] / runs[4]["peak_mib"], 3),
        "ratio_meaning": "peak RSS at 8x the data / at 1x (1 = bounded)",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--halos", default="8,12,16")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--model", default="rdn-small-x2")
    parser.add_argument("--child", type=int)
    parser.add_argument("--folder")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.model, args.folder)
        return
    spec = args.model
    if args.device == "gpu":
        if not torch.cuda.is_available():
            sys.exit("--device gpu: torch sees no CUDA GPU.")
        spec = str(save_model(build_rdn("paper"), Path(tempfile.mkdtemp()) / "paper"))
    for line in _throughput(spec, args.device, [int(h) for h in args.halos.split(",")], args.repeat):
        print(json.dumps(line), flush=True)
    if args.device == "cpu":
        for line in _halo_error(spec):
            print(json.dumps(line), flush=True)
        with tempfile.TemporaryDirectory() as folder:
            print(json.dumps(_memory(folder)), flush=True)


if __name__ == "__main__":
    main()
