"""RDN inference speed: LR megapixels per second per preset, ours beside the bare network.

``ours`` is :func:`xrfsr_dask.model.predict` with its defaults
(normalisation, one 512-pixel tile per map here, copy back to counts); the
peer is the bare network called on the same pixels under
``torch.inference_mode``. ``ratio = bare_s / ours_s`` is the fraction of the
bare network's throughput that predict keeps. The
network's arithmetic is counted from its convolutions (2 FLOP per
multiply-add), so achieved GFLOP/s and, on a GPU, the fraction of the dense
bf16 peak are reported.

CPU (torch threads = cores): presets ``small`` on a 512 x 512 map and
``paper`` on 128 x 128. GPU (``--device gpu``): ``paper`` in fp32 and bf16
(channels-last, cuDNN benchmark mode) on 8 maps of 512 x 512.

    python benchmarks/rdn_speed.py [--device cpu|gpu] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import numpy as np
import torch
from _timing import best

from xrfsr_dask.model import build_rdn, predict

DENSE_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0}
"""Dense (no sparsity) bf16 tensor-core peaks of SXM parts, TFLOP/s, from the vendors' data sheets."""


def flops_per_lr_pixel(model: torch.nn.Module, size: int = 16) -> float:
    """Convolution FLOPs (2 per multiply-add) the network spends per LR pixel."""
    total = 0

    def count(module: torch.nn.Conv2d, _: tuple, out: torch.Tensor) -> None:
        nonlocal total
        k = module.kernel_size[0] * module.kernel_size[1]
        total += 2 * module.in_channels * module.out_channels * k * out.shape[-2] * out.shape[-1]

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        model(torch.zeros(1, 1, size, size))
    for hook in hooks:
        hook.remove()
    return total / size**2


def _maps(n: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).poisson(100.0, size=(n, size, size)).astype(np.float32)


def _cpu_line(preset: str, size: int, repeat: int) -> dict:
    torch.manual_seed(0)
    model = build_rdn(preset).eval()
    maps = _maps(1, size)
    x = torch.from_numpy(maps[:, None] / 100.0)
    flops = flops_per_lr_pixel(model)

    def bare() -> None:
        with torch.inference_mode():
            model(x)

    bare_s = best(bare, repeat)
    ours_s = best(lambda: predict(model, maps, device="cpu"), repeat)
    mpix = maps.size / 1e6
    return {
        "bench": "rdn_speed.cpu", "preset": preset, "size": f"1 map {size}x{size}, scale 2",
        "parameters": model.n_parameters, "gflop_per_lr_mpix": round(flops * 1e6 / 1e9, 1),
        "ours_s": round(ours_s, 3), "peer": "bare network, one call", "peer_s": round(bare_s, 3),
        "ratio": round(bare_s / ours_s, 3), "ratio_meaning": "fraction of bare-network throughput kept",
        "ours_lr_mpix_per_s": round(mpix / ours_s, 4), "bare_lr_mpix_per_s": round(mpix / bare_s, 4),
        "bare_gflop_per_s": round(flops * maps.size / bare_s / 1e9, 1),
        "threads": torch.get_num_threads(), "device": f"CPU {platform.processor() or platform.machine()}",
    }


def _gpu_lines(repeat: int) -> list[dict]:
    if not torch.cuda.is_available():
        sys.exit("--device gpu: torch sees no CUDA GPU.")
    torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(0)
    peak = next((v for k, v in DENSE_BF16_TFLOPS.items() if k in name), None)
    torch.manual_seed(0)
    model = build_rdn("paper").eval()
    flops = flops_per_lr_pixel(model)
    model = model.cuda().to(memory_format=torch.channels_last)
    maps = _maps(8, 512)
    lines = []
    for precision in ("fp32", "bf16"):
        x = torch.from_numpy(maps[:, None] / 100.0).cuda().contiguous(memory_format=torch.channels_last)

        def bare(x: torch.Tensor = x, precision: str = precision) -> None:
            with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
                for i in range(0, 8, 2):
                    model(x[i:i + 2])
            torch.cuda.synchronize()

        def ours(precision: str = precision) -> None:
            predict(model, maps, device="cuda", precision=precision, batch_size=4)
            torch.cuda.synchronize()

        bare()
        ours()
        bare_s, ours_s = best(bare, repeat), best(ours, repeat)
        achieved = flops * maps.size / bare_s / 1e12
        lines.append({
            "bench": "rdn_speed.gpu", "preset": "paper", "precision": precision,
            "size": "8 maps 512x512, scale 2", "parameters": model.n_parameters,
            "tflop_per_lr_mpix": round(flops * 1e6 / 1e12, 1),
            "ours_s": round(ours_s, 4), "peer": "bare network, batches of 2", "peer_s": round(bare_s, 4),
            "ratio": round(bare_s / ours_s, 3), "ratio_meaning": "fraction of bare-network throughput kept",
            "ours_lr_mpix_per_s": round(maps.size / 1e6 / ours_s, 2),
            "bare_tflop_per_s": round(achieved, 1),
            "fraction_of_dense_bf16_peak": round(achieved / peak, 3) if peak else None,
            "device": f"GPU {name}",
        })
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.device == "gpu":
        for line in _gpu_lines(args.repeat):
            print(json.dumps(line), flush=True)
        return
    torch.set_num_threads(os.cpu_count() or 1)
    for preset, size in (("small", 512), ("paper", 128)):
        print(json.dumps(_cpu_line(preset, size, args.repeat)), flush=True)


if __name__ == "__main__":
    main()
