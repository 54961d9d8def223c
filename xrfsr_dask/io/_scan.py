"""What every format reader produces: a scan header and a way to load its maps.

A reader inspects one file cheaply (:class:`ScanHeader`: channel names, map
shape, scan grid in nm, angle) and loads selected channels on demand. The
shared code here turns headers into validated DataArrays: it selects
elements, normalises by a scaler, orients axes so positions increase,
reports non-finite counts, and stacks one file per angle into a lazy series.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import dask
import dask.array as dsa
import numpy as np
import xarray as xr

from xrfsr_dask.errors import (
    IngestError,
    NonFiniteCountsError,
    SchemaError,
    XrfsrWarning,
)
from xrfsr_dask.schema import check_nan_policy, emission_energy_kev, flux_factor, xrf_maps

__all__ = [
    "Elements",
    "NonFinite",
    "ScanHeader",
    "distinct_names",
    "finite_float",
    "finite_or_none",
    "grid_from_positions",
    "maps_from_header",
    "series_from_headers",
]

Elements = Sequence[str] | Literal["lines", "all"]
NonFinite = Literal["raise", "keep"]
"""The NaN policies (:data:`xrfsr_dask.schema.NAN_POLICIES`) a reader offers."""
# Tolerance on the step when checking that the files of a series agree.
SERIES_STEP_RTOL = 0.01


@dataclass(frozen=True)
class ScanHeader:
    """Metadata of one scan file, read without loading the maps.

    ``load(indices)`` returns the maps of the channels ``indices`` as an
    array ``(len(indices), ny, nx)`` in file orientation; ``load_scaler(name)``
    returns one scaler map ``(ny, nx)``.
    """

    path: str
    format: str
    channels: tuple[str, ...]
    shape: tuple[int, int]
    step_nm: tuple[float, float]
    origin_nm: tuple[float, float]
    load: Callable[[Sequence[int]], np.ndarray]
    flip: tuple[bool, bool] = (False, False)
    scalers: tuple[str, ...] = ()
    load_scaler: Callable[[str], np.ndarray] | None = None
    angle_deg: float | None = None
    scan_mode: Literal["step", "fly"] = "step"
    fast_axis: Literal["x", "y"] = "x"
    dwell_s: float | None = None
    probe_fwhm_nm: float | None = None
    units: str = "counts"


def grid_from_positions(
    positions: np.ndarray, axis: int, scale_to_nm: float, path: str, name: str
) -> tuple[float, float, bool]:
    """Regular grid ``(origin_nm, step_nm, flip)`` along ``axis`` of a 2-D position map.

    The origin and end are the mean positions of the first and last row (or
    column), so the encoder jitter of a fly scan averages out. ``flip`` is
    true when positions decrease along the axis; the reader then reverses
    that axis so that coordinates increase.
    """
    positions = np.asarray(positions, dtype=np.float64) * scale_to_nm
    n = positions.shape[axis]
    if n < 2:
        raise IngestError(
            f"{path}: cannot infer the {name} step from a single {'row' if axis == 0 else 'column'} "
            "of positions; a map needs at least 2 pixels along each axis."
        )
    first = np.take(positions, 0, axis=axis).mean()
    last = np.take(positions, n - 1, axis=axis).mean()
    if not (np.isfinite(first) and np.isfinite(last)):
        edge = "row" if axis == 0 else "column"
        raise IngestError(
            f"{path}: {name} positions of the first or last {edge} are NaN or infinite "
            f"(mean {first:.6g} and {last:.6g} nm), so the {name} step cannot be inferred; "
            "check the position arrays (encoder dropouts), or crop the scan to the rows and "
            "columns whose positions were recorded."
        )
    step = (last - first) / (n - 1)
    if not (np.isfinite(step) and step != 0):
        raise IngestError(
            f"{path}: {name} positions do not change along the scan ({first:.6g} to {last:.6g} nm); "
            "check that the position arrays are the scan motors."
        )
    if step < 0:
        return float(last), float(-step), True
    return float(first), float(step), False


def select_channels(header: ScanHeader, elements: Elements) -> list[int]:
    """Indices of the channels to keep: emission lines, all, or a named list."""
    if not header.channels:
        raise IngestError(f"{header.path}: the file holds no maps (0 channels); nothing to read.")
    if elements == "all":
        return list(range(len(header.channels)))
    if elements == "lines":
        picked = [i for i, c in enumerate(header.channels) if emission_energy_kev(c)[0]]
        if not picked:
            raise IngestError(
                f"{header.path}: no channel is named like an emission line (e.g. 'Ni_K'); "
                f"channels: {list(header.channels)}. Pass elements='all' or a list of names."
            )
        return picked
    if isinstance(elements, str):
        raise IngestError(f"elements={elements!r}; pass 'lines', 'all' or a list of channel names.")
    if not elements:
        raise IngestError(f"elements={elements!r} selects no channel; pass 'lines', 'all' or channel names.")
    missing = [e for e in elements if e not in header.channels]
    if missing:
        raise IngestError(
            f"{header.path}: channels {missing} not found; the file has {list(header.channels)}."
        )
    return [header.channels.index(e) for e in elements]


def _check_finite(maps: np.ndarray, names: Sequence[str], path: str, nonfinite: NonFinite, *, warn: bool) -> None:
    bad = ~np.isfinite(maps)
    if not bad.any():
        return
    parts = []
    for name, plane in zip(names, maps, strict=True):
        n_nan, n_inf = int(np.isnan(plane).sum()), int(np.isinf(plane).sum())
        if n_nan or n_inf:
            y, x = np.argwhere(~np.isfinite(plane))[0]
            parts.append(f"{name}: {n_nan} NaN, {n_inf} inf (first at y={y}, x={x})")
    report = f"{path}: non-finite counts in " + "; ".join(parts)
    if nonfinite == "raise":
        raise NonFiniteCountsError(
            f"{report}. Nothing was zeroed; pass nonfinite='keep' (--keep-nonfinite) to keep them "
            "as they are, or fix the fit that produced them."
        )
    if warn:
        warnings.warn(f"{report}; kept as they are (nonfinite='keep').", XrfsrWarning, stacklevel=3)


def _load(
    header: ScanHeader, indices: Sequence[int], normalize: str | None, nonfinite: NonFinite, *, warn: bool = True
) -> np.ndarray:
    """Selected channels, normalised and oriented so positions increase (``warn``: about kept non-finite counts)."""
    maps = np.asarray(header.load(indices))
    if maps.shape != (len(indices), *header.shape):
        raise IngestError(
            f"{header.path}: expected maps of shape {(len(indices), *header.shape)}, read {maps.shape}."
        )
    maps = maps.astype(np.float32)  # ingested counts are float32 (24-bit mantissa)
    if normalize is not None:
        maps = maps * _normalisation(header, normalize)
    if header.flip[0]:
        maps = maps[:, ::-1, :]
    if header.flip[1]:
        maps = maps[:, :, ::-1]
    _check_finite(maps, [header.channels[i] for i in indices], header.path, nonfinite, warn=warn)
    return np.ascontiguousarray(maps)


def _require_scaler(header: ScanHeader, name: str) -> None:
    if name not in header.scalers or header.load_scaler is None:
        raise IngestError(
            f"{header.path}: no scaler {name!r} to normalise by; scalers in the file: {list(header.scalers)}."
        )


def _normalisation(header: ScanHeader, name: str) -> np.ndarray:
    """Factor ``mean(scaler) / scaler`` (:func:`xrfsr_dask.schema.flux_factor`): counts at the mean flux.

    Unlike PyXRF's map display (``data / scaler``, zeros replaced by the mean),
    the counts keep their scale, and pixels where the scaler is zero or
    negative (beam lost) become NaN and are reported like any other
    non-finite count rather than silently patched.
    """
    _require_scaler(header, name)
    scaler = np.asarray(header.load_scaler(name), dtype=np.float64)  # type: ignore[misc]
    if not (scaler > 0).any():
        raise IngestError(f"{header.path}: scaler {name!r} is zero or negative everywhere; cannot normalise.")
    return flux_factor(scaler).astype(np.float32)


def _scan_attrs(header: ScanHeader, normalize: str | None) -> dict[str, Any]:
    """The scan description a header gives to :func:`~xrfsr_dask.schema.xrf_maps`."""
    return {
        "probe_fwhm_nm": header.probe_fwhm_nm,
        "scan_mode": header.scan_mode,
        "fast_axis": header.fast_axis,
        "dwell_s": header.dwell_s,
        "units": header.units if normalize is None else f"{header.units} at mean {normalize}",
    }


def maps_from_header(
    header: ScanHeader,
    *,
    elements: Elements = "lines",
    normalize: str | None = None,
    nonfinite: NonFinite = "raise",
    operation: str,
    parameters: dict[str, Any],
) -> xr.DataArray:
    """Read one scan into a ``(element, y, x)`` DataArray (in memory)."""
    check_nan_policy(nonfinite, ("raise", "keep"), name="nonfinite")
    indices = select_channels(header, elements)
    maps = _load(header, indices, normalize, nonfinite)
    try:
        return xrf_maps(
            maps,
            elements=[header.channels[i] for i in indices],
            step_nm=header.step_nm,
            origin_nm=header.origin_nm,
            **_scan_attrs(header, normalize),
            operation=operation,
            parameters=parameters,
        )
    except SchemaError as err:  # refused by the data model, not by a reader check: name the file
        raise SchemaError(f"{header.path}: {err}") from err


def _check_series(headers: Sequence[ScanHeader], names: Sequence[str]) -> None:
    first = headers[0]
    for h in headers[1:]:
        if h.shape != first.shape:
            raise IngestError(
                f"map shapes differ across the series: {first.path} is {first.shape} (y, x) but "
                f"{h.path} is {h.shape}; a series needs one shape per projection. Crop or re-export "
                "the scans to a common range."
            )
        if not np.allclose(h.step_nm, first.step_nm, rtol=SERIES_STEP_RTOL):
            raise IngestError(
                f"scan steps differ across the series: {first.path} has {first.step_nm} nm but "
                f"{h.path} has {h.step_nm} nm (y, x)."
            )
        missing = [n for n in names if n not in h.channels]
        if missing:
            raise IngestError(f"{h.path}: channels {missing} are missing; {first.path} has them.")
        for key in ("scan_mode", "fast_axis", "units"):
            if getattr(h, key) != getattr(first, key):
                raise IngestError(
                    f"{key} differs across the series: {first.path} has {getattr(first, key)!r}, "
                    f"{h.path} has {getattr(h, key)!r}."
                )


def _angles(headers: Sequence[ScanHeader], angles: Sequence[float] | None) -> list[float]:
    if angles is not None:
        values = [float(a) for a in angles]
        if len(values) != len(headers):
            raise IngestError(f"got {len(values)} angles for {len(headers)} files; give one angle per file.")
        return values
    missing = [h.path for h in headers if h.angle_deg is None]
    if missing:
        raise IngestError(
            f"no rotation angle recorded in {missing[:3]}{' ...' if len(missing) > 3 else ''}; "
            "pass angles=[...] (xrfsr ingest --angles) with one angle in degrees per file."
        )
    values = [float(h.angle_deg) for h in headers]  # type: ignore[arg-type]
    seen: dict[float, str] = {}
    for h, angle in zip(headers, values, strict=True):
        if angle in seen:
            raise IngestError(
                f"{seen[angle]} and {h.path} both record the angle {angle} deg; each projection "
                "needs its own angle. If the files do not hold the real angle (MAPS writes 0 when "
                "no theta PV was configured), pass angles=[...] or theta_pv=... ."
            )
        seen[angle] = h.path
    return values


def series_from_headers(
    headers: Sequence[ScanHeader],
    *,
    angles: Sequence[float] | None = None,
    elements: Elements = "lines",
    normalize: str | None = None,
    nonfinite: NonFinite = "raise",
    operation: str,
    parameters: dict[str, Any],
) -> xr.DataArray:
    """Stack one scan per angle into a lazy ``(element, angle, y, x)`` series.

    Every file is read only when its projection is computed (one dask task
    per file), so a series larger than memory streams into a store.
    """
    if not headers:
        raise IngestError("a series needs at least one file; got none.")
    check_nan_policy(nonfinite, ("raise", "keep"), name="nonfinite")
    first = headers[0]
    indices = select_channels(first, elements)
    names = [first.channels[i] for i in indices]
    _check_series(headers, names)
    if normalize is not None:  # now, not when the maps are read (that may be halfway through a write)
        for h in headers:
            _require_scaler(h, normalize)
    angle_values = _angles(headers, angles)
    if nonfinite == "keep":  # once here, not once per file from the tasks that read them
        warnings.warn(
            f"nonfinite='keep': NaN or infinite counts in the {len(headers)} files of this series are kept as they "
            "are when the files are read.", XrfsrWarning, stacklevel=3,
        )
    planes = []
    for h in headers:
        own = [h.channels.index(n) for n in names]
        block = dask.delayed(_load)(h, own, normalize, nonfinite, warn=False)
        planes.append(dsa.from_delayed(block, shape=(len(names), *first.shape), dtype=np.float32))
    counts = dsa.stack(planes, axis=1)
    try:
        series = xrf_maps(
            counts,
            elements=names,
            step_nm=tuple(float(np.mean([h.step_nm[i] for h in headers])) for i in (0, 1)),
            origin_nm=first.origin_nm,
            angles=angle_values,
            **_scan_attrs(first, normalize),
            operation=operation,
            parameters=parameters,
        )
    except SchemaError as err:
        where = first.path if len(headers) == 1 else f"series {first.path} ... {headers[-1].path}"
        raise SchemaError(f"{where}: {err}") from err
    origins = np.array([h.origin_nm for h in headers])
    return series.assign_coords(
        y_origin=("angle", origins[:, 0], {"units": "nm", "long_name": "scan origin y of each projection"}),
        x_origin=("angle", origins[:, 1], {"units": "nm", "long_name": "scan origin x of each projection"}),
    )


def distinct_names(names: Sequence[Any], where: str, fix: str) -> tuple[str, ...]:
    """``names`` as a tuple, refused unless each is non-blank text and none repeats.

    The :class:`IngestError` names ``where`` the names were read and ``fix``,
    what to do about it.
    """
    blank = [i for i, name in enumerate(names) if not (isinstance(name, str) and name.strip())]
    if blank:
        raise IngestError(
            f"{where} has blank or non-text names at indices {blank} ({[names[i] for i in blank[:5]]!r}); "
            f"every map needs a name. {fix}"
        )
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise IngestError(f"{where} names {repeated} more than once; names must be unique. {fix}")
    return tuple(names)


def finite_float(value: Any, path: str, where: str, fix: str) -> float:
    """``value`` (a number, a one-element array or a numeric string) as a finite float.

    Anything else is an :class:`IngestError` naming the file, ``where`` the
    value was found, and ``fix``, what to do about it.
    """
    try:
        item = np.ravel(value)[0] if np.size(value) == 1 else None
        number = math.nan if item is None or np.iscomplexobj(item) else float(item)
    except (TypeError, ValueError, OverflowError):  # text, records, ragged lists, huge integers
        number = math.nan
    if not math.isfinite(number):
        raise IngestError(f"{path}: {where} = {value!r}; expected a finite number. {fix}")
    return number


def finite_or_none(value: Any) -> float | None:
    """A positive finite float, or None (for optional metadata read from files)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None
