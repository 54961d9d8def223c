"""Multi-page TIFF element maps with a JSON or YAML sidecar for the metadata.

A TIFF holds one page per element; its sidecar (``maps.tif.json``,
``maps.json``, ``maps.yaml`` or ``maps.yml`` beside ``maps.tif``) says what
the pages are::

    elements: [Ni_K, Co_K, Mn_K, Mo_L]   # one name per page (required)
    step_nm: [50, 40]                    # (y, x) or one number (required)
    origin_nm: [0, 0]                    # position of pixel [0, 0]
    angle_deg: 12.5                      # rotation angle, for a series
    scan_mode: fly                       # step | fly
    fast_axis: x
    dwell_s: 0.05
    probe_fwhm_nm: 61.6
    units: counts

Unknown keys are refused, so a typo cannot silently drop a field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml

from xrfsr_dask.errors import IngestError, SourceNotFoundError
from xrfsr_dask.io._scan import ScanHeader, finite_or_none

__all__ = ["SIDECAR_KEYS", "find_sidecar", "tiff_header"]

SIDECAR_KEYS = {
    "elements", "step_nm", "origin_nm", "angle_deg", "scan_mode", "fast_axis",
    "dwell_s", "probe_fwhm_nm", "units",
}
_SUFFIXES = (".json", ".yaml", ".yml")


def find_sidecar(path: Path) -> Path:
    """The sidecar of a TIFF: ``<name>.tif.json`` first, then ``<stem>.json/.yaml/.yml``."""
    candidates = [path.with_name(path.name + s) for s in _SUFFIXES] + [path.with_suffix(s) for s in _SUFFIXES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise IngestError(
        f"{path}: no metadata sidecar found; looked for {[c.name for c in candidates]}. "
        f"Write one with at least 'elements' and 'step_nm' (see xrfsr_dask.io.tiff)."
    )


def _read_sidecar(path: Path) -> Mapping[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        meta = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as err:
        raise IngestError(f"{path}: sidecar is not valid {path.suffix[1:].upper()}: {err}") from err
    if not isinstance(meta, Mapping):
        raise IngestError(f"{path}: sidecar must be a mapping of keys to values; got {type(meta).__name__}.")
    unknown = sorted(set(meta) - SIDECAR_KEYS)
    if unknown:
        raise IngestError(f"{path}: unknown sidecar keys {unknown}; allowed: {sorted(SIDECAR_KEYS)}.")
    for key in ("elements", "step_nm"):
        if key not in meta:
            raise IngestError(f"{path}: sidecar has no {key!r}; it is required.")
    return meta


def _two(value: Any, key: str, path: Path) -> tuple[float, float]:
    values = [value, value] if np.ndim(value) == 0 else list(value)
    try:
        pair = (float(values[0]), float(values[1]))
    except (TypeError, ValueError, IndexError) as err:
        raise IngestError(f"{path}: sidecar {key!r} = {value!r}; expected one number or [y, x].") from err
    if len(values) != 2:
        raise IngestError(f"{path}: sidecar {key!r} = {value!r}; expected one number or [y, x].")
    return pair


def tiff_header(path: str | Path, *, sidecar: str | Path | None = None) -> ScanHeader:
    """Header of a multi-page TIFF (one page per element) and its sidecar."""
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"TIFF file not found: {path}")
    side = Path(sidecar) if sidecar is not None else find_sidecar(path)
    if not side.is_file():
        raise SourceNotFoundError(f"sidecar not found: {side}")
    meta = _read_sidecar(side)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(series.shape)
    except tifffile.TiffFileError as err:
        raise IngestError(f"{path}: not a readable TIFF ({err}).") from err
    elements = meta["elements"]
    if isinstance(elements, str) or not isinstance(elements, Sequence):
        raise IngestError(f"{side}: 'elements' must be a list of names; got {elements!r}.")
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[0] != len(elements):
        raise IngestError(
            f"{path}: TIFF has shape {shape} (pages, y, x) but the sidecar names "
            f"{len(elements)} elements; give one name per page."
        )

    def load(indices: Sequence[int]) -> np.ndarray:
        data = tifffile.imread(path)
        return data.reshape(shape)[list(indices)]

    return ScanHeader(
        path=str(path),
        format="tiff",
        channels=tuple(str(e) for e in elements),
        shape=(int(shape[1]), int(shape[2])),
        step_nm=_two(meta["step_nm"], "step_nm", side),
        origin_nm=_two(meta.get("origin_nm", 0.0), "origin_nm", side),
        load=load,
        angle_deg=None if meta.get("angle_deg") is None else float(meta["angle_deg"]),
        scan_mode=meta.get("scan_mode", "step"),
        fast_axis=meta.get("fast_axis", "x"),
        dwell_s=finite_or_none(meta.get("dwell_s")),
        probe_fwhm_nm=finite_or_none(meta.get("probe_fwhm_nm")),
        units=str(meta.get("units", "counts")),
    )
