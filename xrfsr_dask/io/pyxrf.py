"""PyXRF HDF5 files (NSLS-II; ``scan2D_<id>.h5``).

The layout read here, as PyXRF writes it:

================================  ==========================================
``xrfmap/<det>/xrf_fit``          fitted maps, ``(n_channels, ny, nx)``
``xrfmap/<det>/xrf_fit_name``     channel names (bytes), e.g. ``b"Ni_K"``
``xrfmap/positions/pos``          motor positions, ``(2, ny, nx)``
``xrfmap/positions/name``         ``[b"x_pos", b"y_pos"]``
``xrfmap/scalers/val``            scalers, ``(ny, nx, n_scalers)``
``xrfmap/scalers/name``           scaler names, e.g. ``b"i0"``
``xrfmap/scan_metadata`` (attrs)  ``param_theta`` (+ ``param_theta_units``,
                                  ``"deg"`` or ``"mdeg"``), ``param_dwell``,
                                  ``param_type`` (a fly scan when it names one)
================================  ==========================================

``<det>`` is ``detsum`` (the sum of the detector channels) unless another
group such as ``det1`` is asked for. Positions are in micrometres at HXN and
most NSLS-II beamlines; ``position_units`` overrides that.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from xrfsr_dask.errors import IngestError, SourceNotFoundError
from xrfsr_dask.io._scan import (
    ScanHeader,
    finite_float,
    finite_or_none,
    grid_from_positions,
)
from xrfsr_dask.io.hdf5 import (
    channel_names,
    dataset,
    has,
    nm_per_unit,
    open_hdf5,
    read_names,
    read_planes,
    require,
)

__all__ = ["pyxrf_header"]

_THETA_UNITS = {"deg": 1.0, "mdeg": 1e-3}


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _angle(meta: h5py.AttributeManager, path: Path) -> float | None:
    if "param_theta" not in meta:
        return None
    units = _text(meta.get("param_theta_units", "deg"))
    if units not in _THETA_UNITS:
        raise IngestError(
            f"{path}: xrfmap/scan_metadata param_theta_units = {units!r}; expected 'deg' or 'mdeg'."
        )
    theta = finite_float(meta["param_theta"], str(path), "xrfmap/scan_metadata attribute param_theta",
                         "Pass angles=[...] (xrfsr ingest --angles) to give the angles yourself.")
    return theta * _THETA_UNITS[units]


def pyxrf_header(
    path: str | Path, *, detector: str = "detsum", position_units: str = "um"
) -> ScanHeader:
    """Header of a PyXRF HDF5 file (see the module docstring for the layout).

    Parameters
    ----------
    path
        The ``.h5`` file.
    detector
        Group under ``xrfmap`` holding ``xrf_fit``: ``"detsum"`` or ``"det1"``...
    position_units
        Units of ``xrfmap/positions/pos``: ``"um"`` (default), ``"mm"`` or ``"nm"``.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"PyXRF file not found: {path}")
    scale = nm_per_unit(position_units)
    fit_key = f"xrfmap/{detector}/xrf_fit"
    names_key = f"xrfmap/{detector}/xrf_fit_name"
    with open_hdf5(path) as f:
        require(f, path, fit_key, names_key, "xrfmap/positions/pos", "xrfmap/positions/name")
        n_channels, ny, nx = _fit_shape(dataset(f, path, fit_key, "counts"), path, fit_key)
        channels = channel_names(f, path, names_key)
        if len(channels) != n_channels:
            raise IngestError(
                f"{path}: {fit_key} has {n_channels} maps but xrf_fit_name has {len(channels)} names."
            )
        pos = dataset(f, path, "xrfmap/positions/pos", "numbers")[()]
        pos_names = read_names(f, path, "xrfmap/positions/name")
        if pos.shape != (len(pos_names), ny, nx) or not {"x_pos", "y_pos"} <= set(pos_names):
            raise IngestError(
                f"{path}: xrfmap/positions/pos has shape {pos.shape} with names {pos_names}; "
                f"expected ({len(pos_names)}, {ny}, {nx}) including 'x_pos' and 'y_pos'."
            )
        y0, dy, flip_y = grid_from_positions(pos[pos_names.index("y_pos")], 0, scale, str(path), "y")
        x0, dx, flip_x = grid_from_positions(pos[pos_names.index("x_pos")], 1, scale, str(path), "x")
        scalers: tuple[str, ...] = ()
        if has(f, "xrfmap/scalers/name") and has(f, "xrfmap/scalers/val"):
            scalers = read_names(f, path, "xrfmap/scalers/name")
        meta = f["xrfmap/scan_metadata"].attrs if has(f, "xrfmap/scan_metadata") else {}
        angle = _angle(meta, path) if meta else None
        dwell = finite_or_none(meta.get("param_dwell")) if meta else None
        scan_type = _text(meta.get("param_type", "")) if meta else ""

    def load(indices: Sequence[int]) -> np.ndarray:
        return read_planes(path, fit_key, indices)

    def load_scaler(name: str) -> np.ndarray:
        key = "xrfmap/scalers/val"
        with open_hdf5(path) as f:
            values = dataset(f, path, key, "counts")
            if values.shape != (ny, nx, len(scalers)):
                raise IngestError(
                    f"{path}: {key} has shape {values.shape}; expected ({ny}, {nx}, {len(scalers)}): "
                    f"one map per name in xrfmap/scalers/name {list(scalers)}."
                )
            return values[:, :, scalers.index(name)]

    return ScanHeader(
        path=str(path),
        format="pyxrf",
        channels=channels,
        shape=(ny, nx),
        step_nm=(dy, dx),
        origin_nm=(y0, x0),
        flip=(flip_y, flip_x),
        load=load,
        scalers=scalers,
        load_scaler=load_scaler,
        angle_deg=angle,
        scan_mode="fly" if "fly" in scan_type.lower() else "step",
        dwell_s=dwell,
    )


def _fit_shape(dataset: h5py.Dataset, path: Path, key: str) -> tuple[int, int, int]:
    if dataset.ndim != 3:
        raise IngestError(f"{path}: {key} has shape {dataset.shape}; expected (n_channels, ny, nx).")
    return tuple(int(n) for n in dataset.shape)  # type: ignore[return-value]
