"""Write small files in the beamline layouts the readers accept.

Used by the tests, the demo and the notebooks to make inputs in exactly the
layouts PyXRF and XRF-Maps write, since no beamline data can be fetched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import tifffile
import yaml

__all__ = ["grid_positions", "particles", "write_maps_h5", "write_pyxrf_h5", "write_tiff"]


def particles(shape: tuple[int, int], n_elements: int, *, seed: int, n_particles: int = 6) -> np.ndarray:
    """Element maps of a few round particles with element-specific shells, in counts.

    Deterministic for a seed: ``(n_elements, ny, nx)`` float32, each element
    with its own radial profile so that maps differ.
    """
    rng = np.random.default_rng(seed)
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    out = np.zeros((n_elements, ny, nx), np.float32)
    for _ in range(n_particles):
        cy, cx = rng.uniform(0.15, 0.85) * ny, rng.uniform(0.15, 0.85) * nx
        radius = rng.uniform(0.08, 0.2) * min(ny, nx)
        r = np.hypot(yy - cy, xx - cx) / radius
        for e in range(n_elements):
            shell = 0.3 + 0.7 * np.clip(1 - abs(r - 0.3 * (e + 1) / n_elements) * 2, 0, 1)
            out[e] += np.where(r < 1, 100.0 * (e + 1) * shell, 0.0).astype(np.float32)
    return out + 1.0


def grid_positions(
    shape: tuple[int, int], step: tuple[float, float], origin: tuple[float, float] = (0.0, 0.0),
    *, jitter: float = 0.0, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_pos, x_pos)`` maps ``(ny, nx)`` of a raster, with optional encoder jitter."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y = origin[0] + step[0] * np.arange(ny)[:, None] + np.zeros((1, nx))
    x = origin[1] + step[1] * np.arange(nx)[None, :] + np.zeros((ny, 1))
    if jitter:
        y = y + rng.normal(0, jitter, y.shape)
        x = x + rng.normal(0, jitter, x.shape)
    return y, x


def _names(values: Sequence[str]) -> np.ndarray:
    return np.array([v.encode() for v in values])


def write_pyxrf_h5(
    path: str | Path,
    maps: np.ndarray,
    names: Sequence[str],
    *,
    y_pos: np.ndarray,
    x_pos: np.ndarray,
    scalers: Mapping[str, np.ndarray] | None = None,
    theta: float | None = None,
    theta_units: str = "deg",
    dwell_s: float | None = None,
    scan_type: str = "FlyPlan2D",
    detector: str = "detsum",
) -> Path:
    """A PyXRF ``scan2D_*.h5`` file: ``xrfmap/<detector>/xrf_fit``, positions in µm, scalers."""
    path = Path(path)
    with h5py.File(path, "w") as f:
        det = f.create_group(f"xrfmap/{detector}")
        det.create_dataset("xrf_fit", data=np.asarray(maps, np.float32))
        det.create_dataset("xrf_fit_name", data=_names(names))
        pos = f.create_group("xrfmap/positions")
        pos.create_dataset("pos", data=np.stack([x_pos, y_pos]))
        pos.create_dataset("name", data=_names(["x_pos", "y_pos"]))
        if scalers:
            sc = f.create_group("xrfmap/scalers")
            sc.create_dataset("val", data=np.stack(list(scalers.values()), axis=-1).astype(np.float32))
            sc.create_dataset("name", data=_names(list(scalers)))
        meta = f.create_group("xrfmap/scan_metadata")
        meta.attrs["scan_instrument_id"] = "HXN"
        meta.attrs["param_type"] = scan_type
        if theta is not None:
            meta.attrs["param_theta"] = theta
            meta.attrs["param_theta_units"] = theta_units
        if dwell_s is not None:
            meta.attrs["param_dwell"] = dwell_s
    return path


def write_maps_h5(
    path: str | Path,
    maps: np.ndarray,
    names: Sequence[str],
    *,
    y_axis: np.ndarray,
    x_axis: np.ndarray,
    scalers: Mapping[str, np.ndarray] | None = None,
    theta: float | None = None,
    version: Literal[9, 10] = 10,
    analysis: Literal["fitted", "nnls", "roi"] = "fitted",
) -> Path:
    """A MAPS / XRF-Maps HDF5 file in the version-10 or version-9 layout."""
    path = Path(path)
    maps = np.asarray(maps, np.float32)
    with h5py.File(path, "w") as f:
        if version == 10:
            group = f.create_group(f"MAPS/XRF_Analyzed/{ {'fitted': 'Fitted', 'nnls': 'NNLS', 'roi': 'ROI'}[analysis]}")
            group.create_dataset("Counts_Per_Sec", data=maps)
            group.create_dataset("Channel_Names", data=_names(names))
            keys = ("MAPS/Scalers/Values", "MAPS/Scalers/Names", "MAPS/Scan/x_axis", "MAPS/Scan/y_axis",
                    "MAPS/Scan/theta")
        else:
            f.create_dataset(f"MAPS/{ {'fitted': 'XRF_fits', 'nnls': 'XRF_roi_plus', 'roi': 'XRF_roi'}[analysis]}",
                             data=maps)
            f.create_dataset("MAPS/channel_names", data=_names(names))
            keys = ("MAPS/scalers", "MAPS/scaler_names", "MAPS/x_axis", "MAPS/y_axis", "MAPS/theta")
        if scalers:
            f.create_dataset(keys[0], data=np.stack(list(scalers.values())).astype(np.float32))
            f.create_dataset(keys[1], data=_names(list(scalers)))
        f.create_dataset(keys[2], data=np.asarray(x_axis, np.float64))
        f.create_dataset(keys[3], data=np.asarray(y_axis, np.float64))
        if theta is not None:
            f.create_dataset(keys[4], data=np.float64(theta))
    return path


def write_tiff(
    path: str | Path, maps: np.ndarray, sidecar: Mapping[str, Any], *, sidecar_format: Literal["json", "yaml"] = "json"
) -> Path:
    """A multi-page TIFF (one page per element) and its ``<name>.json`` or ``<stem>.yaml`` sidecar."""
    path = Path(path)
    tifffile.imwrite(path, np.asarray(maps, np.float32), photometric="minisblack")
    if sidecar_format == "json":
        path.with_name(path.name + ".json").write_text(json.dumps(dict(sidecar)))
    else:
        path.with_suffix(".yaml").write_text(yaml.safe_dump(dict(sidecar)))
    return path
