"""Wall and CPU time of ``xrfsr demo`` (the README's ``make demo`` job) on this machine, with its load.

Runs the demo as a user does, in a child process (``xrfsr demo --out TMP --overwrite`` plus any
arguments given here), and records the wall time, the child's CPU time (user + system, its
workers included), the number of stages the demo timed (``seconds`` in its ``results.json``) and
the load average before and after, so that a time measured beside other work says so. The README
and docs/demo.md quote the latest line of ``benchmarks/results/demo-cpu.jsonl``.

    python benchmarks/demo.py >> benchmarks/results/demo-cpu.jsonl
    python benchmarks/demo.py --size 128 >> benchmarks/results/demo-cpu.jsonl
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    extra = sys.argv[1:]
    xrfsr = Path(sys.executable).with_name("xrfsr")
    with tempfile.TemporaryDirectory(prefix="xrfsr-demo-bench-") as folder:
        out = Path(folder) / "demo-output"
        load_before = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([str(xrfsr), "demo", "--out", str(out), "--overwrite", *extra], check=True,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        results = json.loads((out / "results.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({
        "bench": "demo", "arguments": extra, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
        "stages": len(results.get("seconds", {})), "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
        "device": f"cpu ({platform.processor() or platform.machine()})",
    }), flush=True)


if __name__ == "__main__":
    main()
