"""Where the time of one ``predict`` call goes: torch profiler over the RDN ``paper`` preset.

The same work as ``rdn_speed.py --device gpu`` (8 maps of 512 x 512, scale 2,
batches of 4) after a warm-up, profiled once; prints the operators that take
the most device time (CUDA, or CPU with ``--device cpu``) as a table and one
JSON line with the top ones and their share. Issue 11 asks for this profile of
the slowest GPU figure; the table says whether convolutions dominate (the
network's arithmetic, as they should) or copies, casts and normalisation do.

    python benchmarks/profile_rdn.py [--precision bf16|fp32] [--device cuda|cpu] [--maps 8] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from rdn_speed import _maps
from torch.profiler import ProfilerActivity, profile

from xrfsr_dask.model import build_rdn, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--maps", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA GPU.")
    torch.manual_seed(0)
    model = build_rdn(args.preset).eval()
    maps = _maps(args.maps, args.size)

    def run() -> None:
        predict(model, maps, device=args.device, precision=args.precision, batch_size=4)
        if cuda:
            torch.cuda.synchronize()

    run()  # warm-up: CUDA context, cuDNN autotuning, weights on the device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        run()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    averages = prof.key_averages()
    print(averages.table(sort_by=key, row_limit=args.top), file=sys.stderr)
    total = sum(getattr(e, key) for e in averages)
    top = sorted(averages, key=lambda e: getattr(e, key), reverse=True)[: args.top]
    print(json.dumps({
        "bench": "profile_rdn", "preset": args.preset, "precision": args.precision,
        "size": f"{args.maps} maps {args.size}x{args.size}, scale 2",
        "device": f"GPU {torch.cuda.get_device_name(0)}" if cuda else "CPU", "torch": torch.__version__,
        "self_time_total_ms": round(total / 1e3, 2),
        "top": [{"op": e.key, "self_ms": round(getattr(e, key) / 1e3, 3), "share": round(getattr(e, key) / total, 3),
                 "calls": e.count} for e in top],
    }))


if __name__ == "__main__":
    main()
