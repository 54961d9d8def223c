"""The sample grid of a labeled array: origin and step in nm from a coordinate."""

from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["STEP_RTOL", "coord_grid"]

STEP_RTOL = 1e-3
"""Relative tolerance within which coordinate steps count as equal."""


def coord_grid(obj: xr.DataArray, dim: str, *, name: str, purpose: str) -> tuple[float, float] | None:
    """``(origin, step)`` in nm of the coordinate of ``dim``; ``None`` without one (or with one sample).

    Refuses a coordinate in other units than nm, or one that is not an
    increasing uniform grid, naming ``name`` (the argument) and ``purpose``
    (what needs the grid) in the message.
    """
    if dim not in obj.coords:
        return None
    values = np.asarray(obj[dim].values, dtype=np.float64)
    units = obj[dim].attrs.get("units", "nm")
    if units != "nm":
        raise ValueError(
            f"{name}: coordinate {dim!r} has units {units!r}; {purpose} in nm, so convert it "
            f"(e.g. {name}.assign_coords({dim}={name}.{dim} * 1000) for µm) and set units='nm'."
        )
    if values.size < 2:
        return None
    steps = np.diff(values)
    if steps[0] <= 0 or not np.allclose(steps, steps[0], rtol=STEP_RTOL):
        raise ValueError(
            f"{name}: coordinate {dim!r} is not an increasing uniform grid (steps "
            f"{steps[:4].tolist()}...); {purpose} on evenly spaced samples."
        )
    return float(values[0]), float(steps[0])
