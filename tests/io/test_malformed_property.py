"""Property: malformed or hostile input is refused with the library's own error, naming the file.

Each example writes a valid file in a beamline layout (PyXRF or MAPS HDF5,
TIFF with a sidecar; :mod:`xrfsr_dask.testing.files`), breaks one thing
drawn by hypothesis -- a key removed, a group where a dataset belongs, a
wrong dtype or shape, NaN positions, undecodable, empty or repeated names, a
malformed angle, a truncated file, random bytes, a broken sidecar -- and
feeds it to ``read``, ``read_series`` or ``ingest``. What must happen: an
:class:`~xrfsr_dask.errors.XrfsrError` whose message names the broken file;
never an exception from h5py, tifffile, NumPy or zarr, never a hang, and
never a destination store that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import tifffile
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrfsr_dask import (
    XrfsrError,
    ingest,
    open_xrf,
    read,
    read_series,
    save,
    store_status,
    xrf_maps,
)
from xrfsr_dask.io.tiff import SIDECAR_KEYS
from xrfsr_dask.testing import (
    grid_positions,
    particles,
    write_maps_h5,
    write_pyxrf_h5,
    write_tiff,
)

SETTINGS = settings(max_examples=40, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
HANG_S = 30
"""An example that runs this long is a hang (a normal one takes well under a second)."""

SHAPE = (5, 6)
NAMES = ["Ni_K", "Co_K", "Mo_L"]
ENTRIES = st.sampled_from(["read", "read_series", "ingest", "ingest_series"])
NON_FINITE = st.sampled_from([math.nan, math.inf, -math.inf])


@contextlib.contextmanager
def no_hang(seconds: float = HANG_S) -> Iterator[None]:
    """Raise TimeoutError in the main thread if the block runs longer than ``seconds``."""

    def alarm(signum: int, frame: Any) -> None:
        raise TimeoutError(f"no answer within {seconds} s: the library hangs on this input")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def assert_refused(call: Callable[[], object], names: str, dst: str | None = None) -> XrfsrError:
    """``call()`` raises an XrfsrError naming ``names``, and leaves no store at ``dst`` that looks complete."""
    with no_hang(), pytest.raises(XrfsrError) as info:
        call()
    message = str(info.value)
    assert names in message, f"the message does not name {names!r}: {message}"
    if dst is not None:
        assert not os.path.exists(dst) or store_status(dst).complete is not True, f"{dst} looks complete"
    return info.value


def feed(entry: str, bad: Path, good: Path, tmp: str, **options: Any) -> None:
    """Give the broken file ``bad`` to one entry point (after ``good`` for a series) and expect a refusal."""
    dst = os.path.join(tmp, "out.zarr")
    calls = {
        "read": lambda: read(bad, **options),
        "read_series": lambda: read_series([good, bad], **options).compute(),
        "ingest": lambda: ingest(bad, dst, progress=False, **options),
        "ingest_series": lambda: ingest([good, bad], dst, progress=False, **options),
    }
    # The file itself or its sidecar (bad.tif.json, bad.yaml) must be named.
    assert_refused(calls[entry], str(bad.with_suffix("")), dst if entry.startswith("ingest") else None)


@dataclass(frozen=True)
class Breakage:
    """One thing broken in a valid file: what (for hypothesis' report), how, and reader options it needs."""

    label: str
    mutate: Callable[[h5py.File], None] = field(repr=False)
    options: dict[str, Any] = field(default_factory=dict)
    writer: dict[str, Any] = field(default_factory=dict)


def _replace(key: str, data: Any) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        if key in f:
            del f[key]
        f[key] = data

    return mutate


def _make_group(key: str) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        del f[key]
        f.create_group(key)

    return mutate


def _delete(key: str) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        del f[key]

    return mutate


def _set_attr(key: str, name: str, value: Any) -> Callable[[h5py.File], None]:
    def mutate(f: h5py.File) -> None:
        f[key].attrs[name] = value

    return mutate


# Links that lead nowhere: a dangling soft link, an external link to a missing file, a link to itself.
LINKS = [
    ("dangling soft link", lambda key: h5py.SoftLink("/nowhere")),
    ("external link", lambda key: h5py.ExternalLink("/nonexistent/scan.h5", "/xrfmap")),
    ("soft-link loop", lambda key: h5py.SoftLink("/" + key)),
]


def _wrong_dtype(expect: str, shape: tuple[int, ...]) -> list[tuple[str, np.ndarray]]:
    """Arrays of ``shape`` whose dtype the reader must refuse for a dataset holding ``expect``."""
    if expect == "text":
        return [("float", np.zeros(shape)), ("int", np.ones(shape, np.int32)), ("bool", np.ones(shape, bool)),
                ("complex", np.ones(shape, np.complex64))]
    arrays = [
        ("bytes", np.full(shape, b"1.5")),
        ("str", np.full(shape, "abc", dtype=h5py.string_dtype())),
        ("complex", np.full(shape, 1 + 2j, np.complex64)),
        ("compound", np.zeros(shape, [("a", "f4"), ("b", "i4")])),
    ]
    if expect == "numbers":  # boolean counts are allowed (0/1), boolean positions are not
        arrays.append(("bool", np.ones(shape, bool)))
    return arrays


@st.composite
def _bad_dataset(draw: st.DrawFn, layout: dict[str, tuple[str, tuple[int, ...]]], options: dict[str, Any],
                 writer: dict[str, Any], accepted: Callable[[str, tuple[int, ...]], bool],
                 optional: tuple[str, ...] = ()) -> Breakage:
    """A dataset of ``layout`` made a group, given a wrong dtype or shape, or removed (unless ``optional``)."""
    key = draw(st.sampled_from(sorted(layout)))
    expect, shape = layout[key]
    how = draw(st.sampled_from(["group", "dtype", "shape"] + ([] if key in optional else ["missing", "link"])))
    if how == "missing":
        return Breakage(f"{key} missing", _delete(key), options, writer)
    if how == "link":
        name, link = draw(st.sampled_from(LINKS))
        return Breakage(f"{key} a {name}", _replace(key, link(key)), options, writer)
    if how == "group":
        return Breakage(f"{key} is a group", _make_group(key), options, writer)
    if how == "dtype":
        name, data = draw(st.sampled_from(_wrong_dtype(expect, shape)))
        return Breakage(f"{key} of dtype {name}", _replace(key, data), options, writer)
    if expect == "text":  # one name per entry: any other count is wrong
        n = draw(st.integers(0, 6).filter(lambda n: n != shape[0]))
        names = ["x_pos", "y_pos", "Ni_K", "Co_K", "Mo_L", "i0"][:n]
        return Breakage(f"{key} with {n} names", _replace(key, np.array([s.encode() for s in names], "S8")),
                        options, writer)
    new = tuple(draw(st.lists(st.integers(0, 7), max_size=4)))
    if accepted(key, new):
        new = (0,)  # no values: wrong for every key
    return Breakage(f"{key} of shape {new}", _replace(key, np.ones(new, np.float32)), options, writer)


@st.composite
def _bad_names(draw: st.DrawFn, keys: list[str], options: dict[str, Any], writer: dict[str, Any],
               channel_keys: list[str]) -> Breakage:
    """Names that are not UTF-8, empty or repeated."""
    key = draw(st.sampled_from(keys))
    how = draw(st.sampled_from(["non-utf8", "empty", "repeated"]))

    def mutate(f: h5py.File) -> None:
        names = list(f[key][()])
        i = index % len(names)
        if how == "non-utf8":
            names[i] = junk
        elif how == "empty":
            names[i] = blank.encode()
        else:
            names[(i + 1) % len(names)] = names[i]
        del f[key]
        f[key] = np.array(names, "S")

    index = draw(st.integers(0, 10))
    junk = draw(st.binary(min_size=1, max_size=8).filter(_not_utf8))
    blank = draw(st.sampled_from(["", " ", "\t", " \n "]))
    if how != "non-utf8" and key not in channel_keys:
        how = "non-utf8"  # positions and scaler names are matched by name, not required unique
    return Breakage(f"{key}: {how} name", mutate, options, writer)


def _not_utf8(data: bytes) -> bool:
    try:
        data.rstrip(b"\x00").decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


# -- PyXRF -------------------------------------------------------------------------------------------------

FIT, FIT_NAMES = "xrfmap/detsum/xrf_fit", "xrfmap/detsum/xrf_fit_name"
POS, POS_NAMES = "xrfmap/positions/pos", "xrfmap/positions/name"
SCALERS, SCALER_NAMES = "xrfmap/scalers/val", "xrfmap/scalers/name"
PYXRF = {FIT: ("counts", (3, *SHAPE)), FIT_NAMES: ("text", (3,)), POS: ("numbers", (2, *SHAPE)),
         POS_NAMES: ("text", (2,))}
PYXRF_SCALERS = {SCALERS: ("counts", (*SHAPE, 1)), SCALER_NAMES: ("text", (1,))}


def write_pyxrf(path: Path, theta: float = 0.0) -> Path:
    y, x = grid_positions(SHAPE, (0.05, 0.04))
    return write_pyxrf_h5(path, particles(SHAPE, 3, seed=0), NAMES, y_pos=y, x_pos=x, theta=theta,
                          scalers={"i0": np.full(SHAPE, 1e5)})


def _pyxrf_shape_accepted(key: str, shape: tuple[int, ...]) -> bool:
    return shape == {**PYXRF, **PYXRF_SCALERS}[key][1]


@st.composite
def _nonfinite_positions(draw: st.DrawFn) -> Breakage:
    """NaN or inf in the first or last row (y) or column (x) of the positions the step comes from."""
    axis, edge, value = draw(st.sampled_from(["y", "x"])), draw(st.sampled_from([0, -1])), draw(NON_FINITE)
    along = draw(st.integers(0, min(SHAPE) - 1))

    def mutate(f: h5py.File) -> None:
        pos = f[POS][()]
        if axis == "y":
            pos[1, edge, along] = value
        else:
            pos[0, along, edge] = value
        f[POS][...] = pos

    return Breakage(f"{axis} positions with {value} at edge {edge}", mutate)


BAD_NUMBERS = st.one_of(
    st.text(st.characters(exclude_characters="\x00"), max_size=6).filter(lambda s: not _parses_as_float(s)),
    NON_FINITE,
    st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=3),
    st.just(1 + 2j),
    st.just(np.zeros(0)),
)


def _parses_as_float(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


@st.composite
def pyxrf_breakages(draw: st.DrawFn) -> Breakage:
    kind = draw(st.sampled_from(["dataset", "scalers", "names", "positions", "theta", "root"]))
    if kind == "dataset":
        return draw(_bad_dataset(PYXRF, {}, {}, _pyxrf_shape_accepted))
    if kind == "scalers":  # only read when normalising; in a series that is when the store is written
        return draw(_bad_dataset(PYXRF_SCALERS, {"normalize": "i0"}, {}, _pyxrf_shape_accepted))
    if kind == "names":
        return draw(_bad_names([FIT_NAMES, POS_NAMES, SCALER_NAMES], {}, {}, [FIT_NAMES]))
    if kind == "positions":
        return draw(_nonfinite_positions())
    if kind == "theta":
        value = draw(BAD_NUMBERS)
        return Breakage(f"param_theta = {value!r}", _set_attr("xrfmap/scan_metadata", "param_theta", value))
    group = draw(st.sampled_from(["xrfmap", "xrfmap/detsum", "xrfmap/positions"]))
    how = draw(st.sampled_from(["missing", "dataset", *(name for name, _ in LINKS)]))
    if how == "missing":
        return Breakage(f"{group} missing", _delete(group))
    if how == "dataset":
        return Breakage(f"{group} a dataset", _replace(group, np.zeros(3)))
    link = dict(LINKS)[how]
    return Breakage(f"{group} a {how}", _replace(group, link(group)))


@SETTINGS
@given(breakage=pyxrf_breakages(), entry=ENTRIES, elements=st.sampled_from(["lines", "all"]))
def test_malformed_pyxrf_is_refused(breakage, entry, elements):
    with tempfile.TemporaryDirectory() as tmp:
        good, bad = write_pyxrf(Path(tmp) / "good.h5", 0.0), write_pyxrf(Path(tmp) / "bad.h5", 1.0)
        with h5py.File(bad, "r+") as f:
            breakage.mutate(f)
        feed(entry, bad, good, tmp, elements=elements, **breakage.options)


# -- MAPS --------------------------------------------------------------------------------------------------

MAPS_KEYS = {
    10: {"counts": "MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec", "names": "MAPS/XRF_Analyzed/Fitted/Channel_Names",
         "x": "MAPS/Scan/x_axis", "y": "MAPS/Scan/y_axis", "scalers": "MAPS/Scalers/Values",
         "scaler_names": "MAPS/Scalers/Names", "theta": "MAPS/Scan/theta", "pvs": "MAPS/Scan/Extra_PVs"},
    9: {"counts": "MAPS/XRF_fits", "names": "MAPS/channel_names", "x": "MAPS/x_axis", "y": "MAPS/y_axis",
        "scalers": "MAPS/scalers", "scaler_names": "MAPS/scaler_names", "pvs": "MAPS/extra_pvs"},
}
THETA_PV = "2xfm:m60.VAL"


def write_maps(path: Path, theta: float = 0.0, version: int = 10) -> Path:
    """A MAPS file whose angle is both ``MAPS/Scan/theta`` (v10) and the extra PV ``THETA_PV``."""
    y, x = grid_positions(SHAPE, (0.05, 0.04))
    write_maps_h5(path, particles(SHAPE, 3, seed=0), NAMES, y_axis=y[:, 0], x_axis=x[0],
                  scalers={"i0": np.full(SHAPE, 1e5)}, theta=theta, version=version)
    names, values = [THETA_PV.encode(), b"2xfm:other"], [str(theta).encode(), b"off"]
    with h5py.File(path, "r+") as f:
        if version == 10:
            f["MAPS/Scan/Extra_PVs/Names"] = np.array(names)
            f["MAPS/Scan/Extra_PVs/Values"] = np.array(values)
        else:
            f["MAPS/extra_pvs"] = np.array([names, values, [b"", b""], [b"deg", b""]])
    return path


def _maps_layout(version: int) -> tuple[dict, dict]:
    keys = MAPS_KEYS[version]
    main = {keys["counts"]: ("counts", (3, *SHAPE)), keys["names"]: ("text", (3,)),
            keys["x"]: ("numbers", (SHAPE[1],)), keys["y"]: ("numbers", (SHAPE[0],))}
    scalers = {keys["scalers"]: ("counts", (1, *SHAPE)), keys["scaler_names"]: ("text", (1,))}
    if version == 10:
        main[keys["theta"]] = ("numbers", ())
    return main, scalers


def _maps_shape_accepted(version: int) -> Callable[[str, tuple[int, ...]], bool]:
    keys = MAPS_KEYS[version]

    def accepted(key: str, shape: tuple[int, ...]) -> bool:
        if key in (keys["x"], keys["y"]):  # one position per pixel along the axis, or a full (ny, nx) grid
            n = SHAPE[1] if key == keys["x"] else SHAPE[0]
            return int(np.prod(shape)) == n or shape == SHAPE
        if key == keys.get("theta"):  # the first value is the angle
            return int(np.prod(shape)) > 0
        return shape == {**_maps_layout(version)[0], **_maps_layout(version)[1]}[key][1]

    return accepted


@st.composite
def _bad_pvs(draw: st.DrawFn, version: int) -> Breakage:
    """The extra-PV table that ``theta_pv`` reads, broken."""
    key = MAPS_KEYS[version]["pvs"]
    how = draw(st.sampled_from(["missing", "no such PV", "value"] + (["no values"] if version == 10 else ["1-D"])))
    options, writer = {"theta_pv": THETA_PV}, {"version": version}
    if how == "missing":
        return Breakage(f"{key} missing", _delete(key), options, writer)
    if how == "no values":
        return Breakage(f"{key}/Values missing", _delete(f"{key}/Values"), options, writer)
    if how == "1-D":
        return Breakage(f"{key} 1-D", _replace(key, np.array([THETA_PV.encode()])), options, writer)
    if how == "no such PV":
        return Breakage(f"{key} without {THETA_PV}", _replace(key, np.array([[b"a"], [b"1"]])) if version == 9
                        else _replace(f"{key}/Names", np.array([b"a", b"b"])), options, writer)
    value = draw(st.sampled_from([b"abc", b"nan", b"inf", b""]))
    if version == 9:
        mutate = _replace(key, np.array([[THETA_PV.encode()], [value]]))
    else:
        mutate = _replace(f"{key}/Values", np.array([value, b"off"]))
    return Breakage(f"{THETA_PV} = {value!r}", mutate, options, writer)


@st.composite
def maps_breakages(draw: st.DrawFn) -> Breakage:
    version = draw(st.sampled_from([10, 9]))
    writer = {"version": version}
    main, scalers = _maps_layout(version)
    keys = MAPS_KEYS[version]
    kind = draw(st.sampled_from(["dataset", "scalers", "names", "positions", "theta", "pvs"]))
    if kind == "dataset":
        return draw(_bad_dataset(main, {}, writer, _maps_shape_accepted(version), optional=(keys.get("theta"),)))
    if kind == "scalers":
        return draw(_bad_dataset(scalers, {"normalize": "i0"}, writer, _maps_shape_accepted(version)))
    if kind == "names":
        return draw(_bad_names([keys["names"], keys["scaler_names"]], {}, writer, [keys["names"]]))
    if kind == "positions":
        key, value = draw(st.sampled_from([keys["x"], keys["y"]])), draw(NON_FINITE)
        edge = draw(st.sampled_from([0, -1]))
        return Breakage(f"{key}[{edge}] = {value}", lambda f: f[key].__setitem__(edge, value), {}, writer)
    if kind == "theta" and version == 10:
        value = draw(st.sampled_from([math.nan, math.inf, b"abc", np.zeros(0)]))
        return Breakage(f"theta = {value!r}", _replace(keys["theta"], value), {}, writer)
    return draw(_bad_pvs(version))


@SETTINGS
@given(breakage=maps_breakages(), entry=ENTRIES, elements=st.sampled_from(["lines", "all"]))
def test_malformed_maps_is_refused(breakage, entry, elements):
    with tempfile.TemporaryDirectory() as tmp:
        good = write_maps(Path(tmp) / "good.h5", 0.0, **breakage.writer)
        bad = write_maps(Path(tmp) / "bad.h5", 1.0, **breakage.writer)
        with h5py.File(bad, "r+") as f:
            breakage.mutate(f)
        feed(entry, bad, good, tmp, elements=elements, **breakage.options)


# -- damaged and foreign files -----------------------------------------------------------------------------

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@SETTINGS
@given(data=st.data(), layout=st.sampled_from(["pyxrf", "maps"]), fmt=st.sampled_from(["auto", "given"]),
       entry=ENTRIES)
def test_truncated_hdf5_is_refused(data, layout, fmt, entry):
    with tempfile.TemporaryDirectory() as tmp:
        write = write_pyxrf if layout == "pyxrf" else write_maps
        good, bad = write(Path(tmp) / "good.h5", 0.0), write(Path(tmp) / "bad.h5", 1.0)
        content = bad.read_bytes()
        bad.write_bytes(content[: data.draw(st.integers(0, len(content) - 1), label="cut at byte")])
        feed(entry, bad, good, tmp, format="auto" if fmt == "auto" else layout)


@SETTINGS
@given(content=st.binary(max_size=4096), signed=st.booleans(), fmt=st.sampled_from(["auto", "pyxrf", "maps"]),
       suffix=st.sampled_from([".h5", ".h50", ".hdf5"]))
def test_random_bytes_are_refused(content, signed, fmt, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"scan2D_1{suffix}"
        path.write_bytes((HDF5_SIGNATURE if signed else b"") + content)
        assert_refused(lambda: read(path, format=fmt), path.name)
        dst = os.path.join(tmp, "out.zarr")
        assert_refused(lambda: ingest(path, dst, format=fmt, progress=False), path.name, dst)


# -- TIFF and its sidecar ----------------------------------------------------------------------------------

SIDECAR = {"elements": NAMES, "step_nm": [50.0, 40.0], "origin_nm": [0.0, 0.0], "scan_mode": "fly",
           "fast_axis": "x", "dwell_s": 0.05, "probe_fwhm_nm": 60.0, "units": "counts"}
NOT_A_NUMBER = st.text(max_size=6).filter(lambda s: not _parses_as_float(s))
# Values each sidecar key must refuse (None stands for "leave it out" where a key is optional).
BAD_SIDECAR_VALUES = {
    "elements": st.one_of(
        st.integers(), st.text(max_size=6), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        st.lists(st.none() | st.integers() | st.floats() | st.booleans() | st.just("") | st.just(" "),
                 min_size=3, max_size=3),
        st.just(["Ni_K", "Ni_K", "Mo_L"]),
        st.lists(st.sampled_from(["Fe_K", "Zn_K", "Cu_K", "Ca_K", "Ti_K"]), unique=True,
                 max_size=5).filter(lambda names: len(names) != len(NAMES)),
    ),
    "step_nm": st.one_of(
        st.floats(max_value=0), NON_FINITE, NOT_A_NUMBER, st.lists(st.floats(1, 100), min_size=3, max_size=4),
        st.lists(st.floats(1, 100), max_size=1), st.none(), st.booleans(), st.just([[1, 2], [3]]),
        st.just(10**400), st.lists(st.floats(max_value=0), min_size=2, max_size=2),
    ),
    "origin_nm": st.one_of(NON_FINITE, NOT_A_NUMBER, st.lists(st.floats(-10, 10), min_size=3, max_size=3),
                           st.just({"y": 1})),
    "angle_deg": st.one_of(NOT_A_NUMBER, NON_FINITE, st.lists(st.floats(-90, 90), min_size=2, max_size=3),
                           st.just({"deg": 1})),
    "scan_mode": st.one_of(st.text(max_size=6).filter(lambda s: s not in ("step", "fly")), st.integers(),
                           st.lists(st.just("fly"), min_size=1, max_size=2)),
    "fast_axis": st.one_of(st.text(max_size=3).filter(lambda s: s not in ("x", "y")), st.integers()),
    "dwell_s": st.one_of(st.floats(max_value=0), NON_FINITE, NOT_A_NUMBER),
    "probe_fwhm_nm": st.one_of(st.floats(max_value=0), NON_FINITE, NOT_A_NUMBER),
    "units": st.one_of(st.none(), st.integers(), st.lists(st.text(max_size=3), max_size=2)),
}
BROKEN_DOCUMENTS = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.sampled_from([
        '{"elements": ["Ni_K", "Co_K", "Mo_L"], "step_nm": 50',  # cut short
        "elements: [Ni_K, Co_K, Mo_L\nstep_nm: 50\n",  # unclosed list
        "elements:\n\t- Ni_K\n",  # tab indentation
        "!!python/object/apply:os.system ['true']\n",  # unsafe tag
        "[" * 20000 + "]" * 20000,  # deeper than the parser's recursion limit
        "elements: [Ni_K, Co_K, Mo_L]\nstep_nm: 50\n1: 2\nfoo: 3\n",  # unknown keys of mixed types
        "? [a, b]\n: 1\n",  # an unhashable key
    ]),
)


def write_tiff_case(path: Path, sidecar: dict | str | bytes, fmt: str, maps: np.ndarray | None = None) -> Path:
    """A TIFF with a sidecar (a mapping, or a document as text or bytes); ``maps`` are written as they are."""
    if isinstance(sidecar, dict):
        write_tiff(path, particles(SHAPE, 3, seed=0), sidecar, sidecar_format=fmt)
    else:
        write_tiff(path, particles(SHAPE, 3, seed=0), {}, sidecar_format=fmt)
        side = path.with_name(path.name + ".json") if fmt == "json" else path.with_suffix(".yaml")
        side.write_bytes(sidecar.encode() if isinstance(sidecar, str) else sidecar)
    if maps is not None:  # write_tiff casts to float32
        tifffile.imwrite(path, maps, photometric="minisblack")
    return path


@st.composite
def sidecar_breakages(draw: st.DrawFn) -> tuple[str, dict | str | bytes]:
    how = draw(st.sampled_from(["value", "value", "missing", "unknown key", "document"]))
    if how == "value":
        key = draw(st.sampled_from(sorted(BAD_SIDECAR_VALUES)))
        value = draw(BAD_SIDECAR_VALUES[key])
        return f"{key} = {value!r}", {**SIDECAR, "angle_deg": 1.0, key: value}
    if how == "missing":
        key = draw(st.sampled_from(["elements", "step_nm"]))
        return f"no {key}", {k: v for k, v in {**SIDECAR, "angle_deg": 1.0}.items() if k != key}
    if how == "unknown key":
        key = draw(st.text(max_size=8).filter(lambda k: k not in SIDECAR_KEYS))
        return f"unknown key {key!r}", {**SIDECAR, "angle_deg": 1.0, key: 1}
    document = draw(BROKEN_DOCUMENTS)
    return f"document {document[:40]!r}", document


@SETTINGS
@given(breakage=sidecar_breakages(), fmt=st.sampled_from(["json", "yaml"]), entry=ENTRIES)
def test_malformed_sidecar_is_refused(breakage, fmt, entry):
    _, sidecar = breakage
    with tempfile.TemporaryDirectory() as tmp:
        good = write_tiff_case(Path(tmp) / "good.tif", {**SIDECAR, "angle_deg": 0.0}, fmt)
        bad = write_tiff_case(Path(tmp) / "bad.tif", sidecar, fmt)
        feed(entry, bad, good, tmp, elements="all")


@st.composite
def tiff_breakages(draw: st.DrawFn) -> tuple[str, np.ndarray | None, Callable[[bytes], bytes] | None]:
    """Pages that do not match the sidecar, or the TIFF's bytes truncated or replaced."""
    how = draw(st.sampled_from(["pages", "dtype", "truncated", "random"]))
    if how == "pages":
        n = draw(st.integers(1, 6).filter(lambda n: n != len(NAMES)))
        return f"{n} pages", np.ones((n, *SHAPE), np.float32), None
    if how == "dtype":
        name, maps = draw(st.sampled_from([("complex", np.full((3, *SHAPE), 1 + 1j, np.complex64)),
                                           ("rgb", np.zeros((*SHAPE, 3), np.uint8)),
                                           ("4-D", np.ones((3, 2, *SHAPE), np.float32))]))
        return name, maps, None
    if how == "random":
        junk = draw(st.binary(max_size=2048))
        prefix = draw(st.sampled_from([b"", b"II*\x00", b"II*\x00\x08\x00\x00\x00", b"MM\x00*\x00\x00\x00\x08",
                                       b"II+\x00\x08\x00\x00\x00\x10\x00\x00\x00\x00\x00\x00\x00"]))
        return f"random bytes after {prefix!r}", None, lambda content: prefix + junk
    fraction = draw(st.floats(0, 1, exclude_max=True))
    return f"cut at {fraction:.3f}", None, lambda content: content[: int(len(content) * fraction)]


@SETTINGS
@given(breakage=tiff_breakages(), entry=ENTRIES)
def test_damaged_tiff_is_refused_or_read_intact(breakage, entry):
    _, maps, damage = breakage
    with tempfile.TemporaryDirectory() as tmp:
        good = write_tiff_case(Path(tmp) / "good.tif", {**SIDECAR, "angle_deg": 0.0}, "json")
        bad = write_tiff_case(Path(tmp) / "bad.tif", {**SIDECAR, "angle_deg": 1.0}, "json", maps)
        if damage is not None:
            original = read(bad, elements="all").values
            bad.write_bytes(damage(bad.read_bytes()))
            try:  # cutting off the last bytes may only drop a tag; the counts must then be intact
                with no_hang():
                    np.testing.assert_array_equal(read(bad, elements="all").values, original)
                return
            except XrfsrError:
                pass
        feed(entry, bad, good, tmp, elements="all")


# -- zarr stores -------------------------------------------------------------------------------------------

STORE_SHAPE = (3, *SHAPE)  # (element, y, x)
# Edits of one array's zarr.json that no reader may accept: each changes what the bytes mean or how they
# map to the coordinates. (label, key, value drawn); "drop" removes the key.
ARRAY_EDITS = {
    "zarr_format": st.sampled_from([2, 4, "3", None]),
    "node_type": st.sampled_from(["group", "dataset", "", 3]),
    "data_type": st.sampled_from(["float99", "int64", "complex128", "bool", "", 7, None, {"name": "x"}]),
    "shape": st.lists(st.integers(0, 9), max_size=4),
    "chunk_grid": st.sampled_from([
        {"name": "regular", "configuration": {"chunk_shape": [0, 2, 3]}},
        {"name": "irregular", "configuration": {"chunk_shape": [1, 2, 3]}},
        {"name": "regular", "configuration": {"chunk_shape": [1, 2]}},
        {"name": "regular"}, "regular", None,
    ]),
    "codecs": st.sampled_from([[], [{"name": "nosuch"}], [{"name": "bytes"}, {"name": "zstd"}], "bytes", None,
                               [{"name": "bytes", "configuration": {"endian": "middle"}}]]),
    "dimension_names": st.sampled_from(["drop", ["element", "y"], ["a", "b", "c"], ["y", "element", "x"], 5]),
    "fill_value": st.sampled_from(["abc", [1, 2], {"a": 1}]),
}


def _edit_json(doc: str, edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def damage(store: Path) -> None:
        path = store / doc
        meta = json.loads(path.read_text())
        edit(meta)
        path.write_text(json.dumps(meta))

    return damage


@st.composite
def _metadata_breakages(draw: st.DrawFn) -> tuple[str, Callable[[Path], None]]:
    """A zarr.json document (the root group, counts, or a coordinate) replaced by junk or edited wrongly."""
    doc = draw(st.sampled_from(["zarr.json", "counts/zarr.json", "x/zarr.json", "element/zarr.json"]))
    how = draw(st.sampled_from(["junk", "edit", "edit", "edit"]))
    if how == "junk":
        junk = draw(st.binary(max_size=64) | st.text(max_size=64).map(str.encode)
                    | st.sampled_from([b"", b"null", b"[]", b"1", b'"zarr"', b'{"zarr_format": 3}']))
        return f"{doc} = {junk!r}", lambda store: (store / doc).write_bytes(junk)
    if doc == "zarr.json":  # the group: only its format and node type matter to a reader
        key = draw(st.sampled_from(["zarr_format", "node_type"]))
        value = draw(ARRAY_EDITS[key].filter(lambda v: v != "group"))
    else:
        key = draw(st.sampled_from(sorted(ARRAY_EDITS)))
        value = draw(ARRAY_EDITS[key])
        if key == "shape" and value == ([*STORE_SHAPE] if doc == "counts/zarr.json" else [SHAPE[1]]):
            value = [*value, 1]  # the true shape is not a breakage
        if key == "fill_value" and doc == "element/zarr.json" and isinstance(value, str):
            value = [1, 2]  # any string is a valid fill value of the element names (a string array)
    if value == "drop":
        return f"{doc} without {key}", _edit_json(doc, lambda meta: meta.pop(key, None))
    return f"{doc}: {key} = {value!r}", _edit_json(doc, lambda meta: meta.__setitem__(key, value))


@st.composite
def store_breakages(draw: st.DrawFn) -> tuple[str, Callable[[Path], None]]:
    """``(label, damage(store))``: the root document removed, metadata broken, or counts chunks damaged."""
    how = draw(st.sampled_from(["no root document", "metadata", "chunk bytes", "chunk cut", "chunk deleted"]))
    if how == "no root document":
        return how, lambda store: (store / "zarr.json").unlink()
    if how == "metadata":
        return draw(_metadata_breakages())
    junk = draw(st.binary(max_size=64))
    pick = draw(st.integers(0, 1000))

    def damage(store: Path) -> None:
        chunks = sorted(p for p in (store / "counts" / "c").rglob("*") if p.is_file())
        chunk = chunks[pick % len(chunks)]
        content = chunk.read_bytes()
        if how == "chunk deleted":
            chunk.unlink()
        elif how == "chunk cut":
            chunk.write_bytes(content[: len(junk) % len(content)])
        else:
            chunk.write_bytes(junk if junk != content else junk + b"\x00")

    return how, damage


@settings(max_examples=40, deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow])
@given(breakage=store_breakages(), resume=st.booleans())
def test_damaged_store_is_refused(breakage, resume):
    """Reading a damaged store is refused naming it; a resume errs or restores it; overwrite replaces it."""
    _, damage = breakage
    with tempfile.TemporaryDirectory() as tmp:
        url = os.path.join(tmp, "maps.zarr")
        maps = xrf_maps(particles(SHAPE, 3, seed=0), elements=NAMES, step_nm=50.0)
        save(maps, url, chunks={"y": 2, "x": 3}, progress=False)
        damage(Path(url))
        assert_refused(lambda: open_xrf(url).compute(), url)
        if resume:  # a damaged store is never resumed into: the data would no longer match its layout
            with contextlib.suppress(XrfsrError), no_hang():
                save(maps, url, chunks={"y": 2, "x": 3}, resume=True, progress=False)
                np.testing.assert_array_equal(open_xrf(url).values, maps.values)  # resumed only if repaired
        save(maps, url, chunks={"y": 2, "x": 3}, overwrite=True, progress=False)  # replacing it always works
        xr.testing.assert_identical(open_xrf(url).compute(), maps)
