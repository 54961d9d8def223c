"""RDN inference speed: LR megapixels per second per preset, ours beside the bare network.

CPU (torch threads = cores): presets ``small`` on a 512 x 512 map and
``paper`` on 128 x 128. The bare network is timed as it ran before (NCHW,
fp32; the peer), in channels-last fp32 (what :func:`xrfsr_dask.model.predict`
runs on a CPU now) and channels-last bf16 autocast, alternating over the
repeats (medians), each with its largest deviation from the NCHW fp32 output
over the output's range, its GFLOP/s (2 FLOP per multiply-add of the
convolutions) and the fraction of this CPU's measured peak in fp32 or bf16
(the better of a large matrix product and a large 1x1 convolution, best of
the repeats, printed first). ``ratio`` is the
channels-last fp32 throughput over the earlier NCHW one; ``predict_keeps``
the fraction of the bare network's throughput that predict keeps
(normalisation, tiling, copy back to counts).
GPU (``--device gpu``): ``paper`` in fp32 and bf16
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


def _peak_gflops(dtype: torch.dtype, repeat: int) -> float:
    """Measured peak of this CPU, GFLOP/s: the better of a 2048² matrix product (MKL, or oneDNN for bf16)
    and a 1x1 convolution of 256 channels on 128² pixels, channels-last (oneDNN, the RDN's kernels)."""
    a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
    conv = torch.nn.Conv2d(256, 256, 1).to(dtype).to(memory_format=torch.channels_last).eval()
    x = torch.randn(4, 256, 128, 128).to(dtype).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.mm(a, b), conv(x)
        matmul = 2 * 2048**3 / best(lambda: torch.mm(a, b), repeat)
        convolution = 2 * 256 * 256 * x.shape[0] * 128 * 128 / best(lambda: conv(x), repeat)
    return max(matmul, convolution) / 1e9


def _bare(model: torch.nn.Module, x: torch.Tensor, memory: torch.memory_format, bf16: bool) -> torch.Tensor:
    model = model.to(memory_format=memory)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(x.contiguous(memory_format=memory)).float()


def _cpu_line(preset: str, size: int, repeat: int, peaks: dict[str, float]) -> dict:
    """Bare network as before (NCHW, fp32), channels-last fp32, channels-last bf16, and predict (auto)."""
    torch.manual_seed(0)
    model = build_rdn(preset).eval()
    maps = _maps(1, size)
    x = torch.from_numpy(maps[:, None] / 100.0)
    flops = flops_per_lr_pixel(model) * maps.size
    variants = {"nchw_fp32": (torch.contiguous_format, False), "channels_last_fp32": (torch.channels_last, False),
                "channels_last_bf16": (torch.channels_last, True)}
    reference = _bare(model, x, torch.contiguous_format, False)
    span = float(reference.max() - reference.min())
    times: dict[str, list[float]] = {name: [] for name in [*variants, "predict"]}
    errors = {name: float((_bare(model, x, *v) - reference).abs().max()) / span for name, v in variants.items()}
    for _ in range(repeat):  # alternating, so that the load of other processes weighs on all alike
        for name, v in variants.items():
            times[name].append(best(lambda v=v: _bare(model, x, *v), 1))
        times["predict"].append(best(lambda: predict(model, maps, device="cpu"), 1))
    median = {name: float(np.median(t)) for name, t in times.items()}
    before = median["nchw_fp32"]
    gflops = {name: flops / t / 1e9 for name, t in median.items()}
    return {
        "bench": "rdn_speed.cpu", "preset": preset, "size": f"1 map {size}x{size}, scale 2",
        "parameters": model.n_parameters, "gflop_per_lr_mpix": round(flops / maps.size * 1e6 / 1e9, 1),
        "ours_s": round(median["channels_last_fp32"], 3), "peer": "bare network as before (NCHW, fp32)",
        "peer_s": round(before, 3), "ratio": round(before / median["channels_last_fp32"], 3),
        "ratio_meaning": "throughput of the network as predict now runs it on the CPU over the earlier bare network",
        "median_s": {k: round(v, 3) for k, v in median.items()},
        "speedup_over_nchw_fp32": {k: round(before / v, 3) for k, v in median.items()},
        "gflop_per_s": {k: round(v, 1) for k, v in gflops.items()},
        "fraction_of_measured_peak": {
            k: round(v / peaks["bf16" if k.endswith("bf16") else "fp32"], 3) for k, v in gflops.items() if k in variants
        },
        "max_error_over_range": {k: float(f"{v:.3g}") for k, v in errors.items()},
        "predict_keeps": round(median["channels_last_fp32"] / median["predict"], 3),
        "repeats": repeat, "threads": torch.get_num_threads(), "load_1min": round(os.getloadavg()[0], 2),
        "device": f"CPU {platform.processor() or platform.machine()}",
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
    peaks = {"fp32": _peak_gflops(torch.float32, args.repeat), "bf16": _peak_gflops(torch.bfloat16, args.repeat)}
    print(json.dumps({"bench": "rdn_speed.cpu_peak", "size": "2048² matrix product, 1x1 convolution 256 channels",
                      "gflop_per_s": {k: round(v, 1) for k, v in peaks.items()}, "threads": torch.get_num_threads(),
                      "note": "best of the repeats; the attainable peak the fractions refer to"}), flush=True)
    for preset, size in (("small", 512), ("paper", 128)):
        print(json.dumps(_cpu_line(preset, size, args.repeat, peaks)), flush=True)


if __name__ == "__main__":
    main()
