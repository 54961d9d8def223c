"""S3 faults injected by a proxy in front of the moto server: transient ones cost retries, never data;
a permanent one fails with the URL and the cause and leaves the store incomplete."""

import numpy as np
import pytest

from xrfsr_dask import StoreWriteError, open_xrf, save, store_status, verify
from xrfsr_dask.testing.flaky_s3 import FlakyProxy


def _options(endpoint):
    return {"endpoint_url": endpoint, "key": "testing", "secret": "testing", "skip_instance_cache": True}


def test_transient_faults_are_retried_and_the_bytes_are_identical(s3_server, s3_bucket, series):
    prefix, _ = s3_bucket
    url = f"{prefix}/flaky.zarr"

    def rule(method, path, n):
        if method == "PUT" and "/counts/c/" in path and n % 3 == 0:
            return (503, "SlowDown")
        if n % 7 == 0:
            return "drop"
        return None

    with FlakyProxy(s3_server, rule) as proxy:
        options = _options(proxy.endpoint)
        summary = save(series, url, chunks={"y": 12, "x": 15}, storage_options=options, progress=False)
        back = open_xrf(url, storage_options=options).values
        assert verify(url, storage_options=options, progress=False).ok
    assert summary.chunks_written == summary.chunks_total == 2 * 3 * 2 * 2
    assert proxy.injected["503 SlowDown"] >= 5 and proxy.injected["drop"] >= 5
    np.testing.assert_array_equal(back, series.values)


def test_permanent_fault_names_url_and_cause_and_leaves_the_store_incomplete(s3_server, s3_bucket, series):
    prefix, _ = s3_bucket
    url = f"{prefix}/denied.zarr"

    def deny_chunks(method, path, n):
        return (403, "AccessDenied") if method == "PUT" and "/counts/c/1/" in path else None

    with FlakyProxy(s3_server, deny_chunks) as proxy:
        options = _options(proxy.endpoint)
        with pytest.raises(StoreWriteError, match=r"writing s3://.*/denied\.zarr failed: PermissionError.*--resume"):
            save(series, url, chunks={"y": 12, "x": 15}, storage_options=options, progress=False)
        status = store_status(url, storage_options=options)
    assert proxy.injected["403 AccessDenied"] >= 1
    assert status.exists and status.complete is False and status.chunks_written < status.chunks_total

    # With the permission back, the same command resumes and finishes the store.
    direct = _options(s3_server)
    summary = save(series, url, chunks={"y": 12, "x": 15}, storage_options=direct, resume=True, progress=False)
    assert summary.chunks_skipped == status.chunks_written
    np.testing.assert_array_equal(open_xrf(url, storage_options=direct).values, series.values)
