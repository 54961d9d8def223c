"""The sample grid of a labeled array: origin and step in nm, from a coordinate or a pixel size."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

__all__ = ["STEP_RTOL", "coord_grid", "grid_nm", "length_units_hint", "per_axis"]

STEP_RTOL = 1e-3
"""Relative tolerance within which coordinate steps count as equal (and agree with ``step_nm``)."""

_TO_NM = {"um": 1000, "µm": 1000, "micron": 1000, "mm": 1e6, "m": 1e9, "Å": 0.1, "angstrom": 0.1}


def length_units_hint(units: object) -> str:
    """`` (multiply by 1000)`` for positions in µm, and so on; empty for units it does not know."""
    factor = _TO_NM.get(str(units))
    return f" (multiply by {factor:g})" if factor else ""


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
            f"{name}: coordinate {dim!r} has units {units!r}; {purpose} in nm, so convert it"
            f"{length_units_hint(units)} (e.g. {name}.assign_coords({dim}={name}.{dim} * 1000) for µm) "
            "and set units='nm'."
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


def per_axis(pixel_nm: float | Sequence[float] | None, dims: Sequence[str]) -> list[float | None]:
    """``pixel_nm`` as one value (or ``None``) per dim of ``dims``."""
    if pixel_nm is None or np.ndim(pixel_nm) == 0:
        return [pixel_nm] * len(dims)  # type: ignore[list-item]
    values: list[float | None] = [float(v) for v in pixel_nm]  # type: ignore[union-attr]
    if len(values) != len(dims):
        raise ValueError(
            f"pixel_nm must be one number or {len(dims)} numbers (one per {tuple(dims)}); "
            f"got {pixel_nm!r}."
        )
    return values


def grid_nm(
    obj: xr.DataArray, dim: str, pixel_nm: float | None, *, name: str, purpose: str
) -> tuple[float, float]:
    """``(origin, step)`` in nm along ``dim``: from its coordinate, else from ``pixel_nm``.

    A ``pixel_nm`` given beside a coordinate must agree with its spacing;
    without a coordinate it is required, and the origin is 0.
    """
    grid = coord_grid(obj, dim, name=name, purpose=purpose)
    if grid is not None:
        if pixel_nm is not None and not math.isclose(pixel_nm, grid[1], rel_tol=STEP_RTOL):
            raise ValueError(
                f"pixel_nm={pixel_nm} disagrees with the {dim!r} coordinate spacing of {name} "
                f"({grid[1]:g} nm); drop pixel_nm or fix the coordinate."
            )
        return grid
    if pixel_nm is None:
        raise ValueError(
            f"{name}: dim {dim!r} has no coordinate in nm; pass pixel_nm=<pixel size in nm> "
            "or give it a coordinate."
        )
    if not (math.isfinite(pixel_nm) and pixel_nm > 0):
        raise ValueError(f"pixel_nm must be a positive number of nm; got {pixel_nm!r}.")
    return 0.0, float(pixel_nm)
