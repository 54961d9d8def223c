"""The rotation centre of a projection series: from opposite projections, or by sharpness.

Two methods:

* ``"opposite"``: a projection at ``theta + 180`` degrees is the one at
  ``theta`` mirrored about the rotation axis. Registering each such pair
  (one mirrored) by phase correlation with sub-pixel refinement gives the
  shift ``d`` between them, and the axis sits at ``(nx - 1 + d) / 2``.
* ``"sharpness"``: for series without opposite pairs, a few sinogram rows
  are reconstructed (FBP, ``nufft``) for candidate centres; a wrong centre
  smears every feature into arcs whose filtered tails go negative, while
  the counts of a fluorescence slice cannot, so the centre that minimises
  the negative mass of the slices (relative to their absolute mass) is
  taken, searched on a 1 pixel grid, then refined on a 0.1 pixel grid.
  Unlike the total variation of the slices, this criterion is not swamped
  by counting noise.

References
----------
Guizar-Sicairos, M., Thurman, S. T. & Fienup, J. R. Efficient subpixel
image registration algorithms. Opt. Lett. 33, 156 (2008),
https://doi.org/10.1364/OL.33.000156.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr
from skimage.registration import phase_cross_correlation

from xrfsr_dask._grid import coord_grid
from xrfsr_dask.schema import validate
from xrfsr_dask.tomo import _nufft

__all__ = ["OPPOSITE_TOLERANCE_DEG", "RotationCenter", "find_center"]

OPPOSITE_TOLERANCE_DEG = 0.05
"""Two angles count as opposite when they differ by 180 degrees within this."""


@dataclass(frozen=True)
class RotationCenter:
    """Where the rotation axis crosses the detector.

    Attributes
    ----------
    pixel
        Detector position in pixels, 0-based (``(nx - 1) / 2`` is the middle).
    nm
        The same position in the projections' ``x`` coordinate, nm.
    offset_pixel
        ``pixel`` minus the detector's middle.
    method
        ``"opposite"`` or ``"sharpness"``.
    spread_pixel
        Opposite pairs: the median absolute deviation of the pairs' centres;
        sharpness: the step of the final search grid.
    """

    pixel: float
    nm: float
    offset_pixel: float
    method: str
    spread_pixel: float


def _opposite_pairs(theta: np.ndarray) -> list[tuple[int, int]]:
    pairs = []
    for i, angle in enumerate(theta):
        j = int(np.argmin(np.abs(theta - (angle + 180.0))))
        if abs(theta[j] - angle - 180.0) <= OPPOSITE_TOLERANCE_DEG:
            pairs.append((i, j))
    return pairs


def _from_pairs(images: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[float, float]:
    n_det = images.shape[-1]
    centres = []
    for i, j in pairs:
        shift, _, _ = phase_cross_correlation(images[i], images[j][:, ::-1], upsample_factor=20, normalization=None)
        centres.append((n_det - 1 + shift[1]) / 2)
    found = np.asarray(centres)
    median = float(np.median(found))
    return median, float(np.median(np.abs(found - median)))


def _sharpness(sino: np.ndarray, theta: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Negative mass of the FBP slices over their absolute mass, per candidate centre."""
    scores = []
    for centre in candidates:
        slices = _nufft.fbp(sino, theta, center=float(centre), n=n, filter_name="shepp-logan")
        scores.append(-np.minimum(slices, 0).sum() / max(float(np.abs(slices).sum()), 1e-30))
    return np.asarray(scores)


def _from_sharpness(sino: np.ndarray, theta: np.ndarray, search: float) -> float:
    n_det = sino.shape[-1]
    middle = (n_det - 1) / 2
    low, high = max(0.0, middle - search), min(n_det - 1.0, middle + search)
    # The grid is wide enough that the sample stays inside it for every
    # candidate: a sample pushed off the grid would lose variation and win.
    n = n_det + 2 * math.ceil(search)
    coarse = np.arange(np.ceil(low), np.floor(high) + 1)
    best = coarse[int(np.argmin(_sharpness(sino, theta, coarse, n)))]
    fine = np.clip(best + np.arange(-1.0, 1.0001, 0.1), 0, n_det - 1)
    return float(fine[int(np.argmin(_sharpness(sino, theta, fine, n)))])


def find_center(
    series: xr.DataArray,
    *,
    method: Literal["auto", "opposite", "sharpness"] = "auto",
    element: str | None = None,
    rows: int = 8,
    search_pixel: float | None = None,
) -> RotationCenter:
    """Find the detector position of the rotation axis.

    Parameters
    ----------
    series
        Projections ``(element, angle, y, x)``, NumPy or dask backed (only the
        projections needed are read).
    method
        ``"opposite"`` needs projections 180 degrees apart (within
        :data:`OPPOSITE_TOLERANCE_DEG`); ``"sharpness"`` works with any
        angles; ``"auto"`` takes ``"opposite"`` when there are such pairs.
    element
        The element to use; default the sum of all elements.
    rows
        Sharpness: how many sinogram rows (those with the most counts) to
        reconstruct per candidate.
    search_pixel
        Sharpness: how far from the detector's middle to search, in pixels;
        default a quarter of the detector.

    Returns
    -------
    RotationCenter
        The centre in pixels and nm; pass it to
        :func:`~xrfsr_dask.tomo.reconstruct` as ``center``.

    Examples
    --------
    >>> from xrfsr_dask import nmc_volume, project
    >>> from xrfsr_dask.tomo import find_center
    >>> series = project(nmc_volume(shape=(8, 48, 48), seed=1), angles=range(0, 360, 4))
    >>> round(find_center(series).offset_pixel, 1)
    0.0
    """
    validate(series, "series", caller="find_center")
    if method not in ("auto", "opposite", "sharpness"):
        raise ValueError(f"method={method!r} is not one of ('auto', 'opposite', 'sharpness').")
    chosen = series.sel(element=element) if element is not None else series.sum("element", skipna=False)
    theta = np.asarray(series.angle.values, dtype=np.float64)
    n_det = series.sizes["x"]
    pairs = _opposite_pairs(theta)
    if method == "opposite" and not pairs:
        raise ValueError(
            f"method='opposite' needs projections 180 degrees apart; the angles "
            f"({theta.min():.4g} to {theta.max():.4g} deg) have none within "
            f"{OPPOSITE_TOLERANCE_DEG} deg. Use method='sharpness'."
        )
    if method == "opposite" or (method == "auto" and pairs):
        needed = sorted({k for pair in pairs for k in pair})
        images = np.zeros((len(theta),) + chosen.shape[1:], dtype=np.float64)
        images[needed] = np.asarray(chosen.isel(angle=needed).values, dtype=np.float64)
        pixel, spread = _from_pairs(images, pairs)
        used = "opposite"
    else:
        data = np.asarray(chosen.values, dtype=np.float32)
        brightest = np.sort(np.argsort(data.sum(axis=(0, 2)))[-rows:])
        sino = np.ascontiguousarray(data[:, brightest].transpose(1, 0, 2))
        pixel = _from_sharpness(sino, theta, n_det / 4 if search_pixel is None else float(search_pixel))
        spread, used = 0.1, "sharpness"
    x0, step = coord_grid(series, "x", name="series", purpose="find_center reports nm") or (0.0, 1.0)
    return RotationCenter(
        pixel=pixel, nm=x0 + step * pixel, offset_pixel=pixel - (n_det - 1) / 2, method=used, spread_pixel=spread
    )
