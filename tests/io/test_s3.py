"""zarr v3 on a real S3 server (moto in server mode on 127.0.0.1)."""

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from xrfsr_dask import (
    SourceNotFoundError,
    StoreExistsError,
    open_xrf,
    save,
    store_status,
)


def test_s3_round_trip_is_identical(s3_bucket, series):
    prefix, options = s3_bucket
    url = f"{prefix}/archive/series.zarr"
    summary = save(series, url, chunks={"y": 16, "x": 16}, storage_options=options, progress=False)
    assert summary.chunks_written == summary.chunks_total == 2 * 3 * 2 * 2
    back = open_xrf(url, storage_options=options)
    assert isinstance(back.data, dsa.Array)
    xr.testing.assert_identical(back.compute(), series)
    assert back.attrs == series.attrs
    assert store_status(url, storage_options=options).complete is True


def test_s3_refuses_overwrite_and_names_missing_store(s3_bucket, series):
    prefix, options = s3_bucket
    url = f"{prefix}/s.zarr"
    save(series, url, storage_options=options, progress=False)
    with pytest.raises(StoreExistsError, match=r"s3://.*/s\.zarr already exists"):
        save(series, url, storage_options=options, progress=False)
    with pytest.raises(SourceNotFoundError, match=r"no zarr store at s3://.*/other\.zarr"):
        open_xrf(f"{prefix}/other.zarr", storage_options=options)
    np.testing.assert_array_equal(open_xrf(url, storage_options=options).values, series.values)


def test_s3_second_writer_refused_by_conditional_create(s3_bucket, series):
    # The writer marker is created with If-None-Match: * on S3, so of two
    # jobs only one can hold it, even when they start at the same moment.
    import fsspec

    from xrfsr_dask import StoreLockedError
    from xrfsr_dask.io._lock import _create, lock_path, writer_lock

    prefix, options = s3_bucket
    url = f"{prefix}/locked.zarr"
    fs, root = fsspec.core.url_to_fs(url, **options)
    with writer_lock(fs, root, url, "2026-11-25T00:00:00+00:00"):
        assert fs.exists(lock_path(root))
        assert not _create(fs, lock_path(root), {"id": "other"})  # the server refuses a second create
        with pytest.raises(StoreLockedError, match=r"locked\.zarr is being written by process"):
            save(series, url, storage_options=options, progress=False)
    assert not fs.exists(lock_path(root))
    save(series, url, storage_options=options, progress=False)
    assert store_status(url, storage_options=options).complete
