"""Parallel-beam geometry shared by every reconstruction backend.

A slice is an ``n × n`` image ``f[row, col]``. Relative to its centre
``((n - 1) / 2, (n - 1) / 2)`` a pixel at ``(y, x) = (row, col) - (n - 1) / 2``
projects at rotation angle ``theta`` to the detector position
``t = x cos(theta) + y sin(theta)`` (the convention of
:func:`xrfsr_dask.phantoms.project`), and detector pixel ``j`` (0-based) sits
at ``t = j - center``: ``center`` is the detector position of the rotation
axis, in pixels. The reconstruction grid is always centred on the axis.
"""

from __future__ import annotations

import numpy as np

__all__ = ["angle_weights", "check_center", "pixel_positions"]


def pixel_positions(n: int) -> np.ndarray:
    """Positions of ``n`` pixels relative to the grid centre: ``i - (n - 1) / 2``."""
    return np.arange(n, dtype=np.float64) - (n - 1) / 2


def angle_weights(theta_deg: np.ndarray) -> np.ndarray:
    """The share of the half circle each projection stands for, in radians.

    Directions repeat every 180 degrees in parallel beam, so angles are
    folded into ``[0, 180)`` and each gets half the gap to each neighbour
    (wrapping round). A gap wider than twice the median gap, a missing wedge,
    counts as twice the median: the unmeasured directions are left out of
    the filtered back-projection instead of being filled by its edge
    projections. Uniform angles over 180 or 360 degrees all get ``pi / n``.
    """
    folded = np.mod(np.asarray(theta_deg, dtype=np.float64), 180.0)
    order = np.argsort(folded, kind="stable")
    ordered = folded[order]
    gaps = np.diff(np.concatenate([ordered, ordered[:1] + 180.0]))
    positive = gaps[gaps > 0]
    if positive.size > 2:
        gaps = np.minimum(gaps, 2 * np.median(positive))
    share = 0.5 * (gaps + np.roll(gaps, 1))
    weights = np.empty_like(share)
    weights[order] = share
    return np.deg2rad(weights)


def check_center(center: float, n_detector: int) -> float:
    """``center`` as a float, refused when it lies outside the detector."""
    value = float(center)
    if not np.isfinite(value) or not 0.0 <= value <= n_detector - 1:
        raise ValueError(
            f"center={center!r} pixels is outside the detector (0 to {n_detector - 1} for "
            f"{n_detector} pixels); it is the detector position of the rotation axis in "
            "pixels. Find it with xrfsr_dask.tomo.find_center, or give the middle "
            f"{(n_detector - 1) / 2}."
        )
    return value
