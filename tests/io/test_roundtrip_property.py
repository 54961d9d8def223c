"""Property: any valid dataset written and read back is identical, locally and on S3.

Maps, series and volumes with odd shapes, 1-pixel chunks, NaN values and
NaN regions, and element names in any Unicode (xrfsr_dask.testing.strategies).
"""

import os
import tempfile
import uuid

import numpy as np
import xarray as xr
from hypothesis import HealthCheck, example, given, settings

from xrfsr_dask import open_xrf, save, store_status, xrf_maps
from xrfsr_dask.testing.strategies import xrf_arrays


def _every_aspect() -> tuple[xr.DataArray, dict[str, int]]:
    """One case that has them all: non-ASCII and control characters, a NaN box, 1-pixel chunks."""
    counts = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    counts[1, :, 1:3, 2:] = np.nan
    series = xrf_maps(counts, elements=["Ni_K", "線\x00 😀\u05d0"], step_nm=(7.5, 3.0), origin_nm=(-1e4, 2.5),
                      angles=[-0.5, 179.0])
    return series, {"element": 1, "angle": 1, "y": 1, "x": 1}


def assert_round_trip(data: xr.DataArray, url: str, chunks: dict[str, int], storage_options=None) -> None:
    save(data, url, chunks=chunks, storage_options=storage_options, progress=False)
    assert store_status(url, storage_options=storage_options).complete is True
    back = open_xrf(url, storage_options=storage_options)
    assert back.encoding["chunks"] == tuple(chunks[d] for d in data.dims)
    back = back.compute()
    xr.testing.assert_identical(back, data)
    np.testing.assert_array_equal(np.isnan(back.values), np.isnan(data.values))
    assert back.attrs == data.attrs


@settings(max_examples=20, deadline=None)
@given(case=xrf_arrays())
@example(case=_every_aspect())
def test_local_round_trip_is_identical(case):
    data, chunks = case
    with tempfile.TemporaryDirectory() as tmp:
        assert_round_trip(data, os.path.join(tmp, "data.zarr"), chunks)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=xrf_arrays(max_side=4))
@example(case=_every_aspect())
def test_s3_round_trip_is_identical(s3_bucket, case):
    data, chunks = case
    prefix, options = s3_bucket  # one bucket for all examples: each writes its own store
    assert_round_trip(data, f"{prefix}/{uuid.uuid4().hex}.zarr", chunks, storage_options=options)
