"""Hypothesis strategies for data-model arrays (needs ``hypothesis``, a test dependency)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from xrfsr_dask.schema import xrf_maps

__all__ = ["element_names", "xrf_series"]

# Unicode element labels: letters, digits, underscore, plus a few non-ASCII.
element_names = st.text(
    alphabet=st.sampled_from("ABCDEFGHIKLMNOPRSTUVWXYZabcdefghiklmnoprstuvwxyz0123456789_µéÅ線"),
    min_size=1, max_size=12,
)


@st.composite
def xrf_series(draw: st.DrawFn, max_side: int = 9) -> tuple:
    """``(series, chunks)``: a small float32 series with odd shapes, NaN regions and unicode names."""
    n_el = draw(st.integers(1, 3))
    n_angle = draw(st.integers(1, 3))
    ny, nx = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    values = draw(hnp.arrays(np.float32, (n_el, n_angle, ny, nx),
                             elements=st.floats(-1e6, 1e6, width=32) | st.just(np.nan)))
    names = draw(st.lists(element_names, min_size=n_el, max_size=n_el, unique=True))
    angles = draw(st.lists(st.floats(-360, 360, allow_nan=False), min_size=n_angle, max_size=n_angle, unique=True))
    step = (draw(st.floats(0.5, 500)), draw(st.floats(0.5, 500)))
    origin = (draw(st.floats(-1e5, 1e5)), draw(st.floats(-1e5, 1e5)))
    series = xrf_maps(values, elements=names, step_nm=step, origin_nm=origin, angles=angles,
                      scan_mode=draw(st.sampled_from(["step", "fly"])))
    chunks = {"element": draw(st.integers(1, n_el)), "angle": draw(st.integers(1, n_angle)),
              "y": draw(st.integers(1, ny)), "x": draw(st.integers(1, nx))}
    return series, chunks
