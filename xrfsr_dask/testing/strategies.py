"""Hypothesis strategies for data-model arrays (needs ``hypothesis``, a test dependency)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xrfsr_dask.schema import xrf_maps, xrf_volume

__all__ = ["element_names", "xrf_arrays", "xrf_series"]

# Element labels: beamline-like names (letters, digits, underscore and a few
# non-ASCII letters), or any Unicode text at all (control characters, NUL,
# emoji, right-to-left scripts, whitespace).
element_names = st.one_of(
    st.text(
        alphabet=st.sampled_from("ABCDEFGHIKLMNOPRSTUVWXYZabcdefghiklmnoprstuvwxyz0123456789_µéÅ線"),
        min_size=1, max_size=12,
    ),
    st.text(min_size=1, max_size=12),
)


def _chunk(draw: st.DrawFn, n: int) -> int:
    """A chunk size for an axis of ``n``: often 1 pixel or the whole axis, else anything between."""
    return draw(st.sampled_from([1, n]) | st.integers(1, n))


@st.composite
def xrf_arrays(
    draw: st.DrawFn, max_side: int = 9, kinds: Sequence[str] = ("maps", "series", "volume")
) -> tuple[xr.DataArray, dict[str, int]]:
    """``(data, chunks)``: small float32 maps, series or volumes with odd shapes and storage chunks.

    Values are finite floats with scattered NaN, and often a NaN box (a
    region with no data, as beam loss or a mask leaves); names are unique
    but otherwise arbitrary Unicode; chunk sizes are often 1 pixel.
    """
    kind = draw(st.sampled_from(list(kinds)))
    n_el = draw(st.integers(1, 3))
    middle: tuple[int, ...] = () if kind == "maps" else (draw(st.integers(1, 3)),)  # angles or z slices
    ny, nx = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    shape = (n_el, *middle, ny, nx)
    values = draw(hnp.arrays(np.float32, shape, elements=st.floats(-1e6, 1e6, width=32) | st.just(np.nan)))
    if draw(st.booleans()):
        box = tuple(slice(start, start + draw(st.integers(1, n - start)))
                    for n in shape for start in [draw(st.integers(0, n - 1))])
        values[box] = np.nan
    names = draw(st.lists(element_names, min_size=n_el, max_size=n_el, unique=True))
    if kind == "volume":
        voxel = tuple(draw(st.floats(0.5, 500)) for _ in range(3))
        origin = tuple(draw(st.floats(-1e5, 1e5)) for _ in range(3))
        data = xrf_volume(values, elements=names, voxel_nm=voxel, origin_nm=origin)
    else:
        angles = None
        if kind == "series":
            angles = draw(st.lists(st.floats(-360, 360, allow_nan=False), min_size=middle[0], max_size=middle[0],
                                   unique=True))
        data = xrf_maps(
            values, elements=names, angles=angles,
            step_nm=(draw(st.floats(0.5, 500)), draw(st.floats(0.5, 500))),
            origin_nm=(draw(st.floats(-1e5, 1e5)), draw(st.floats(-1e5, 1e5))),
            scan_mode=draw(st.sampled_from(["step", "fly"])),
            fast_axis=draw(st.sampled_from(["x", "y"])),
            probe_fwhm_nm=draw(st.none() | st.floats(1, 200)),
            dwell_s=draw(st.none() | st.floats(1e-4, 10)),
        )
    chunks = {str(dim): _chunk(draw, n) for dim, n in zip(data.dims, data.shape, strict=True)}
    return data, chunks


@st.composite
def xrf_series(draw: st.DrawFn, max_side: int = 9) -> tuple[xr.DataArray, dict[str, int]]:
    """``(series, chunks)``: a small float32 series with odd shapes, NaN regions and unicode names."""
    return draw(xrf_arrays(max_side=max_side, kinds=("series",)))
