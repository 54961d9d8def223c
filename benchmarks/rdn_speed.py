"""RDN inference speed: LR megapixels per second per preset, ours beside the bare network.

CPU (torch threads = cores): presets ``small`` on a 512 x 512 map and
``paper`` on 128 x 128. The bare network is timed as it ran before (NCHW,
fp32, the concatenating dense blocks; the peer), in channels-last fp32 with
the concatenating blocks (``torch.no_grad``), in channels-last fp32 in CPU
inference mode (the dense blocks in piecewise form: what
:func:`xrfsr_dask.model.predict` runs on a CPU now) and channels-last bf16
autocast, alternating over the repeats (medians), each with its largest
deviation from the NCHW fp32 output over the output's range, its GFLOP/s (2
FLOP per multiply-add of the convolutions) and the fraction of this CPU's
measured peak in fp32 or bf16 (the best of a large matrix product, a large
1x1 and a large 3x3 convolution, best of the repeats, printed first).
``ratio`` is the inference-mode channels-last fp32 throughput over the NCHW
one; ``conv_only_s`` is the time the convolutions alone take in that run
(profiler self time), so ``ceiling_ratio`` (NCHW time over it) bounds what
any rearrangement of the other operations could reach with these
convolution kernels; ``predict_keeps`` the fraction of the bare network's
throughput that predict keeps (normalisation, tiling, copy back to counts).

Importing xrfsr_dask asks PyTorch to put large CPU buffers in transparent
huge pages (``THP_MEM_ALLOC_ENABLE=1``). The peer as it ran before did
not: ``before_s`` times it in a child process without that setting, and
``ratio_vs_before`` is predict's throughput over it.
GPU (``--device gpu``): ``paper`` in fp32 and bf16
(channels-last, cuDNN benchmark mode) on 8 maps of 512 x 512.

    python benchmarks/rdn_speed.py [--device cpu|gpu] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
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
    """Measured peak of this CPU, GFLOP/s: the best of a 2048² matrix product (MKL, or oneDNN for bf16), a 1x1
    and a 3x3 convolution of 256 channels on 128² pixels, channels-last (oneDNN, the RDN's kernels)."""
    a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
    x = torch.randn(4, 256, 128, 128).to(dtype).contiguous(memory_format=torch.channels_last)
    rates = [2 * 2048**3 / best(lambda: torch.mm(a, b), repeat)]
    with torch.inference_mode():
        for k in (1, 3):
            conv = torch.nn.Conv2d(256, 256, k, padding=k // 2).to(dtype).to(memory_format=torch.channels_last).eval()
            conv(x)
            rates.append(2 * 256 * 256 * k * k * x.shape[0] * 128 * 128 / best(lambda conv=conv: conv(x), repeat))
    return max(rates) / 1e9


def _bare(model: torch.nn.Module, x: torch.Tensor, memory: torch.memory_format, bf16: bool, inference: bool
          ) -> torch.Tensor:
    """The network on ``x``; ``inference``: in ``torch.inference_mode`` (the CPU inference path), else ``no_grad``."""
    x = x.contiguous(memory_format=memory)
    with torch.inference_mode() if inference else torch.no_grad(), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(x).float()


def _conv_seconds(model: torch.nn.Module, x: torch.Tensor) -> float:
    """Self time of the convolution kernels in one inference-mode channels-last fp32 run (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        _bare(model, x, torch.channels_last, False, True)
    return sum(e.self_cpu_time_total for e in prof.key_averages() if "conv" in e.key) / 1e6


def _model(preset: str, memory: torch.memory_format) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_rdn(preset).eval().to(memory_format=memory)  # type: ignore[call-overload]  # not in the stubs


def _input(size: int) -> tuple[np.ndarray, torch.Tensor]:
    maps = _maps(1, size)
    return maps, torch.from_numpy(maps[:, None] / 100.0)


def _before_seconds(preset: str, size: int, repeat: int) -> list[float]:
    """NCHW fp32 times in a child process without transparent huge pages for PyTorch (the library before)."""
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}
    done = subprocess.run(
        [sys.executable, __file__, "--before", preset, str(size), "--repeat", str(repeat)],
        env=env, check=True, capture_output=True, text=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def _cpu_line(preset: str, size: int, repeat: int, peaks: dict[str, float]) -> dict:
    """Bare network as before (NCHW, fp32), channels-last fp32 (concatenating, then piecewise form),
    channels-last bf16, and predict (auto)."""
    nchw, channels_last = _model(preset, torch.contiguous_format), _model(preset, torch.channels_last)
    maps, x = _input(size)
    flops = flops_per_lr_pixel(nchw) * maps.size
    cl = torch.channels_last
    variants = {
        "nchw_fp32": (nchw, torch.contiguous_format, False, True),
        "channels_last_concat_fp32": (channels_last, cl, False, False),
        "channels_last_fp32": (channels_last, cl, False, True),
        "channels_last_bf16": (channels_last, cl, True, True),
    }
    reference = _bare(nchw, x, torch.contiguous_format, False, True)
    span = float(reference.max() - reference.min())
    times: dict[str, list[float]] = {name: [] for name in [*variants, "predict"]}
    errors = {name: float((_bare(*v[:1], x, *v[1:]) - reference).abs().max()) / span for name, v in variants.items()}
    errors["predict"] = float(np.abs(predict(channels_last, maps, device="cpu", scale=100.0)[0]
                                     - reference.numpy()[0, 0] * 100.0).max()) / (span * 100.0)
    for _ in range(repeat):  # alternating, so that the load of other processes weighs on all alike
        for name, v in variants.items():
            times[name].append(best(lambda v=v: _bare(v[0], x, *v[1:]), 1))
        times["predict"].append(best(lambda: predict(channels_last, maps, device="cpu", scale=100.0), 1))
    conv_s = min(_conv_seconds(channels_last, x) for _ in range(repeat))
    before = _before_seconds(preset, size, repeat)
    median = {name: float(np.median(t)) for name, t in times.items()}
    peer = median["nchw_fp32"]
    ours = median["channels_last_fp32"]
    gflops = {name: flops / t / 1e9 for name, t in median.items()}
    return {
        "bench": "rdn_speed.cpu", "preset": preset, "size": f"1 map {size}x{size}, scale 2",
        "parameters": nchw.n_parameters, "gflop_per_lr_mpix": round(flops / maps.size * 1e6 / 1e9, 1),
        "ours_s": round(ours, 3), "peer": "bare network as before (NCHW, fp32)",
        "peer_s": round(peer, 3), "ratio": round(peer / ours, 3),
        "ratio_meaning": "throughput of the network as predict now runs it on the CPU over the earlier bare network, "
                         "same process",
        "median_s": {k: round(v, 3) for k, v in median.items()},
        "speedup_over_nchw_fp32": {k: round(peer / v, 3) for k, v in median.items()},
        "gflop_per_s": {k: round(v, 1) for k, v in gflops.items()},
        "fraction_of_measured_peak": {
            k: round(v / peaks["bf16" if k.endswith("bf16") else "fp32"], 3) for k, v in gflops.items() if k in variants
        },
        "max_error_over_range": {k: float(f"{v:.3g}") for k, v in errors.items()},
        "predict_keeps": round(ours / median["predict"], 3),
        "conv_only_s": round(conv_s, 3), "ceiling_ratio": round(peer / conv_s, 3),
        "before_s": round(float(np.median(before)), 3),
        "ratio_vs_before": round(float(np.median(before)) / ours, 3),
        "predict_vs_before": round(float(np.median(before)) / median["predict"], 3),
        "before_meaning": "NCHW fp32 in a child process with THP_MEM_ALLOC_ENABLE=0 (the library before), "
                          "timed after this process's repeats",
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
    parser.add_argument("--before", nargs=2, metavar=("PRESET", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.before:  # child of _before_seconds: NCHW fp32 times, one JSON list
        torch.set_num_threads(os.cpu_count() or 1)
        model, (_, x) = _model(args.before[0], torch.contiguous_format), _input(int(args.before[1]))
        _bare(model, x, torch.contiguous_format, False, True)
        print(json.dumps([best(lambda: _bare(model, x, torch.contiguous_format, False, True), 1)
                          for _ in range(args.repeat)]))
        return
    if args.device == "gpu":
        for line in _gpu_lines(args.repeat):
            print(json.dumps(line), flush=True)
        return
    torch.set_num_threads(os.cpu_count() or 1)
    peaks = {"fp32": _peak_gflops(torch.float32, args.repeat), "bf16": _peak_gflops(torch.bfloat16, args.repeat)}
    print(json.dumps({
        "bench": "rdn_speed.cpu_peak", "size": "2048² matrix product, 1x1 and 3x3 convolutions of 256 channels",
        "gflop_per_s": {k: round(v, 1) for k, v in peaks.items()}, "threads": torch.get_num_threads(),
        "thp_mem_alloc_enable": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        "note": "best of the repeats; the attainable peak the fractions refer to"}), flush=True)
    for preset, size in (("small", 512), ("paper", 128)):
        print(json.dumps(_cpu_line(preset, size, args.repeat, peaks)), flush=True)


if __name__ == "__main__":
    main()
