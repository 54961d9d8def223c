"""The labeled data model of xrfsr_dask: constructors, validation, provenance.

Three kinds of array carry XRF data, all as an :class:`xarray.DataArray` named
``counts``:

=========  ================================  =====================================
kind       dims                              physical coordinates
=========  ================================  =====================================
maps       ``(element, y, x)``               ``y``, ``x`` in nm
series     ``(element, angle, y, x)``        ``angle`` in degrees, ``y``, ``x`` in nm
volume     ``(element, z, y, x)``            ``z``, ``y``, ``x`` in nm
=========  ================================  =====================================

Maps and series carry the scan description in ``attrs``: ``step_nm`` (y, x),
``probe_fwhm_nm`` (``None`` when unknown), ``scan_mode`` (``"step"`` or
``"fly"``), ``fast_axis`` (``"x"`` or ``"y"``), ``dwell_s`` (``None`` when
unknown) and ``units``. Volumes carry ``voxel_nm`` (z, y, x) and ``units``.
Every kind carries ``provenance``: a list of records, one per operation, that
each operation appends to through :func:`add_provenance`.

:func:`validate` is the one place these conventions are checked; everything
that reads or writes data calls it, and a public function that needs one kind
says so with ``validate(obj, kind=..., caller=...)``. The other input checks
shared by the library live here too: angles in degrees (:func:`check_degrees`),
one vocabulary of what to do with NaN (:data:`NAN_POLICIES`,
:func:`check_nan_policy`), flux normalisation (:func:`flux_factor`) and the
dtype policy (:func:`counts_dtype`):

=====================================  ===========================================
stage                                  dtype
=====================================  ===========================================
stored counts (constructors, readers)  float32 and float64 kept; float16, bool
                                       and integers become float32; complex refused
metrics (FRC/FSC, PSD, PSNR, SSIM)     the same rule (:func:`counts_dtype`); sums
                                       over shells are accumulated in float64
network input and output (enhance)     float32 (bf16 autocast inside on CUDA)
reconstruction (every backend)         float32
=====================================  ===========================================
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any, Literal, TypeVar

import numpy as np
import xarray as xr

from xrfsr_dask._grid import STEP_RTOL, length_units_hint
from xrfsr_dask._version import __version__
from xrfsr_dask.errors import SchemaError

Labeled = TypeVar("Labeled", xr.DataArray, xr.Dataset)
"""A DataArray or a Dataset, kept as its own type by functions that return what they were given."""

__all__ = [
    "DIMS",
    "MIN_STEP_NM",
    "NAN_POLICIES",
    "Kind",
    "NanPolicy",
    "add_provenance",
    "check_degrees",
    "check_nan_policy",
    "counts_dtype",
    "emission_energy_kev",
    "emission_lines",
    "flux_factor",
    "kind_of",
    "validate",
    "xrf_maps",
    "xrf_volume",
]

Kind = Literal["maps", "series", "volume"]

DIMS: dict[str, tuple[str, ...]] = {
    "maps": ("element", "y", "x"),
    "series": ("element", "angle", "y", "x"),
    "volume": ("element", "z", "y", "x"),
}
SCAN_MODES = ("step", "fly")
FAST_AXES = ("x", "y")
LENGTH_UNITS = "nm"
ANGLE_UNITS = "deg"
NAME = "counts"
MIN_STEP_NM = 0.5
"""Smallest pixel (scan step, voxel) accepted, in nm: finer than any X-ray probe, so a smaller value is
almost always a step written in µm (``step_nm=0.05`` meaning 50 nm)."""

NanPolicy = Literal["raise", "keep", "mask", "interpolate", "zero"]
NAN_POLICIES: dict[str, str] = {
    "raise": "non-finite counts are an error that says where they are",
    "keep": "kept as they are",
    "mask": "the output is NaN where they were, and they do not leak into their neighbours",
    "interpolate": "filled linearly from the finite neighbours along x, then y",
    "zero": "replaced by 0",
}
"""What to do with NaN (and infinite) counts: the one vocabulary of every ``nan=`` option; each function
accepts the subset that makes sense for it."""

# Representative emission energies (keV): K alpha1, L alpha1, M alpha1, from
# the X-ray Data Booklet (LBNL, 2009), Table 1-2. Elements outside the table
# get NaN; the energy is descriptive metadata, never used in a computation.
_EMISSION_KEV: dict[tuple[str, str], float] = {
    ("Al", "K"): 1.487, ("Si", "K"): 1.740, ("P", "K"): 2.014,
    ("S", "K"): 2.308, ("Cl", "K"): 2.622, ("Ar", "K"): 2.958,
    ("K", "K"): 3.314, ("Ca", "K"): 3.692, ("Ti", "K"): 4.511,
    ("V", "K"): 4.952, ("Cr", "K"): 5.415, ("Mn", "K"): 5.899,
    ("Fe", "K"): 6.404, ("Co", "K"): 6.930, ("Ni", "K"): 7.478,
    ("Cu", "K"): 8.048, ("Zn", "K"): 8.639, ("Ga", "K"): 9.252,
    ("Ge", "K"): 9.886, ("As", "K"): 10.544, ("Se", "K"): 11.222,
    ("Br", "K"): 11.924, ("Sr", "K"): 14.165, ("Zr", "K"): 15.775,
    ("Nb", "K"): 16.615, ("Mo", "K"): 17.479, ("Ag", "K"): 22.163,
    ("Sn", "K"): 25.271,
    ("Sr", "L"): 1.806, ("Zr", "L"): 2.042, ("Nb", "L"): 2.166,
    ("Mo", "L"): 2.293, ("Ru", "L"): 2.558, ("Pd", "L"): 2.838,
    ("Ag", "L"): 2.984, ("Cd", "L"): 3.134, ("Sn", "L"): 3.444,
    ("I", "L"): 3.938, ("Ba", "L"): 4.466, ("La", "L"): 4.651,
    ("Ce", "L"): 4.840, ("Gd", "L"): 6.057, ("W", "L"): 8.398,
    ("Pt", "L"): 9.442, ("Au", "L"): 9.713, ("Pb", "L"): 10.551,
    ("Bi", "L"): 10.839, ("U", "L"): 13.615,
    ("W", "M"): 1.775, ("Pt", "M"): 2.048, ("Au", "M"): 2.123,
    ("Pb", "M"): 2.346,
}
_LINE_NAME = re.compile(r"^(?P<symbol>[A-Z][a-z]?)(?:_(?P<line>[KLMklm])(?:[a-z]\w*)?)?$")
# Element symbols Z = 1..98; a bare symbol (MAPS writes "Fe") names the K line.
_SYMBOLS = frozenset(
    "H He Li Be B C N O F Ne Na Mg Al Si P S Cl Ar K Ca Sc Ti V Cr Mn Fe Co Ni Cu Zn "
    "Ga Ge As Se Br Kr Rb Sr Y Zr Nb Mo Tc Ru Rh Pd Ag Cd In Sn Sb Te I Xe Cs Ba La Ce "
    "Pr Nd Pm Sm Eu Gd Tb Dy Ho Er Tm Yb Lu Hf Ta W Re Os Ir Pt Au Hg Tl Pb Bi Po At "
    "Rn Fr Ra Ac Th Pa U Np Pu Am Cm Bk Cf".split()
)


def emission_energy_kev(name: str) -> tuple[str, float]:
    """Emission line and its energy for a channel name such as ``"Ni_K"``.

    Parameters
    ----------
    name
        Channel name in the PyXRF/MAPS convention ``Symbol_Line`` (``"Ni_K"``,
        ``"Mo_L"``, ``"Pt_M"``, ``"Fe_ka1"``) or a bare symbol for the K line
        (``"Fe"``, as MAPS writes it).

    Returns
    -------
    line, energy_kev
        ``("K", 7.478)`` for ``"Ni_K"``; ``("", nan)`` when the name is not an
        emission line (``"compton"``) and ``(line, nan)`` for a line missing
        from the table.

    Examples
    --------
    >>> emission_energy_kev("Mn_K")
    ('K', 5.899)
    """
    match = _LINE_NAME.match(name)
    if match is None or match["symbol"] not in _SYMBOLS:
        return "", math.nan
    line = (match["line"] or "K").upper()
    return line, _EMISSION_KEV.get((match["symbol"], line), math.nan)


def emission_lines(symbol: str) -> dict[str, float]:
    """The emission lines of an element in the table, line to energy in keV (``{"K": 17.479, "L": 2.293}``
    for ``"Mo"``). A bare symbol names the K line (MAPS's convention); where this has more than one
    entry a user-written name should say which line it means."""
    return {line: kev for (sym, line), kev in _EMISSION_KEV.items() if sym == symbol}


def check_degrees(values: Any, *, what: str, fix: str) -> np.ndarray:
    """Rotation angles as a 1-D float64 array of distinct finite degrees; radians are refused.

    Eight or more angles that all lie within ±2π and span most of a half
    turn (at least 0.8π) are radians: that is what ``n`` angles over
    ``[0, π)`` look like, and no tomography series in degrees does.
    ``what`` names the angles in the message, ``fix`` says how to convert.
    """
    try:
        angles = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise SchemaError(f"{what} must be numbers in degrees; got {values!r}.") from None
    if angles.ndim != 1 or angles.size == 0:
        raise SchemaError(f"{what} must be a non-empty 1-D sequence of degrees; got shape {angles.shape}.")
    if not np.all(np.isfinite(angles)):
        bad = np.flatnonzero(~np.isfinite(angles))[:5].tolist()
        raise SchemaError(f"{what} must be finite; got NaN or infinity at positions {bad}.")
    if np.unique(angles).size != angles.size:
        raise SchemaError(f"{what} has repeated angles; give each projection its own angle "
                          "(or average repeated projections first).")
    span = float(angles.max() - angles.min())
    if angles.size >= 8 and np.abs(angles).max() <= 2 * math.pi + 1e-6 and span >= 0.8 * math.pi:
        raise SchemaError(
            f"{what}: the {angles.size} angles look like radians (all within ±2π, {angles.min():.4g} to "
            f"{angles.max():.4g}, spanning {span:.4g}: most of a half turn in radians); angles are in "
            f"degrees: {fix}"
        )
    return angles


def check_nan_policy(value: Any, allowed: Sequence[str], *, name: str = "nan") -> str:
    """``value`` if it is one of ``allowed`` (a subset of :data:`NAN_POLICIES`), else a ``ValueError``."""
    if value not in allowed:
        meanings = "; ".join(f"{a!r}: {NAN_POLICIES[a]}" for a in allowed)
        raise ValueError(f"{name} must be one of {tuple(allowed)}; got {value!r}. ({meanings}.)")
    return str(value)


def flux_factor(flux: Any) -> Any:
    """``mean(flux) / flux`` over the positive fluxes: multiply counts by it to get counts at the mean flux.

    Counts keep their scale (unlike ``counts / flux``), and where the flux is
    zero or negative (beam lost) the factor is NaN, so the counts there are
    reported as non-finite instead of being patched silently. ``flux`` is a
    NumPy array or a (lazy) DataArray; the result is the same type.
    """
    if isinstance(flux, xr.DataArray):
        positive = flux.where(flux > 0)
        return positive.mean() / positive
    values = np.asarray(flux, dtype=np.float64)
    kept = np.where(values > 0, values, np.nan)
    return np.nanmean(kept) / kept


def counts_dtype(dtype: np.dtype | type) -> np.dtype:
    """The floating dtype counts are stored and computed in.

    float16, booleans and integers become float32; float32 and float64 are
    kept. Complex data is refused: take ``abs(x) ** 2`` of a complex field
    first.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        raise SchemaError(
            f"counts have complex dtype {dtype}; XRF counts are real. "
            "Convert a complex field to intensity first, e.g. abs(x) ** 2."
        )
    if dtype.kind not in "biuf":
        raise SchemaError(
            f"counts have dtype {dtype}; expected a numeric dtype (integer or float)."
        )
    if dtype.kind == "f" and dtype.itemsize >= 4:
        return dtype
    return np.dtype(np.float32)


def _jsonable(value: Any) -> Any:
    """A JSON-serialisable copy of a parameter value (for provenance records)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float | np.floating):
        value = float(value)
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.size <= 64:
        return _jsonable(value.tolist())
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return repr(value)


def add_provenance(obj: Labeled, operation: str, parameters: Mapping[str, Any] | None = None) -> Labeled:
    """Return ``obj`` with one provenance record appended.

    Parameters
    ----------
    obj
        Any DataArray of the data model, or a Dataset of results derived from
        one (the consistency check's); it is not modified.
    operation
        Dotted name of what ran, e.g. ``"xrfsr_dask.io.read_pyxrf"``.
    parameters
        The parameters it ran with; converted to JSON-safe values (paths to
        strings, arrays of up to 64 values to lists, anything else to its
        ``repr``).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        A shallow copy whose ``attrs["provenance"]`` ends with
        ``{"operation", "parameters", "version", "time"}``.
    """
    record = {
        "operation": operation,
        "parameters": _jsonable(dict(parameters or {})),
        "version": f"xrfsr_dask {__version__}",
        "time": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    out = obj.copy(deep=False)
    out.attrs = dict(obj.attrs)
    out.attrs["provenance"] = [*obj.attrs.get("provenance", []), record]
    return out


def _pair(value: float | Sequence[float], name: str, size: int) -> tuple[float, ...]:
    values: tuple[Any, ...] = (value,) * size if np.ndim(value) == 0 else tuple(value)  # type: ignore[arg-type]
    if len(values) != size:
        raise SchemaError(f"{name} must be one number or {size} numbers; got {value!r}.")
    return tuple(float(v) for v in values)


def _element_coords(elements: Sequence[str], n: int) -> dict[str, Any]:
    names = [str(e) for e in elements]
    if len(names) != n:
        raise SchemaError(
            f"elements has {len(names)} names but counts has {n} element planes "
            "(axis 0); give one name per plane."
        )
    lines, energies = zip(*(emission_energy_kev(e) for e in names), strict=True) if names else ((), ())
    line_attrs = {"long_name": "emission line"}
    energy_attrs = {"long_name": "emission energy", "units": "keV"}
    return {
        "element": ("element", np.array(names, dtype=object)),
        "line": ("element", np.array(lines, dtype=object), line_attrs),
        "energy_kev": ("element", np.array(energies, dtype=np.float64), energy_attrs),
    }


def _length_coord(n: int, origin: float, step: float, name: str) -> tuple:
    values = origin + step * np.arange(n, dtype=np.float64)
    return (name, values, {"units": LENGTH_UNITS, "long_name": f"{name} position"})


def xrf_maps(
    counts: Any,
    *,
    elements: Sequence[str],
    step_nm: float | Sequence[float],
    origin_nm: float | Sequence[float] = 0.0,
    angles: Sequence[float] | None = None,
    angle_units: Literal["deg", "rad"] = "deg",
    probe_fwhm_nm: float | None = None,
    scan_mode: Literal["step", "fly"] = "step",
    fast_axis: Literal["x", "y"] = "x",
    dwell_s: float | None = None,
    units: str = "counts",
    operation: str = "xrfsr_dask.xrf_maps",
    parameters: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Element maps, or a tomography series of them, as a labeled DataArray.

    Parameters
    ----------
    counts
        NumPy, dask or CuPy array of shape ``(element, y, x)`` or, with
        ``angles``, ``(element, angle, y, x)``. Cast by :func:`counts_dtype`.
    elements
        One name per element plane, e.g. ``["Ni_K", "Co_K"]``. Names in the
        ``Symbol_Line`` convention also get ``line`` and ``energy_kev`` coords.
    step_nm
        Scan step in nm, one number or ``(y, x)``.
    origin_nm
        Position of pixel ``[0, 0]`` in nm, one number or ``(y, x)``.
    angles
        Rotation angle of each projection; makes a series.
    angle_units
        Units of ``angles``; radians are converted to degrees.
    probe_fwhm_nm
        Full width at half maximum of the X-ray probe in nm, if known.
    scan_mode
        ``"step"`` (the probe stops at each point) or ``"fly"`` (it moves
        along ``fast_axis`` while each pixel integrates).
    fast_axis
        The axis scanned continuously in a fly scan (the inner loop of a step
        scan).
    dwell_s
        Dwell (integration) time per pixel in seconds, if known.
    units
        Units of the values, e.g. ``"counts"`` or ``"counts/s"``.
    operation, parameters
        The provenance record the new array starts with (readers pass their
        own name and arguments).

    Returns
    -------
    xarray.DataArray
        Named ``counts``, validated by :func:`validate`.

    Examples
    --------
    >>> import numpy as np
    >>> da = xrf_maps(np.ones((2, 4, 5)), elements=["Ni_K", "Co_K"], step_nm=20)
    >>> da.dims, float(da.x[1])
    (('element', 'y', 'x'), 20.0)
    """
    ndim = 3 if angles is None else 4
    if getattr(counts, "ndim", None) != ndim:
        expected = DIMS["maps" if angles is None else "series"]
        raise SchemaError(
            f"counts must have {ndim} dimensions {expected}; got shape "
            f"{getattr(counts, 'shape', None)}."
            + (" Pass angles=... for a tomography series." if getattr(counts, "ndim", 0) == 4 else "")
        )
    counts = counts.astype(counts_dtype(counts.dtype), copy=False)
    step = _pair(step_nm, "step_nm", 2)
    origin = _pair(origin_nm, "origin_nm", 2)
    ny, nx = counts.shape[-2:]
    coords = _element_coords(elements, counts.shape[0])
    coords["y"] = _length_coord(ny, origin[0], step[0], "y")
    coords["x"] = _length_coord(nx, origin[1], step[1], "x")
    if angles is not None:
        angle_values = np.asarray(angles, dtype=np.float64)
        if angle_units == "rad":
            angle_values = np.rad2deg(angle_values)
        elif angle_units != "deg":
            raise SchemaError(f"angle_units must be 'deg' or 'rad'; got {angle_units!r}.")
        if angle_values.shape != (counts.shape[1],):
            raise SchemaError(
                f"angles has shape {angle_values.shape} but counts has "
                f"{counts.shape[1]} projections (axis 1); give one angle per projection."
            )
        coords["angle"] = ("angle", angle_values, {"units": ANGLE_UNITS, "long_name": "rotation angle"})
    attrs = {
        "step_nm": list(step),
        "probe_fwhm_nm": None if probe_fwhm_nm is None else float(probe_fwhm_nm),
        "scan_mode": scan_mode,
        "fast_axis": fast_axis,
        "dwell_s": None if dwell_s is None else float(dwell_s),
        "units": units,
        "provenance": [],
    }
    dims = DIMS["maps" if angles is None else "series"]
    out = xr.DataArray(counts, dims=dims, coords=coords, name=NAME, attrs=attrs)
    out = add_provenance(out, operation, parameters)
    validate(out)
    return out


def xrf_volume(
    values: Any,
    *,
    elements: Sequence[str],
    voxel_nm: float | Sequence[float],
    origin_nm: float | Sequence[float] = 0.0,
    units: str = "counts",
    operation: str = "xrfsr_dask.xrf_volume",
    parameters: Mapping[str, Any] | None = None,
) -> xr.DataArray:
    """Element-resolved volumes (tomograms) as a labeled DataArray.

    Parameters
    ----------
    values
        Array of shape ``(element, z, y, x)``.
    elements
        One name per element volume.
    voxel_nm
        Voxel size in nm, one number or ``(z, y, x)``.
    origin_nm
        Position of voxel ``[0, 0, 0]`` in nm, one number or ``(z, y, x)``.
    units
        Units of the values.
    operation, parameters
        The provenance record the new array starts with.

    Returns
    -------
    xarray.DataArray
        Named ``counts`` with dims ``(element, z, y, x)``, validated.
    """
    if getattr(values, "ndim", None) != 4:
        raise SchemaError(
            f"a volume must have 4 dimensions {DIMS['volume']}; got shape "
            f"{getattr(values, 'shape', None)}."
        )
    values = values.astype(counts_dtype(values.dtype), copy=False)
    voxel = _pair(voxel_nm, "voxel_nm", 3)
    origin = _pair(origin_nm, "origin_nm", 3)
    coords = _element_coords(elements, values.shape[0])
    for axis, name in enumerate(("z", "y", "x")):
        coords[name] = _length_coord(values.shape[axis + 1], origin[axis], voxel[axis], name)
    attrs = {"voxel_nm": list(voxel), "units": units, "provenance": []}
    out = xr.DataArray(values, dims=DIMS["volume"], coords=coords, name=NAME, attrs=attrs)
    out = add_provenance(out, operation, parameters)
    validate(out)
    return out


def kind_of(obj: xr.DataArray) -> Kind:
    """``"maps"``, ``"series"`` or ``"volume"`` from the dims of a DataArray."""
    for kind, dims in DIMS.items():
        if obj.dims == dims:
            return kind  # type: ignore[return-value]
    have = set(obj.dims)
    kind, dims = min(DIMS.items(), key=lambda item: len(have ^ set(item[1])))
    if have == set(dims):
        raise SchemaError(
            f"dims {obj.dims} are those of {kind} {dims} in another order; "
            f"transpose with obj.transpose{dims}."
        )
    missing = [d for d in dims if d not in have]
    extra = [d for d in obj.dims if d not in dims]
    detail = "; ".join(
        part for part in (
            f"missing {missing}" if missing else "",
            f"unexpected {extra}" if extra else "",
        ) if part
    )
    raise SchemaError(
        f"dims {obj.dims} match no XRF layout; the closest is {kind} {dims}: {detail}. "
        f"Layouts: {', '.join(f'{k} {v}' for k, v in DIMS.items())}."
    )


def _check_length_coord(obj: xr.DataArray, name: str, step: float | None) -> None:
    coord = obj.coords[name]
    unit = coord.attrs.get("units")
    if unit != LENGTH_UNITS:
        raise SchemaError(
            f"coordinate {name!r} has units {unit!r}; positions must be in nanometres: "
            f"convert{length_units_hint(unit)} and set attrs['units'] = 'nm'."
        )
    values = np.asarray(coord.values, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise SchemaError(f"coordinate {name!r} has NaN or infinite positions.")
    if values.size > 1:
        diffs = np.diff(values)
        if np.any(diffs <= 0):
            bad = int(np.argmax(diffs <= 0))
            raise SchemaError(
                f"coordinate {name!r} is not strictly increasing: {values[bad]} nm at "
                f"index {bad} is followed by {values[bad + 1]} nm. Sort the data along "
                f"{name!r} (obj.sortby({name!r})) or flip the scan direction."
            )
        if step is not None and not np.allclose(diffs, step, rtol=STEP_RTOL, atol=0):
            raise SchemaError(
                f"coordinate {name!r} has spacing {np.median(diffs):.6g} nm but "
                f"step_nm says {step:.6g} nm; positions must lie on the regular grid "
                "that step_nm describes."
            )


def _check_positive_or_none(attrs: Mapping[str, Any], key: str) -> None:
    if key not in attrs:
        raise SchemaError(f"attrs[{key!r}] is missing; set it to a positive number or None (unknown).")
    value = attrs[key]
    if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise SchemaError(f"attrs[{key!r}] = {value!r}; expected a positive number or None (unknown).")


def _check_spacing_attr(attrs: Mapping[str, Any], key: str, size: int) -> list[float]:
    value = attrs.get(key)
    try:
        values = [float(v) for v in value]  # type: ignore[union-attr]
    except (TypeError, ValueError):  # not a list, or one of text: both refused below
        values = []
    if len(values) != size or not all(math.isfinite(v) and v > 0 for v in values):
        raise SchemaError(
            f"attrs[{key!r}] = {value!r}; expected {size} positive numbers in nm."
        )
    if min(values) < MIN_STEP_NM:
        raise SchemaError(
            f"attrs[{key!r}] = {value!r} nm is finer than {MIN_STEP_NM} nm, below what any X-ray probe "
            f"resolves; steps are in nm, so a step written in µm needs multiplying by 1000 "
            f"({key}={[round(v * 1000, 6) for v in values]})."
        )
    return values


def _check_angles(obj: xr.DataArray) -> None:
    coord = obj.coords["angle"]
    unit = coord.attrs.get("units")
    if unit in ("rad", "radian", "radians"):
        raise SchemaError(
            "coordinate 'angle' is in radians; angles must be in degrees: "
            "convert with numpy.rad2deg and set attrs['units'] = 'deg'."
        )
    if unit != ANGLE_UNITS:
        raise SchemaError(f"coordinate 'angle' has units {unit!r}; expected 'deg' (degrees).")
    check_degrees(coord.values, what="coordinate 'angle'",
                  fix="convert with numpy.rad2deg (xrf_maps(..., angle_units='rad') does it).")


_KIND_NAMES = {"maps": "maps", "series": "a projection series", "volume": "a volume"}


def _kinds(kind: Kind | Sequence[Kind] | None) -> tuple[str, ...]:
    if kind is None:
        return tuple(DIMS)
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    unknown = [k for k in kinds if k not in DIMS]
    if unknown:
        raise ValueError(f"kind must be among {tuple(DIMS)}; got {unknown}.")
    return kinds


def validate(
    obj: xr.DataArray | xr.Dataset,
    kind: Kind | Sequence[Kind] | None = None,
    *,
    caller: str | None = None,
) -> xr.DataArray:
    """Check that ``obj`` follows the data model (and is of ``kind``); return it as a DataArray.

    Checks dims and their order, the coordinate of every dim, units (nm for
    positions, degrees for angles), strictly increasing positions on the grid
    ``step_nm`` (or ``voxel_nm``) describes, unique element names, the scan
    attributes and the provenance list. Values are not read, so validating a
    lazy array computes nothing.

    Parameters
    ----------
    obj
        A DataArray named ``counts``, or a Dataset holding one.
    kind
        The kind (or kinds) the caller takes: ``"maps"``, ``"series"``,
        ``"volume"``; ``None`` accepts any.
    caller
        The public function checking its input, named in the message (e.g.
        ``"align"``).

    Returns
    -------
    xarray.DataArray
        ``obj`` itself (or ``obj["counts"]`` for a Dataset).

    Raises
    ------
    SchemaError
        Naming the field that is wrong and what was expected.

    Examples
    --------
    >>> import numpy as np
    >>> maps = xrf_maps(np.ones((1, 4, 4)), elements=["Ni_K"], step_nm=20)
    >>> validate(maps, "series", caller="align")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xrfsr_dask.errors.SchemaError: align takes a projection series (...); got maps with dims ('element', 'y', 'x').
    """
    who = f"{caller} takes" if caller else "expected"
    if not isinstance(obj, xr.DataArray | xr.Dataset):
        wanted = " or ".join(f"{_KIND_NAMES[k]} {DIMS[k]}" for k in _kinds(kind))
        raise SchemaError(f"{who} an xarray.DataArray named 'counts' ({wanted}); got {type(obj).__name__}. "
                          "Make one with xrf_maps or xrf_volume.")
    if isinstance(obj, xr.Dataset):
        if NAME not in obj.data_vars:
            raise SchemaError(
                f"dataset has no variable {NAME!r} (found: {sorted(map(str, obj.data_vars))}); "
                "XRF data lives in a DataArray named 'counts'."
            )
        obj = obj[NAME]
    if obj.name != NAME:
        raise SchemaError(f"DataArray is named {obj.name!r}; expected {NAME!r} (use .rename('counts')).")
    found = kind_of(obj)
    if found not in _kinds(kind):
        wanted = " or ".join(f"{_KIND_NAMES[k]} {DIMS[k]}" for k in _kinds(kind))
        hint = ""
        if found == "volume":
            hint = " Project a volume first (xrfsr_dask.tomo.project)."
        elif found == "series" and _kinds(kind) == ("volume",):
            hint = " Reconstruct the series first (xrfsr_dask.tomo.reconstruct)."
        raise SchemaError(f"{who} {wanted}; got {_KIND_NAMES[found]} with dims {obj.dims}.{hint}")
    kind = found
    counts_dtype(obj.dtype)
    for dim in obj.dims:
        if dim not in obj.coords:
            raise SchemaError(f"dimension {dim!r} has no coordinate; every dim needs one.")
    names = [str(e) for e in obj.coords["element"].values]
    if len(set(names)) != len(names):
        raise SchemaError(f"coordinate 'element' has repeated names {names}; names must be unique.")
    attrs = obj.attrs
    if kind == "volume":
        spacing = _check_spacing_attr(attrs, "voxel_nm", 3)
        for name, step in zip(("z", "y", "x"), spacing, strict=True):
            _check_length_coord(obj, name, step)
    else:
        spacing = _check_spacing_attr(attrs, "step_nm", 2)
        for name, step in zip(("y", "x"), spacing, strict=True):
            _check_length_coord(obj, name, step)
        if attrs.get("scan_mode") not in SCAN_MODES:
            raise SchemaError(
                f"attrs['scan_mode'] = {attrs.get('scan_mode')!r}; expected one of {SCAN_MODES}."
            )
        if attrs.get("fast_axis") not in FAST_AXES:
            raise SchemaError(
                f"attrs['fast_axis'] = {attrs.get('fast_axis')!r}; expected one of {FAST_AXES}."
            )
        _check_positive_or_none(attrs, "probe_fwhm_nm")
        _check_positive_or_none(attrs, "dwell_s")
        if kind == "series":
            _check_angles(obj)
    if not isinstance(attrs.get("units"), str):
        raise SchemaError(f"attrs['units'] = {attrs.get('units')!r}; expected a string such as 'counts'.")
    provenance = attrs.get("provenance")
    if not isinstance(provenance, list) or not all(
        isinstance(p, Mapping) and "operation" in p for p in provenance
    ):
        raise SchemaError(
            "attrs['provenance'] must be a list of records with an 'operation' key; "
            "use xrfsr_dask.schema.add_provenance to append one."
        )
    return obj
