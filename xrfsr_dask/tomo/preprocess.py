"""Preparing a projection series for reconstruction: flux normalisation, NaN and negative pixels."""

from __future__ import annotations

from typing import Literal

import xarray as xr

from xrfsr_dask.schema import add_provenance, check_nan_policy, flux_factor, validate

__all__ = ["normalize"]


def normalize(
    series: xr.DataArray,
    *,
    flux: xr.DataArray | Literal["total"] | None = None,
    nan: Literal["keep", "interpolate", "zero"] = "keep",
    negative: Literal["keep", "clip"] = "keep",
) -> xr.DataArray:
    """Counts at one incident flux for every projection, with NaN and negative pixels handled.

    Parameters
    ----------
    series
        Projections ``(element, angle, y, x)``, NumPy or dask backed.
    flux
        The incident flux of each projection, from the beamline's ion chamber
        scaler (``i0``): a DataArray over ``angle`` (one value per
        projection) or over ``(angle, y, x)`` (per pixel). Counts become
        ``counts * mean(flux) / flux``, so they keep their scale; pixels with
        flux 0 or less become NaN. ``"total"`` uses the total counts of each
        projection (all elements) instead: in parallel beam without
        self-absorption every projection holds the same total, so its
        variation is the flux's. ``None`` leaves the counts as they are.
    nan
        ``"keep"`` (reconstruction refuses NaN and names where they are),
        ``"interpolate"`` (linear along ``x`` from the nearest finite pixels
        of the row, then along ``y`` for rows without any), or ``"zero"``.
    negative
        ``"clip"`` sets negative counts (from a background subtraction) to 0.

    Returns
    -------
    xarray.DataArray
        The series, lazy if the input was, with a provenance record.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xrfsr_dask import nmc_volume, project
    >>> from xrfsr_dask.tomo import normalize
    >>> series = project(nmc_volume(shape=(8, 32, 32), seed=1), angles=[0, 60, 120])
    >>> i0 = xr.DataArray([1.0, 0.5, 2.0], dims="angle", coords={"angle": series.angle})
    >>> normalize(series * i0, flux=i0).sum(("element", "y", "x")).values.round(-1).tolist() == (
    ...     (series * i0.mean()).sum(("element", "y", "x")).values.round(-1).tolist())
    True
    """
    validate(series, "series", caller="normalize")
    check_nan_policy(nan, ("keep", "interpolate", "zero"))
    if negative not in ("keep", "clip"):
        raise ValueError(f"negative={negative!r} is not one of ('keep', 'clip').")
    out = series
    flux_kind = None if flux is None else flux if isinstance(flux, str) else "scaler"
    if isinstance(flux, str):
        if flux != "total":
            raise ValueError(f"flux={flux!r}: give a DataArray of scaler counts, 'total' or None.")
        flux = series.sum(("element", "y", "x"))
    if flux is not None:
        if not isinstance(flux, xr.DataArray) or "angle" not in flux.dims or not set(flux.dims) <= {"angle", "y", "x"}:
            raise ValueError(
                "flux must be a DataArray over 'angle' (one value per projection) or over "
                f"('angle', 'y', 'x'); got {type(flux).__name__} with dims {getattr(flux, 'dims', None)}."
            )
        if flux.sizes["angle"] != series.sizes["angle"]:
            raise ValueError(
                f"flux has {flux.sizes['angle']} angles but the series has {series.sizes['angle']}; "
                "give one flux value per projection."
            )
        flux = flux.assign_coords(angle=series.angle) if "angle" not in flux.coords else flux
        out = (out * flux_factor(flux)).astype(series.dtype)
    if nan == "interpolate":
        full = out.chunk({"y": -1, "x": -1}) if out.chunks else out
        out = full.interpolate_na("x", method="linear", fill_value="extrapolate").interpolate_na(
            "y", method="linear", fill_value="extrapolate"
        )
    elif nan == "zero":
        out = out.fillna(0)
    if negative == "clip":
        out = out.clip(min=0)
    out = out.transpose(*series.dims).astype(series.dtype)
    out.attrs = dict(series.attrs)
    out.name = series.name
    parameters = {"flux": flux_kind, "nan": nan, "negative": negative}
    return add_provenance(out, "xrfsr_dask.tomo.normalize", parameters)
