"""The end-to-end demo on embedded (generated) data.

It plays a beamline session: a fly-scanned XRF tomography series of NMC-like
particles is written as PyXRF HDF5 files, one per angle (as HXN writes them,
angles in millidegrees, positions in micrometres, an i0 scaler), then
ingested into a chunked zarr v3 store with progress, normalised by i0,
enhanced chunk by chunk with the bundled RDN onto a grid twice as fine, and
described.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np

from xrfsr_dask.enhance import enhance_to_zarr
from xrfsr_dask.errors import StoreExistsError
from xrfsr_dask.io import describe, ingest
from xrfsr_dask.testing import grid_positions, particles, write_pyxrf_h5

__all__ = ["ELEMENTS", "run_demo"]

ELEMENTS = ["Ni_K", "Co_K", "Mn_K", "Mo_L"]
_SCATTER = ["compton", "elastic", "snip_bkg", "r_factor"]
STEP_UM = (0.05, 0.05)


def _write_raw(raw: Path, size: int, n_angles: int) -> list[Path]:
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2023)
    shape = (size, size)
    paths = []
    for i, theta in enumerate(np.linspace(-90.0, 90.0, n_angles, endpoint=False)):
        maps = particles(shape, len(ELEMENTS), seed=1000 + i)
        scatter = rng.poisson(5.0, size=(len(_SCATTER), *shape)).astype(np.float32)
        i0 = rng.normal(1.0e5, 2.0e3, size=shape)
        counts = rng.poisson(maps * i0[None] / 1.0e5).astype(np.float32)
        y, x = grid_positions(shape, STEP_UM, (0.0, -0.5 * size * STEP_UM[1]), jitter=0.002, seed=i)
        paths.append(write_pyxrf_h5(
            raw / f"scan2D_{10000 + i}.h5", np.concatenate([counts, scatter]), ELEMENTS + _SCATTER,
            y_pos=y, x_pos=x, scalers={"i0": i0}, theta=round(theta * 1000), theta_units="mdeg",
            dwell_s=0.01,
        ))
    return paths


def run_demo(out: Path, *, size: int = 96, n_angles: int = 36, overwrite: bool = False) -> dict[str, Any]:
    """Write raw files under ``out/raw``, ingest them into ``out/series.zarr``, enhance into ``series_hr.zarr``.

    Returns the description of the enhanced store.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise StoreExistsError(f"{out} exists and is not empty; pass --overwrite to replace the demo output.")
        shutil.rmtree(out)
    print(f"writing {n_angles} PyXRF files of {size}x{size} pixels to {out / 'raw'}")
    paths = _write_raw(out / "raw", size, n_angles)
    store = str(out / "series.zarr")
    summary = ingest(paths, store, normalize="i0", chunks={"y": 64, "x": 64}, progress=True)
    print(f"{summary.chunks_written} chunks written to {store}")
    enhanced = str(out / "series_hr.zarr")
    print(f"enhancing every projection with the bundled RDN into {enhanced}")
    summary = enhance_to_zarr(store, enhanced, progress=True)
    print(f"{summary.chunks_written} chunks written to {enhanced}")
    return describe(enhanced)
