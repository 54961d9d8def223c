"""Small helpers shared by the HDF5 readers (PyXRF, MAPS).

Beamline files are checked before their values are used: a key that holds a
group where a dataset belongs, text where numbers belong (or the reverse),
a truncated file or undecodable names are refused with an
:class:`~xrfsr_dask.errors.IngestError` naming the file and the key, never
left to fail inside h5py or NumPy.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from xrfsr_dask.errors import IngestError
from xrfsr_dask.io._scan import distinct_names

__all__ = [
    "channel_names",
    "dataset",
    "decode_names",
    "has",
    "layout_error",
    "nm_per_unit",
    "open_hdf5",
    "read_names",
    "read_planes",
    "require",
]

_NM_PER_UNIT = {"nm": 1.0, "um": 1e3, "µm": 1e3, "micron": 1e3, "mm": 1e6}
# Dtype kinds accepted per use: counts may be boolean (cast to 0/1 like the
# schema does), positions and angles must be real numbers.
_KINDS = {"counts": ("biuf", "real numbers"), "numbers": ("iuf", "real numbers")}


def nm_per_unit(units: str) -> float:
    """Nanometres per position unit (``"nm"``, ``"um"``, ``"mm"``)."""
    try:
        return _NM_PER_UNIT[units]
    except KeyError:
        raise IngestError(
            f"position_units={units!r}; expected one of {sorted(_NM_PER_UNIT)}."
        ) from None


@contextlib.contextmanager
def open_hdf5(path: Path) -> Iterator[h5py.File]:
    """Open ``path`` read-only; a file HDF5 cannot open is an :class:`IngestError` naming it."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:  # h5py's error for a bad signature, a truncated file, a lock
        raise IngestError(
            f"{path}: cannot be opened as HDF5 ({err}). The file is truncated, still being "
            "written, or not HDF5; copy it again from the beamline or re-export it."
        ) from err
    with f:
        yield f


def decode_names(values: np.ndarray) -> tuple[str, ...]:
    """HDF5 string arrays (bytes or str, fixed or variable length) as ``str``.

    Raises :class:`UnicodeDecodeError` on bytes that are not UTF-8;
    :func:`read_names` turns that into an error naming the key.
    """
    return tuple(
        (v.decode("utf-8") if isinstance(v, bytes) else str(v)).strip()
        for v in np.asarray(values).ravel()
    )


def _is_text(dtype: np.dtype) -> bool:
    return dtype.kind in "SU" or h5py.check_string_dtype(dtype) is not None


def dataset(
    f: h5py.File, path: Path, key: str, expect: Literal["counts", "numbers", "text"]
) -> h5py.Dataset:
    """The dataset at ``key``, refused unless it holds ``expect`` (numbers, counts or text).

    The key must be present (see :func:`require`).
    """
    node = f[key]
    if not isinstance(node, h5py.Dataset):
        raise IngestError(
            f"{path}: {key} is an HDF5 {type(node).__name__.lower()}, not a dataset; the layout "
            "puts an array there. Re-export the file with the beamline's software."
        )
    if expect == "text":
        if not _is_text(node.dtype):
            raise IngestError(
                f"{path}: {key} has dtype {node.dtype}; expected strings (names). Re-export the file "
                "with the beamline's software."
            )
        return node
    kinds, wanted = _KINDS[expect]
    if node.dtype.kind not in kinds:
        raise IngestError(
            f"{path}: {key} has dtype {node.dtype}; expected {wanted}"
            + (" (complex values are not counts: store abs(x) ** 2)" if expect == "counts" and node.dtype.kind == "c"
               else "")
            + ". Re-export the file with the beamline's software."
        )
    return node


def read_names(f: h5py.File, path: Path, key: str) -> tuple[str, ...]:
    """The strings at ``key`` (a dataset of names), decoded as UTF-8."""
    node = dataset(f, path, key, "text")
    try:
        return decode_names(node[()])
    except UnicodeDecodeError as err:
        raise IngestError(
            f"{path}: {key} holds a name that is not UTF-8 text ({err.object[:40]!r}); "
            "fix the names in the file (h5py: f[key][...] = new names) or re-export it."
        ) from err


def channel_names(f: h5py.File, path: Path, key: str) -> tuple[str, ...]:
    """Channel names at ``key``, refused when one is empty or repeated."""
    return distinct_names(read_names(f, path, key), f"{path}: {key}", "Fix the names in the file or re-export it.")


def read_planes(path: Path, key: str, indices: Sequence[int]) -> np.ndarray:
    """Maps ``indices`` of the ``(n_channels, ny, nx)`` dataset ``key``, stacked."""
    with open_hdf5(path) as f:
        data = f[key]
        try:
            return np.stack([data[i] for i in indices])
        except OSError as err:  # h5py's error for data it cannot read back (damaged chunks)
            raise IngestError(
                f"{path}: cannot read {key} ({err}); the file is damaged. Copy it again from the "
                "beamline or re-export it."
            ) from err


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


def has(f: h5py.File, key: str) -> bool:
    """Whether ``key`` names an object that opens: not missing, not a dangling or looping link."""
    try:
        return key in f and f.get(key) is not None
    except RuntimeError:  # h5py's error when link traversal fails (a soft-link loop)
        return False


def require(f: h5py.File, path: Path, *keys: str) -> None:
    """Raise :func:`layout_error` unless every key is in the file (and opens)."""
    missing = [k for k in keys if not has(f, k)]
    if missing:
        raise layout_error(f, path, list(keys), missing)
