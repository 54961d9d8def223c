"""Shared fixtures: a real S3 server (moto, server mode) on 127.0.0.1, a guard
against dask computing, and skipping of ``gpu`` tests where there is no GPU
and of ``tomopy`` tests where TomoPy is missing."""

import contextlib
import os
import uuid

import dask
import numpy as np
import pytest

from xrfsr_dask import xrf_maps


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on a free loopback port, one per test session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1")
    yield endpoint
    server.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh bucket; returns ``(url_prefix, storage_options)``."""
    import s3fs

    options = {"endpoint_url": s3_server, "key": "testing", "secret": "testing"}
    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    bucket = f"xrf-{uuid.uuid4().hex[:12]}"
    fs.mkdir(bucket)
    return f"s3://{bucket}", options


@pytest.fixture
def series():
    """A small two-element, three-angle series with Poisson counts."""
    rng = np.random.default_rng(7)
    counts = rng.poisson(20.0, size=(2, 3, 24, 30)).astype(np.float32)
    return xrf_maps(
        counts,
        elements=["Ni_K", "Mo_L"],
        step_nm=(50.0, 40.0),
        origin_nm=(1000.0, -200.0),
        angles=[-60.0, 0.0, 60.0],
        probe_fwhm_nm=61.6,
        scan_mode="fly",
        dwell_s=0.05,
    )


def _gpu_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no CuPy, no driver, no device: all mean "no GPU here"
        return False


def _tomopy_available() -> bool:
    try:
        import tomopy  # noqa: F401

        return True
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skips = {}
    if not _gpu_available():
        skips["gpu"] = pytest.mark.skip(reason="needs a CUDA GPU and CuPy (pip install -e '.[gpu]')")
    if not _tomopy_available():
        skips["tomopy"] = pytest.mark.skip(
            reason="needs TomoPy, which is not on PyPI: conda install -c conda-forge tomopy, or "
            "../shared/peers/build-tomopy.sh .venv (make test does this where ../shared exists)"
        )
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def no_dask_compute():
    """A context in which any dask computation raises (laziness is asserted)."""

    def scheduler(dsk, keys, **kwargs):
        raise RuntimeError("dask computed inside no_dask_compute()")

    @contextlib.contextmanager
    def guard():
        with dask.config.set(scheduler=scheduler):
            yield

    return guard
