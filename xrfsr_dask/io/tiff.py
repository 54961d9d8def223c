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
import math
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
import yaml

from xrfsr_dask.errors import IngestError, SourceNotFoundError
from xrfsr_dask.io._scan import ScanHeader, distinct_names, finite_float
from xrfsr_dask.schema import emission_lines

__all__ = ["SIDECAR_KEYS", "find_sidecar", "tiff_header"]

SIDECAR_KEYS = {
    "elements", "step_nm", "origin_nm", "angle_deg", "scan_mode", "fast_axis",
    "dwell_s", "probe_fwhm_nm", "units",
}
_SUFFIXES = (".json", ".yaml", ".yml")
# What tifffile raises on a file it cannot parse: a short or cut header,
# IFDs past the end of a truncated file, a file with no pages.
_TIFF_ERRORS = (tifffile.TiffFileError, ValueError, IndexError, struct.error)


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
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError, RecursionError) as err:
        raise IngestError(f"{path}: sidecar is not valid {path.suffix[1:].upper()}: {err}") from err
    if not isinstance(meta, Mapping):
        raise IngestError(f"{path}: sidecar must be a mapping of keys to values; got {type(meta).__name__}.")
    unknown = sorted(set(meta) - SIDECAR_KEYS, key=repr)
    if unknown:
        raise IngestError(f"{path}: unknown sidecar keys {unknown}; allowed: {sorted(SIDECAR_KEYS)}.")
    for key in ("elements", "step_nm"):
        if key not in meta:
            raise IngestError(f"{path}: sidecar has no {key!r}; it is required.")
    return meta


def _two(value: Any, key: str, path: Path, *, positive: bool = False) -> tuple[float, float]:
    """One number or ``[y, x]`` from the sidecar, finite (and positive for a step)."""
    expected = f"expected one {'positive ' if positive else ''}number or [y, x]"
    try:
        values = [value, value] if np.ndim(value) == 0 else list(value)
        pair = (float(values[0]), float(values[1]))
    except (TypeError, ValueError, IndexError, OverflowError) as err:
        raise IngestError(f"{path}: sidecar {key!r} = {value!r}; {expected}.") from err
    if (len(values) != 2 or any(isinstance(v, bool) for v in values)
            or not all(math.isfinite(v) and (v > 0 or not positive) for v in pair)):
        raise IngestError(f"{path}: sidecar {key!r} = {value!r}; {expected}" + (" in nm." if positive else "."))
    return pair


def _names(value: Any, path: Path) -> tuple[str, ...]:
    """The sidecar's ``elements``: a list of distinct, non-empty names."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise IngestError(f"{path}: 'elements' must be a list of names; got {value!r}.")
    names = distinct_names(value, f"{path}: 'elements'",
                           "Give each element's name as text (quote names that YAML reads as numbers or booleans).")
    for name in names:
        lines = emission_lines(name)
        if len(lines) > 1:
            choices = ", ".join(f"{name}_{line} ({kev:g} keV)" for line, kev in lines.items())
            raise IngestError(
                f"{path}: element {name!r} names no emission line, and {name} has {len(lines)} in the XRF "
                f"range: {choices}. Write the one the map shows, e.g. '{name}_{next(iter(lines))}'."
            )
    return names


def _positive_or_none(meta: Mapping[str, Any], key: str, path: Path) -> float | None:
    value = meta.get(key)
    if value is None:
        return None
    number = finite_float(value, str(path), f"sidecar {key!r}", "Give a positive number, or leave the key out.")
    if number <= 0:
        raise IngestError(f"{path}: sidecar {key!r} = {value!r}; expected a positive number, or leave the key out.")
    return number


def tiff_header(path: str | Path, *, sidecar: str | Path | None = None) -> ScanHeader:
    """Header of a multi-page TIFF (one page per element) and its sidecar."""
    path = Path(path)
    if not path.is_file():
        raise SourceNotFoundError(f"TIFF file not found: {path}")
    side = Path(sidecar) if sidecar is not None else find_sidecar(path)
    if not side.is_file():
        raise SourceNotFoundError(f"sidecar not found: {side}")
    meta = _read_sidecar(side)
    elements = _names(meta["elements"], side)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            end = max((o + n for page in tif.pages for o, n in zip(page.dataoffsets, page.databytecounts, strict=True)),
                      default=0)
    except _TIFF_ERRORS as err:
        raise IngestError(f"{path}: not a readable TIFF ({err}).") from err
    if end > path.stat().st_size:
        raise IngestError(
            f"{path}: TIFF is truncated: its pages need {end} bytes but the file has {path.stat().st_size}. "
            "Copy it again or re-export it."
        )
    if dtype is None or dtype.kind not in "biuf":
        raise IngestError(f"{path}: TIFF pages have dtype {dtype}; expected real numbers (counts).")
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) != 3 or shape[0] != len(elements):
        raise IngestError(
            f"{path}: TIFF has shape {shape} (pages, y, x) but the sidecar names "
            f"{len(elements)} elements; give one name per page."
        )

    def load(indices: Sequence[int]) -> np.ndarray:
        try:
            data = tifffile.imread(path)
        except _TIFF_ERRORS as err:
            raise IngestError(f"{path}: cannot read the TIFF pages ({err}); copy it again or re-export it.") from err
        return data.reshape(shape)[list(indices)]

    angle = meta.get("angle_deg")
    units = meta.get("units", "counts")
    if not isinstance(units, str):
        raise IngestError(f"{side}: sidecar 'units' = {units!r}; expected text such as 'counts'.")
    return ScanHeader(
        path=str(path),
        format="tiff",
        channels=elements,
        shape=(int(shape[1]), int(shape[2])),
        step_nm=_two(meta["step_nm"], "step_nm", side, positive=True),
        origin_nm=_two(meta.get("origin_nm", 0.0), "origin_nm", side),
        load=load,
        angle_deg=None if angle is None else finite_float(
            angle, str(side), "sidecar 'angle_deg'", "Give the rotation angle in degrees, or leave the key out."),
        scan_mode=meta.get("scan_mode", "step"),  # checked by the data model, which names the file
        fast_axis=meta.get("fast_axis", "x"),
        dwell_s=_positive_or_none(meta, "dwell_s", side),
        probe_fwhm_nm=_positive_or_none(meta, "probe_fwhm_nm", side),
        units=units,
    )
