"""OME-Zarr export: throughput beside a plain save and beside ome-zarr-py, and time to first picture.

Three measurements, one JSON line each (``ratio = peer_s / ours_s``):

- ``ome_export.vs_save``: ``to_ome_zarr`` (every level, default
  chunks) of a ``SIZE`` x ``SIZE`` x 4 map read from a store, beside
  ``save`` of the same data to a plain store (level 0 only). The ratio is
  the fraction of a plain save's throughput the export keeps; it writes
  4/3 of the data (the levels add 1/4 + 1/16 + ...).
- ``ome_export.vs_ome_zarr_py``: the same export beside
  ``ome_zarr.writer.write_image`` (ome-zarr-py, NGFF 0.5, the same levels,
  chunks and codecs, ``local_mean`` downsampling, no resume or marker).
- ``ome_export.first_picture``: a ``VIEW`` x ``VIEW`` x 4 map exported to a
  local OME-Zarr; in a fresh process, from opening the store to a drawn
  figure of the four elements at the level ``level_for_view`` picks
  for a 1024-pixel view (``plot_slices``, rendered to PNG as a notebook
  shows it). The peer is the same figure from level 0 alone
  (what a store without a pyramid offers: every 16th pixel, which reads
  every chunk). Page cache dropped before each when the system allows it
  (``cold``), otherwise warm.

    python benchmarks/ome_export.py [--size 8192] [--view 16384] [--repeat 1] [--parts throughput,picture]
                                    [--view-store DIR]   # keep the VIEW map's export for later runs

(Not named ome_zarr.py: run from benchmarks/, that name would hide the ome_zarr package.)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import zarr
from _timing import best
from zarr.codecs import Crc32cCodec, ZstdCodec

from xrfsr_dask import open_xrf, save
from xrfsr_dask.io import level_for_view, open_pyramid, to_ome_zarr
from xrfsr_dask.io.store import ZSTD_LEVEL
from xrfsr_dask.plot import plot_slices
from xrfsr_dask.testing.large import large_maps

SCREEN_PX = 1024


def _drop_caches() -> bool:
    """Drop the page cache (root on Linux); False where that is not allowed."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def _picture(url: str, mode: str) -> dict:
    """Open, read and draw (a PNG, as a notebook shows it); runs in a fresh process, imports done first."""
    start = time.perf_counter()
    pyramid = open_pyramid(url)
    if mode == "pyramid":
        level = level_for_view(pyramid, screen_px=SCREEN_PX)
        view = pyramid[level]
    else:  # level 0 only, as from a store without a pyramid
        level = 0
        stride = max(1, pyramid[0].sizes["x"] // SCREEN_PX)
        view = pyramid[0].isel(y=slice(None, None, stride), x=slice(None, None, stride))
    opened = time.perf_counter()
    view = view.compute()
    read = time.perf_counter()
    plot_slices(view, title=f"{SCREEN_PX}-pixel view").savefig(io.BytesIO(), format="png")
    elapsed = time.perf_counter() - start
    parts = {"open": opened - start, "read": read - opened, "draw": start + elapsed - read}
    return {"seconds": elapsed, "level": level, "shape": list(view.shape),
            "parts": {k: round(v, 3) for k, v in parts.items()}}


def _picture_in_fresh_process(url: str, mode: str) -> tuple[dict, bool]:
    cold = _drop_caches()
    out = subprocess.run([sys.executable, __file__, "--picture", url, "--mode", mode], check=True,
                         capture_output=True, text=True, env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    return json.loads(out.stdout.strip().splitlines()[-1]), cold


def _ome_zarr_py_write(data, url: Path, levels: int) -> None:
    from ome_zarr.scale import Methods
    from ome_zarr.writer import write_image

    group = zarr.open_group(str(url), mode="w", zarr_format=3)
    write_image(
        data.data, group, scale_factors=[2**k for k in range(1, levels)], method=Methods.LOCAL_MEAN,
        axes=[{"name": "c", "type": "channel"}, {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        axes_units={"y": "nanometer", "x": "nanometer"},
        scale={"c": 1.0, "y": data.attrs["step_nm"][0], "x": data.attrs["step_nm"][1]},
        storage_options={"chunks": (1, 256, 256), "compressors": (ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec())},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="map side for the throughput comparisons")
    parser.add_argument("--view", type=int, default=16384, help="map side for the time to first picture")
    parser.add_argument("--repeat", type=int, default=1, help="best of N: exports, and pictures (each cold)")
    parser.add_argument("--parts", default="throughput,picture", help="which measurements to run")
    parser.add_argument("--view-store", help="keep the VIEW map's export here and reuse it when it is complete")
    parser.add_argument("--picture", help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="pyramid", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.picture:
        print(json.dumps(_picture(args.picture, args.mode)))
        return

    device = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        if "throughput" in parts:
            _throughput(args.size, args.repeat, Path(tmp), device)
        if "picture" in parts:
            _first_picture(args.view, args.repeat, Path(args.view_store or Path(tmp, "view.ome.zarr")), device)


def _throughput(side: int, repeat: int, tmp: Path, device: str) -> None:
    src = tmp / "src.zarr"
    save(large_maps((side, side), chunk=1024), str(src), progress=False)
    data = open_xrf(str(src))
    size = f"{data.shape} float32, {data.size * 4 / 2**30:.2f} GiB"
    plain, ome, peer = tmp / "plain.zarr", tmp / "ome.zarr", tmp / "peer.ome.zarr"

    def run_save():
        shutil.rmtree(plain, ignore_errors=True)
        save(data, str(plain), progress=False)

    def run_export():
        shutil.rmtree(ome, ignore_errors=True)
        to_ome_zarr(data, str(ome), progress=False)

    save_s = best(run_save, repeat)
    export_s = best(run_export, repeat)
    levels = len(open_pyramid(str(ome)))
    peer_s = best(lambda: _ome_zarr_py_write(data, peer, levels), repeat)
    gib = data.size * 4 / 2**30
    print(json.dumps({"bench": "ome_export.vs_save", "size": size, "levels": levels, "ours_s": round(export_s, 2),
                      "peer": "xrfsr_dask.save (plain store, level 0 only)", "peer_s": round(save_s, 2),
                      "ratio": round(save_s / export_s, 3), "ours_gib_per_s": round(gib / export_s, 4),
                      "repeat": repeat, "load_1min": round(os.getloadavg()[0], 1), "device": device}), flush=True)
    print(json.dumps({"bench": "ome_export.vs_ome_zarr_py", "size": size, "levels": levels,
                      "ours_s": round(export_s, 2), "peer": "ome-zarr-py write_image (local_mean)",
                      "peer_s": round(peer_s, 2), "ratio": round(peer_s / export_s, 3), "repeat": repeat,
                      "load_1min": round(os.getloadavg()[0], 1), "device": device}),
          flush=True)
    for path in (src, plain, ome, peer):
        shutil.rmtree(path)


def _first_picture(side: int, repeat: int, view: Path, device: str) -> None:
    export_s = None
    if not (view.exists() and zarr.open_group(str(view), mode="r").attrs["xrfsr_dask"].get("complete")):
        shutil.rmtree(view, ignore_errors=True)
        start = time.perf_counter()
        to_ome_zarr(large_maps((side, side), chunk=1024), str(view), progress=False)
        export_s = round(time.perf_counter() - start, 1)
    runs = [_picture_in_fresh_process(str(view), "pyramid") for _ in range(repeat)]
    ours = min((r for r, _ in runs), key=lambda r: r["seconds"])
    peer, peer_cold = _picture_in_fresh_process(str(view), "level0")
    view_size = f"(4, {side}, {side}) float32, {4 * side**2 * 4 / 2**30:.2f} GiB"
    print(json.dumps({"bench": "ome_export.first_picture", "size": view_size, "screen_px": SCREEN_PX,
                      "level": ours["level"], "picture_shape": ours["shape"],
                      "cold_cache": all(cold for _, cold in runs) and peer_cold,
                      "ours_s": round(ours["seconds"], 3), "ours_runs_s": [round(r["seconds"], 3) for r, _ in runs],
                      "ours_parts_s": ours["parts"], "peer": f"level 0 only, strided by {max(1, side // SCREEN_PX)}",
                      "peer_s": round(peer["seconds"], 3), "ratio": round(peer["seconds"] / ours["seconds"], 1),
                      "export_s": export_s, "load_1min": round(os.getloadavg()[0], 1), "device": device}), flush=True)


if __name__ == "__main__":
    main()
