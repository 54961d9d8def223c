"""Small helpers shared by the HDF5 readers (PyXRF, MAPS)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from xrfsr_dask.errors import IngestError

__all__ = ["decode_names", "layout_error", "nm_per_unit", "require"]

_NM_PER_UNIT = {"nm": 1.0, "um": 1e3, "µm": 1e3, "micron": 1e3, "mm": 1e6}


def nm_per_unit(units: str) -> float:
    """Nanometres per position unit (``"nm"``, ``"um"``, ``"mm"``)."""
    try:
        return _NM_PER_UNIT[units]
    except KeyError:
        raise IngestError(
            f"position_units={units!r}; expected one of {sorted(_NM_PER_UNIT)}."
        ) from None


def decode_names(values: np.ndarray) -> tuple[str, ...]:
    """HDF5 string arrays (bytes or str, fixed or variable length) as ``str``."""
    return tuple(
        (v.decode("utf-8") if isinstance(v, bytes) else str(v)).strip()
        for v in np.asarray(values).ravel()
    )


def _all_keys(f: h5py.File) -> list[str]:
    keys: list[str] = []
    f.visit(keys.append)
    return keys


def layout_error(f: h5py.File, path: Path, looked_for: list[str], missing: list[str]) -> IngestError:
    """An :class:`IngestError` naming the keys looked for, those missing and those present."""
    found = _all_keys(f)
    shown = ", ".join(found[:40]) + (f", ... ({len(found)} in all)" if len(found) > 40 else "")
    return IngestError(
        f"{path}: not the expected layout; missing {missing}. Looked for {looked_for}; "
        f"the file has: {shown or 'nothing'}."
    )


def require(f: h5py.File, path: Path, *keys: str) -> None:
    """Raise :func:`layout_error` unless every key is in the file."""
    missing = [k for k in keys if k not in f]
    if missing:
        raise layout_error(f, path, list(keys), missing)
