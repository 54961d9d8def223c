"""Tomography series (one file per angle) and ingest into zarr, locally and on S3."""

import dask
import dask.array as dsa
import h5py
import numpy as np
import pytest
import xarray as xr

from xrfsr_dask import (
    IncompleteStoreError,
    IngestError,
    NonFiniteCountsError,
    SourceNotFoundError,
    XrfsrWarning,
    ingest,
    open_xrf,
    read,
    read_series,
    store_status,
)
from xrfsr_dask.io import detect_format
from xrfsr_dask.testing import grid_positions, particles, write_maps_h5, write_pyxrf_h5

NAMES = ["Ni_K", "Co_K", "Mn_K", "Mo_L", "compton"]
ANGLES_MDEG = [-90000, -45000, 0, 45000, 90000]


def pyxrf_series(tmp_path, shape=(20, 24), angles=ANGLES_MDEG):
    paths, stack = [], []
    for i, theta in enumerate(angles):
        maps = particles(shape, len(NAMES), seed=10 + i)
        y, x = grid_positions(shape, (0.05, 0.04), (1.0 + 0.01 * i, 2.0 - 0.02 * i))
        paths.append(write_pyxrf_h5(tmp_path / f"scan2D_{100 + i}.h5", maps, NAMES, y_pos=y, x_pos=x,
                                    theta=theta, theta_units="mdeg", scalers={"i0": np.full(shape, 1e5)}))
        stack.append(maps[:4])
    return paths, np.stack(stack, axis=1)


def test_series_is_lazy_and_matches_the_files(tmp_path):
    paths, expected = pyxrf_series(tmp_path)
    series = read_series(paths)
    assert isinstance(series.data, dsa.Array)
    assert series.dims == ("element", "angle", "y", "x")
    np.testing.assert_allclose(series.angle.values, [-90, -45, 0, 45, 90])
    np.testing.assert_allclose(series.x_origin.values, [2000, 1980, 1960, 1940, 1920])
    np.testing.assert_array_equal(series.values, expected)


def test_series_shape_mismatch_names_the_file(tmp_path):
    paths, _ = pyxrf_series(tmp_path)
    maps = particles((20, 23), len(NAMES), seed=0)
    y, x = grid_positions((20, 23), (0.05, 0.04))
    write_pyxrf_h5(paths[3], maps, NAMES, y_pos=y, x_pos=x, theta=45000, theta_units="mdeg")
    with pytest.raises(IngestError, match=r"scan2D_100.h5 is \(20, 24\) \(y, x\) but .*scan2D_103.h5 is \(20, 23\)"):
        read_series(paths)


def test_series_step_and_channel_mismatch(tmp_path):
    paths, _ = pyxrf_series(tmp_path)
    y, x = grid_positions((20, 24), (0.05, 0.08))
    write_pyxrf_h5(paths[1], particles((20, 24), 5, seed=0), NAMES, y_pos=y, x_pos=x, theta=1.0)
    with pytest.raises(IngestError, match=r"scan steps differ across the series"):
        read_series(paths)
    y, x = grid_positions((20, 24), (0.05, 0.04))
    write_pyxrf_h5(paths[1], particles((20, 24), 2, seed=0), ["Ni_K", "Co_K"], y_pos=y, x_pos=x, theta=1.0)
    with pytest.raises(IngestError, match=r"scan2D_101.h5: channels \['Mn_K', 'Mo_L'\] are missing"):
        read_series(paths)


def test_series_needs_angles(tmp_path):
    shape = (4, 5)
    y, x = grid_positions(shape, (0.1, 0.1))
    paths = [write_pyxrf_h5(tmp_path / f"{i}.h5", particles(shape, 5, seed=i), NAMES, y_pos=y, x_pos=x)
             for i in range(2)]
    with pytest.raises(IngestError, match=r"no rotation angle recorded in .*pass angles="):
        read_series(paths)
    with pytest.raises(IngestError, match=r"got 3 angles for 2 files"):
        read_series(paths, angles=[0, 1, 2])
    assert list(read_series(paths, angles=[0, 90]).angle.values) == [0, 90]


def test_ingest_series_round_trip(tmp_path):
    paths, expected = pyxrf_series(tmp_path)
    summary = ingest(paths, str(tmp_path / "p.zarr"), chunks={"y": 8, "x": 8}, progress=False)
    assert summary.chunks_total == 4 * 5 * 3 * 3
    back = open_xrf(str(tmp_path / "p.zarr"))
    np.testing.assert_array_equal(back.values, expected)
    direct = read_series(paths).compute()
    xr.testing.assert_equal(back.compute(), direct)
    assert back.attrs.keys() == direct.attrs.keys()
    record = back.attrs["provenance"][-1]
    assert record["operation"] == "xrfsr_dask.io.read_series"
    assert record["parameters"]["paths"] == [str(p) for p in paths]


def test_ingest_pyxrf_and_maps_to_s3(s3_bucket, tmp_path):
    prefix, options = s3_bucket
    paths, expected = pyxrf_series(tmp_path)
    ingest(paths, f"{prefix}/pyxrf.zarr", storage_options=options, progress=False)
    np.testing.assert_array_equal(open_xrf(f"{prefix}/pyxrf.zarr", storage_options=options).values, expected)

    maps = particles((10, 12), 3, seed=2)
    write_maps_h5(tmp_path / "m.h5", maps, ["Fe", "Ni", "Pb_L"], y_axis=0.001 * np.arange(10),
                  x_axis=0.001 * np.arange(12))
    ingest(tmp_path / "m.h5", f"{prefix}/maps.zarr", storage_options=options, progress=False)
    back = open_xrf(f"{prefix}/maps.zarr", storage_options=options)
    xr.testing.assert_equal(back.compute(), read(tmp_path / "m.h5"))
    assert list(back.element.values) == ["Fe", "Ni", "Pb_L"]


def test_nan_in_one_projection_stops_ingest_and_leaves_store_incomplete(tmp_path):
    paths, expected = pyxrf_series(tmp_path)
    with h5py.File(paths[2], "r+") as f:
        f["xrfmap/detsum/xrf_fit"][0, 3, 4] = np.inf
    url = str(tmp_path / "p.zarr")
    with dask.config.set(scheduler="sync"), \
            pytest.raises(NonFiniteCountsError, match=r"scan2D_102.h5.*Ni_K: 0 NaN, 1 inf"):
        ingest(paths, url, progress=False)
    before = store_status(url)
    assert before.complete is False and before.chunks_written < before.chunks_total
    with pytest.raises(IncompleteStoreError):
        open_xrf(url)
    with h5py.File(paths[2], "r+") as f:
        f["xrfmap/detsum/xrf_fit"][0, 3, 4] = expected[0, 2, 3, 4]
    summary = ingest(paths, url, resume=True, progress=False)
    assert summary.chunks_skipped == before.chunks_written
    assert summary.chunks_written == summary.chunks_total - before.chunks_written
    np.testing.assert_array_equal(open_xrf(url).values, expected)


def test_detect_format_errors(tmp_path):
    with pytest.raises(SourceNotFoundError, match=r"input file not found: .*x\.h5"):
        detect_format(tmp_path / "x.h5")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(IngestError, match=r"not HDF5 and not TIFF"):
        detect_format(tmp_path / "notes.txt")
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_group("entry")
    with pytest.raises(IngestError, match=r"top-level keys \['entry'\]; expected 'xrfmap' \(PyXRF\) or 'MAPS'"):
        detect_format(tmp_path / "other.h5")


def test_kept_nan_in_a_series_is_one_warning_not_one_per_file(tmp_path):
    import warnings

    paths, _ = pyxrf_series(tmp_path)
    for path in paths:
        with h5py.File(path, "r+") as f:
            f["xrfmap/detsum/xrf_fit"][0, 1, 2] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        series = read_series(paths, nonfinite="keep")
        values = series.values
    messages = [str(w.message) for w in caught if issubclass(w.category, XrfsrWarning)]
    assert messages == [f"nonfinite='keep': NaN or infinite counts in the {len(paths)} files of this series are "
                        "kept as they are when the files are read."]
    assert [w.filename for w in caught if issubclass(w.category, XrfsrWarning)] == [__file__]
    assert np.isnan(values[0, :, 1, 2]).all()
