"""normalize: flux scaling restores counts, NaN filled, negatives clipped."""

import numpy as np
import pytest
import xarray as xr

from xrfsr_dask import nmc_volume, project
from xrfsr_dask.tomo import normalize


@pytest.fixture(scope="module")
def series():
    return project(nmc_volume(shape=(8, 32, 32), seed=2), angles=np.arange(0.0, 180.0, 15.0))


def test_scaler_flux_restores_counts_at_mean_flux(series):
    flux = xr.DataArray(np.linspace(0.5, 2.0, series.sizes["angle"]), dims="angle")
    measured = (series * flux.assign_coords(angle=series.angle)).rename("counts")
    out = normalize(measured, flux=flux)
    np.testing.assert_allclose(out.values, (series * float(flux.mean())).values, rtol=1e-5, atol=1e-6)
    assert out.dtype == measured.dtype and out.dims == series.dims
    assert out.attrs["provenance"][-1]["parameters"] == {"flux": "scaler", "nan": "keep", "negative": "keep"}


def test_total_flux_equalises_projection_totals(series):
    gain = xr.DataArray(np.linspace(0.7, 1.3, series.sizes["angle"]), dims="angle", coords={"angle": series.angle})
    out = normalize((series * gain).rename("counts"), flux="total")
    totals = out.sum(("element", "y", "x")).values
    np.testing.assert_allclose(totals, totals.mean(), rtol=1e-5)


def test_nan_interpolated_and_negative_clipped(series, no_dask_compute):
    values = series.values.copy()
    values[0, 2, 5, 12] = np.nan
    values[1, 3, 4, :] = np.nan
    values[2, 0, 0, 0] = -4.0
    bad = series.copy(data=values).chunk({"angle": 5})
    with no_dask_compute():
        lazy = normalize(bad, nan="interpolate", negative="clip")
    out = lazy.values
    assert np.isfinite(out).all() and out.min() >= 0
    assert out[0, 2, 5, 12] == pytest.approx(0.5 * (values[0, 2, 5, 11] + values[0, 2, 5, 13]), rel=1e-5)
    np.testing.assert_allclose(out[1, 3, 4], 0.5 * (values[1, 3, 3] + values[1, 3, 5]), rtol=1e-5, atol=1e-6)
    assert np.isnan(normalize(series.copy(data=values)).values).sum() == 1 + series.sizes["x"]
    assert (normalize(series.copy(data=values), nan="zero").values[1, 3, 4] == 0).all()


def test_bad_flux_named(series):
    with pytest.raises(ValueError, match=r"flux has 3 angles but the series has 12"):
        normalize(series, flux=xr.DataArray([1.0, 2.0, 3.0], dims="angle"))
    with pytest.raises(ValueError, match=r"flux must be a DataArray over 'angle'"):
        normalize(series, flux=np.ones(12))
    with pytest.raises(ValueError, match=r"flux='i0': give a DataArray"):
        normalize(series, flux="i0")
    with pytest.raises(ValueError, match=r"nan must be one of \('keep', 'interpolate', 'zero'\); got 'drop'"):
        normalize(series, nan="drop")
