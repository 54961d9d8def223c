"""The parallel-beam geometry of the library, one home for every projector and backend.

A slice is an ``n × n`` image ``f[row, col]``. Relative to its centre
``((n - 1) / 2, (n - 1) / 2)`` a pixel at ``(y, x) = (row, col) - (n - 1) / 2``
projects at rotation angle ``theta`` to the detector position
``t = x cos(theta) + y sin(theta)``, and detector pixel ``j`` (0-based) sits
at ``t = j - center``: ``center`` is the detector position of the rotation
axis, in pixels. The reconstruction grid is always centred on the axis.

In a volume ``(z, y, x)`` the rotation axis is ``z``; it becomes the
projection's ``y``. So at 0 degrees the beam runs along ``y`` and a
projection is the sum along ``y``; at 90 degrees it runs along ``x``
(``t = y``); at 180 degrees it is the 0-degree one mirrored in ``x``.

Two discretisations of this geometry are used, both here in ``tomo``:

* :func:`footprint`, distance-driven (each pixel a box of width
  ``max(|cos|, |sin|)`` on the detector; counts conserved, exact at multiples
  of 90 degrees): the forward model of :func:`xrfsr_dask.tomo.project`;
* :class:`xrfsr_dask.tomo._torch.Projector`, pixel-driven with linear
  interpolation and its exact transpose: the matched pair of the PyTorch
  SIRT and MLEM, which run on any torch device.

References
----------
De Man, B. & Basu, S. Distance-driven projection and backprojection in
three dimensions. Phys. Med. Biol. 49, 2463 (2004).
https://doi.org/10.1088/0031-9155/49/11/024
"""

from __future__ import annotations

import math

import numpy as np
from scipy import sparse

__all__ = ["angle_weights", "check_center", "footprint", "pixel_positions"]


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


def footprint(ny: int, nx: int, theta_deg: float) -> sparse.csr_array:
    """Distance-driven weights ``(nx, ny * nx)`` spreading each (y, x) pixel over the detector at one angle.

    The detector has ``nx`` pixels centred on the rotation axis (``center =
    (nx - 1) / 2``); the weights of a pixel whose box lies on the detector sum
    to one.
    """
    theta = math.radians(theta_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    t = (pixel_positions(nx)[None, :] * cos + pixel_positions(ny)[:, None] * sin).ravel() + (nx - 1) / 2
    width = max(abs(cos), abs(sin))
    left = t - width / 2
    first = np.floor(left + 0.5)
    w_first = np.clip((first + 0.5 - left) / width, 0.0, 1.0)
    bins = np.concatenate([first, first + 1]).astype(np.int64)
    pixels = np.tile(np.arange(ny * nx), 2)
    weights = np.concatenate([w_first, 1.0 - w_first])
    keep = (bins >= 0) & (bins < nx) & (weights > 0)
    return sparse.csr_array((weights[keep], (bins[keep], pixels[keep])), shape=(nx, ny * nx))
