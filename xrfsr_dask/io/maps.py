"""MAPS / XRF-Maps HDF5 files (APS; ``*.h5``, ``*.h50`` ...).

Two layouts are read, as XRF-Maps writes them. The version-10 layout::

    MAPS/XRF_Analyzed/<Fitted|NNLS|ROI>/Counts_Per_Sec   (n_channels, ny, nx)
    MAPS/XRF_Analyzed/<Fitted|NNLS|ROI>/Channel_Names    (n_channels,)
    MAPS/Scalers/Values, MAPS/Scalers/Names              (n_scalers, ny, nx)
    MAPS/Scan/x_axis, MAPS/Scan/y_axis                   (nx,), (ny,) or (ny, nx)
    MAPS/Scan/theta                                      rotation angle (deg)
    MAPS/Scan/Extra_PVs/Names, .../Values                EPICS PVs (strings)

and the version-9 layout::

    MAPS/XRF_fits | MAPS/XRF_roi_plus | MAPS/XRF_roi     (n_channels, ny, nx)
    MAPS/channel_names                                   (n_channels,)
    MAPS/scalers, MAPS/scaler_names                      (n_scalers, ny, nx)
    MAPS/x_axis, MAPS/y_axis                             (nx,), (ny,)
    MAPS/extra_pvs                                       (4, n): name, value, ...

``analysis="auto"`` takes the first present of fitted, NNLS, ROI. Channel
names are bare symbols for K lines (``"Fe"``) and ``Symbol_Line`` otherwise
(``"Pb_L"``). Axis positions are motor positions in ``position_units``.

The rotation angle is ``MAPS/Scan/theta`` unless ``theta_pv`` names the
EPICS PV that holds it (e.g. ``"2xfm:m60.VAL"`` at 2-ID-E), which is then
looked up among the extra PVs. XRF-Maps writes ``theta = 0`` when no theta
PV was configured, so a series whose files all say 0 is refused as having
repeated angles; pass ``theta_pv`` or the angles themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from xrfsr_dask.errors import IngestError, SourceNotFoundError
from xrfsr_dask.io._scan import ScanHeader, finite_float, grid_from_positions
from xrfsr_dask.io.hdf5 import (
    channel_names,
    dataset,
    has,
    layout_error,
    nm_per_unit,
    open_hdf5,
    read_names,
    read_planes,
    require,
)

__all__ = ["DEFAULT_POSITION_UNITS", "maps_header"]

Analysis = Literal["auto", "fitted", "nnls", "roi"]
# XRF-Maps copies the scan's motor positions (MDA positioners), which are in
# millimetres on the APS microprobes.
DEFAULT_POSITION_UNITS = "mm"
_V10 = {"fitted": "Fitted", "nnls": "NNLS", "roi": "ROI"}
_V9 = {"fitted": "XRF_fits", "nnls": "XRF_roi_plus", "roi": "XRF_roi"}


def _layout(f: h5py.File, analysis: Analysis, path: Path) -> dict[str, str]:
    """Dataset keys of the counts, names, scalers and axes for this file."""
    order = ["fitted", "nnls", "roi"] if analysis == "auto" else [analysis]
    if analysis not in ("auto", *_V10):
        raise IngestError(f"analysis={analysis!r}; expected 'auto', 'fitted', 'nnls' or 'roi'.")
    for name in order:
        v10 = f"MAPS/XRF_Analyzed/{_V10[name]}"
        if has(f, f"{v10}/Counts_Per_Sec"):
            return {
                "counts": f"{v10}/Counts_Per_Sec", "names": f"{v10}/Channel_Names",
                "scalers": "MAPS/Scalers/Values", "scaler_names": "MAPS/Scalers/Names",
                "x": "MAPS/Scan/x_axis", "y": "MAPS/Scan/y_axis", "theta": "MAPS/Scan/theta",
                "pvs": "MAPS/Scan/Extra_PVs", "units": "counts/s",
            }
        if has(f, f"MAPS/{_V9[name]}"):
            return {
                "counts": f"MAPS/{_V9[name]}", "names": "MAPS/channel_names",
                "scalers": "MAPS/scalers", "scaler_names": "MAPS/scaler_names",
                "x": "MAPS/x_axis", "y": "MAPS/y_axis", "theta": "",
                "pvs": "MAPS/extra_pvs", "units": "counts",
            }
    looked = [k for n in order for k in (f"MAPS/XRF_Analyzed/{_V10[n]}/Counts_Per_Sec", f"MAPS/{_V9[n]}")]
    raise layout_error(f, path, looked, looked)


def _pv_value(f: h5py.File, key: str, pv: str, path: Path) -> float:
    """Value of the EPICS PV ``pv`` among the file's extra PVs."""
    require(f, path, key)
    if isinstance(f[key], h5py.Group):
        require(f, path, f"{key}/Names", f"{key}/Values")
        names = read_names(f, path, f"{key}/Names")
        values = read_names(f, path, f"{key}/Values")
    else:
        table = read_names(f, path, key)
        shape = f[key].shape
        if len(shape) != 2 or shape[0] < 2:
            raise IngestError(
                f"{path}: {key} has shape {shape}; expected a table (>= 2, n_pvs) whose rows 0 and 1 "
                "hold the PV names and values. Pass the angles yourself (angles=[...]) instead of theta_pv."
            )
        names, values = table[: shape[1]], table[shape[1]: 2 * shape[1]]
    if len(names) != len(values):
        raise IngestError(
            f"{path}: {key} has {len(names)} PV names but {len(values)} values; expected one value per "
            "name. Pass the angles yourself (angles=[...]) instead of theta_pv."
        )
    if pv not in names:
        raise IngestError(f"{path}: theta PV {pv!r} is not among the {len(names)} extra PVs in {key}.")
    return finite_float(values[names.index(pv)], str(path), f"PV {pv!r} in {key}",
                        "Pass the angles yourself (angles=[...]) or another theta_pv.")


def _axis(f: h5py.File, key: str, shape: tuple[int, int], axis: int, path: Path) -> np.ndarray:
    """Positions from a 1-D or 2-D dataset, broadcastable to the map ``shape``."""
    values = np.asarray(dataset(f, path, key, "numbers")[()], dtype=np.float64)
    if values.ndim == 2 and values.shape == shape:
        return values
    values = values.ravel()
    if values.size != shape[axis]:
        raise IngestError(
            f"{path}: {key} has {values.size} positions but the maps have {shape[axis]} "
            f"along {'y' if axis == 0 else 'x'} (maps are {shape[0]} x {shape[1]})."
        )
    return values[:, None] if axis == 0 else values[None, :]


def maps_header(
    path: str | Path,
    *,
    analysis: Analysis = "auto",
    position_units: str = DEFAULT_POSITION_UNITS,
    theta_pv: str | None = None,
) -> ScanHeader:
    """Header of a MAPS / XRF-Maps HDF5 file (see the module docstring).

    Parameters
    ----------
    path
        The HDF5 file.
    analysis
        Which maps to read: ``"fitted"``, ``"nnls"``, ``"roi"`` or
        ``"auto"`` (the first present, in that order).
    position_units
        Units of ``x_axis``/``y_axis``: ``"mm"`` (default), ``"um"`` or ``"nm"``.
    theta_pv
        EPICS PV holding the rotation angle in degrees (e.g. ``"2xfm:m60.VAL"``).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"MAPS file not found: {path}")
    scale = nm_per_unit(position_units)
    with open_hdf5(path) as f:
        keys = _layout(f, analysis, path)
        require(f, path, keys["counts"], keys["names"], keys["x"], keys["y"])
        counts = dataset(f, path, keys["counts"], "counts")
        if counts.ndim != 3:
            raise IngestError(f"{path}: {keys['counts']} has shape {counts.shape}; expected (n_channels, ny, nx).")
        n_channels, ny, nx = (int(n) for n in counts.shape)
        channels = channel_names(f, path, keys["names"])
        if len(channels) != n_channels:
            raise IngestError(
                f"{path}: {keys['counts']} has {n_channels} maps but {keys['names']} has {len(channels)} names."
            )
        y_axis = _axis(f, keys["y"], (ny, nx), 0, path)
        x_axis = _axis(f, keys["x"], (ny, nx), 1, path)
        y0, dy, flip_y = grid_from_positions(y_axis, 0, scale, str(path), "y")
        x0, dx, flip_x = grid_from_positions(x_axis, 1, scale, str(path), "x")
        scalers: tuple[str, ...] = ()
        if has(f, keys["scalers"]) and has(f, keys["scaler_names"]):
            scalers = read_names(f, path, keys["scaler_names"])
        if theta_pv is not None:
            angle: float | None = _pv_value(f, keys["pvs"], theta_pv, path)
        elif keys["theta"] and has(f, keys["theta"]):
            theta = np.ravel(dataset(f, path, keys["theta"], "numbers")[()])[:1]  # the first, as written
            angle = finite_float(theta, str(path), keys["theta"],
                                 "Pass angles=[...] (xrfsr ingest --angles) or theta_pv=... instead.")
        else:
            angle = None

    def load(indices: Sequence[int]) -> np.ndarray:
        return read_planes(path, keys["counts"], indices)

    def load_scaler(name: str) -> np.ndarray:
        with open_hdf5(path) as f:
            values = dataset(f, path, keys["scalers"], "counts")
            if values.shape != (len(scalers), ny, nx):
                raise IngestError(
                    f"{path}: {keys['scalers']} has shape {values.shape}; expected ({len(scalers)}, {ny}, {nx}): "
                    f"one map per name in {keys['scaler_names']} {list(scalers)}."
                )
            return values[scalers.index(name)]

    return ScanHeader(
        path=str(path),
        format="maps",
        channels=channels,
        shape=(ny, nx),
        step_nm=(dy, dx),
        origin_nm=(y0, x0),
        flip=(flip_y, flip_x),
        load=load,
        scalers=scalers,
        load_scaler=load_scaler,
        angle_deg=angle,
        units=keys["units"],
    )
