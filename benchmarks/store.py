"""Store throughput: xrfsr_dask.save / open_xrf beside plain xarray zarr I/O.

The peer is the floor: ``Dataset.to_zarr`` / ``open_zarr(...).load()`` on
the same data with the same chunks and codecs, without our completeness
marker, per-chunk resume bookkeeping and validation. Prints one JSON line
per measurement; ``ratio = peer_s / ours_s`` (1.0 = no overhead).

    python benchmarks/store.py [--size 512] [--angles 16] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

import dask.array as dsa
import numpy as np
import xarray as xr
from _timing import best
from zarr.codecs import Crc32cCodec, ZstdCodec

from xrfsr_dask import open_xrf, save, xrf_maps
from xrfsr_dask.io.store import ZSTD_LEVEL


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--angles", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    counts = rng.poisson(50.0, size=(4, args.angles, args.size, args.size)).astype(np.float32)
    series = xrf_maps(counts, elements=["Ni_K", "Co_K", "Mn_K", "Mo_L"], step_nm=50,
                      angles=np.linspace(0, 180, args.angles, endpoint=False))
    chunks = {"element": 1, "angle": 1, "y": 256, "x": 256}
    encoding = {"counts": {"chunks": tuple(chunks.values()),
                           "compressors": (ZstdCodec(level=ZSTD_LEVEL), Crc32cCodec())}}
    peer_ds = series.to_dataset()
    peer_ds["counts"] = (series.dims, dsa.from_array(counts, chunks=tuple(chunks.values())), series.attrs)
    size = f"{series.shape} float32, {counts.nbytes / 2**20:.0f} MiB"
    device = f"CPU {platform.processor() or platform.machine()}"

    with tempfile.TemporaryDirectory() as tmp:
        ours_url, peer_url = Path(tmp, "ours.zarr"), Path(tmp, "peer.zarr")

        def ours_write():
            shutil.rmtree(ours_url, ignore_errors=True)
            save(series, str(ours_url), chunks=chunks, progress=False)

        def peer_write():
            shutil.rmtree(peer_url, ignore_errors=True)
            peer_ds.to_zarr(peer_url, mode="w", zarr_format=3, consolidated=False, encoding=encoding,
                            write_empty_chunks=True)

        for bench, ours, peer in [
            ("store.write", ours_write, peer_write),
            ("store.read", lambda: open_xrf(str(ours_url)).load(),
             lambda: xr.open_zarr(peer_url, consolidated=False, chunks={}).load()),
        ]:
            ours_s, peer_s = best(ours, args.repeat), best(peer, args.repeat)
            print(json.dumps({"bench": bench, "size": size, "ours_s": round(ours_s, 4), "peer": "xarray.zarr",
                              "peer_s": round(peer_s, 4), "ratio": round(peer_s / ours_s, 3), "device": device}))


if __name__ == "__main__":
    main()
