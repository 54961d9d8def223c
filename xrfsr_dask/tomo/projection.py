"""Parallel-beam XRF projections of a volume: the forward model of the tomography."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import xarray as xr

from xrfsr_dask import _progress
from xrfsr_dask.schema import check_degrees, validate, xrf_maps
from xrfsr_dask.tomo._geometry import footprint

__all__ = ["project"]


def project(
    volume: xr.DataArray,
    *,
    angles: Sequence[float] | np.ndarray,
    progress: bool = False,
) -> xr.DataArray:
    """Parallel-beam XRF projections of a volume: a tomography series.

    The fluorescence a detector pixel records is the sum of the emission
    along the beam through the sample. Self-absorption of the incident beam
    and of the fluorescence, and the detector's solid angle, are ignored.

    Parameters
    ----------
    volume
        Counts ``(element, z, y, x)`` with the same voxel size along y and x
        (NumPy or dask; a dask volume is computed).
    angles
        Rotation angles in degrees, 1-D, finite and distinct.
    progress
        Show a progress bar over the angles.

    Returns
    -------
    xarray.DataArray
        Float32 series ``(element, angle, y, x)`` in the units of the volume
        (counts per voxel become counts per projection pixel), with
        ``step_nm`` (voxel z, voxel x), ``scan_mode="step"``,
        ``probe_fwhm_nm`` None, and the volume's provenance followed by
        ``xrfsr_dask.tomo.project``.

    Notes
    -----
    Geometry (every reconstruction backend of :mod:`xrfsr_dask.tomo` follows it):

    * The rotation axis is the volume's z axis and becomes the projection's
      y axis: the projection's ``y`` coordinate is the volume's ``z``.
    * Relative to the rotation centre, the centre of the volume's (y, x)
      plane, a voxel at ``(y, x)`` appears at detector position
      ``t = x cos(theta) + y sin(theta)``, also relative to the centre. The
      detector has the volume's x grid: the projection's ``x`` coordinate is
      the volume's ``x``, with ``nx`` pixels.
    * So at 0 degrees the beam runs along y and the projection is
      ``volume.sum("y")``; at 90 degrees it runs along x and the projection
      is ``volume.sum("x")`` laid out along the detector (``t = y``); at 180
      degrees it is the 0-degree one mirrored in x.
    * Up to interpolation, this is
      ``scipy.ndimage.rotate(v, theta, axes=(y, x), reshape=False)`` summed
      along y, for ``v`` the volume of one element as a NumPy array.

    Each voxel's counts are spread over the detector as a box of width
    ``max(|cos theta|, |sin theta|)`` pixels centred on its ``t`` (the
    distance-driven footprint), which conserves counts exactly and is exact
    at multiples of 90 degrees. Counts of voxels that project beyond the
    detector are lost; nothing is lost for a sample inside the cylinder
    inscribed in the volume's (y, x) plane.

    References
    ----------
    De Man, B. & Basu, S. Distance-driven projection and backprojection in
    three dimensions. Phys. Med. Biol. 49, 2463 (2004).
    https://doi.org/10.1088/0031-9155/49/11/024

    Examples
    --------
    >>> from xrfsr_dask.phantoms import nmc_volume
    >>> volume = nmc_volume((32, 32, 32), seed=1)
    >>> series = project(volume, angles=[0.0, 90.0])
    >>> series.dims, series.shape
    (('element', 'angle', 'y', 'x'), (4, 2, 32, 32))
    >>> bool(np.allclose(series.isel(angle=0), volume.sum("y")))
    True
    """
    validate(volume, "volume", caller="project")
    dz, dy, dx = (float(v) for v in volume.attrs["voxel_nm"])
    if not math.isclose(dy, dx, rel_tol=1e-6):
        raise ValueError(
            f"project needs square voxels in the (y, x) rotation plane; got voxel_nm = "
            f"{volume.attrs['voxel_nm']}. Resample y or x to a common step first, e.g. with "
            "volume.interp(y=...)."
        )
    theta = check_degrees(angles, what="angles", fix="pass numpy.rad2deg(angles).")
    n_elements, nz, ny, nx = volume.shape
    # One column per (element, z) row of the volume, one row per (y, x) pixel.
    columns = np.asarray(volume.data, dtype=np.float64).reshape(n_elements * nz, ny * nx).T.copy()
    out = np.empty((n_elements, theta.size, nz, nx), dtype=np.float32)
    for i, angle in enumerate(_progress.bar(theta, desc="project", unit="angle", disable=not progress)):
        out[:, i] = (footprint(ny, nx, float(angle)) @ columns).T.reshape(n_elements, nz, nx)
    series = xrf_maps(
        out, elements=[str(e) for e in volume.element.values], step_nm=(dz, dx),
        origin_nm=(float(volume.z[0]), float(volume.x[0])), angles=theta.tolist(), probe_fwhm_nm=None,
        scan_mode="step", units=volume.attrs["units"], operation="xrfsr_dask.tomo.project",
        parameters={"angles": theta.tolist(), "progress": progress},
    )
    series.attrs["provenance"] = [*volume.attrs["provenance"], *series.attrs["provenance"]]
    return series
