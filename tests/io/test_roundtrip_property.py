"""Property: any valid series written and read back is identical, locally and on S3."""

import uuid

import numpy as np
import xarray as xr
from hypothesis import HealthCheck, given, settings

from xrfsr_dask import open_xrf, save
from xrfsr_dask.testing.strategies import xrf_series

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(case=xrf_series())
def test_local_round_trip_is_identical(tmp_path, case):
    series, chunks = case
    url = str(tmp_path / f"{uuid.uuid4().hex}.zarr")
    save(series, url, chunks=chunks, progress=False)
    back = open_xrf(url).compute()
    xr.testing.assert_identical(back, series)
    np.testing.assert_array_equal(np.isnan(back.values), np.isnan(series.values))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=xrf_series(max_side=5))
def test_s3_round_trip_is_identical(s3_bucket, case):
    series, chunks = case
    prefix, options = s3_bucket
    url = f"{prefix}/{uuid.uuid4().hex}.zarr"
    save(series, url, chunks=chunks, storage_options=options, progress=False)
    xr.testing.assert_identical(open_xrf(url, storage_options=options).compute(), series)
