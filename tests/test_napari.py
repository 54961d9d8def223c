"""The napari reader through napari's plugin contract (npe2): found from the installed entry point, layers
named by element, placed in nm, lazy; no display needed."""

import dask.array as dsa
import numpy as np
import pytest
import zarr
from npe2 import PluginManifest
from npe2.io_utils import read

from xrfsr_dask import save, to_ome_zarr, xrf_maps, xrf_volume
from xrfsr_dask.napari import napari_get_reader


@pytest.fixture
def plugin(npe2pm):
    """napari's test plugin manager with only the installed xrfsr_dask plugin registered."""
    with npe2pm.tmp_plugin(package="xrfsr_dask") as registered:
        yield registered


@pytest.fixture
def maps():
    rng = np.random.default_rng(11)
    counts = rng.poisson(50.0, size=(2, 40, 36)).astype(np.float32)
    return xrf_maps(counts, elements=["Ni_K", "Mo_L"], step_nm=(50.0, 40.0), origin_nm=(500.0, 100.0))


def test_manifest_is_installed_and_valid():
    manifest = PluginManifest.from_distribution("xrfsr_dask")
    assert manifest.name == "xrfsr_dask"
    reader = manifest.contributions.readers[0]
    assert reader.command == "xrfsr_dask.get_reader" and reader.accepts_directories


def test_ome_zarr_export_opens_as_named_multiscale_layers(tmp_path, maps, plugin):
    url = str(tmp_path / "m.ome.zarr")
    to_ome_zarr(maps, url, chunks={"y": 16, "x": 16}, progress=False)
    [(data, kwargs, kind)] = read([url], plugin_name="xrfsr_dask", stack=False)
    assert kind == "image" and kwargs["multiscale"] and kwargs["channel_axis"] == 0
    assert kwargs["name"] == ["Ni_K", "Mo_L"]
    assert kwargs["scale"] == [50.0, 40.0] and kwargs["translate"] == [500.0, 100.0]
    assert kwargs["units"] == ["nm", "nm"] and kwargs["axis_labels"] == ["y", "x"]
    assert [level.shape for level in data] == [(2, 40, 36), (2, 20, 18), (2, 10, 9)]
    assert all(isinstance(level, dsa.Array) for level in data)
    np.testing.assert_array_equal(np.asarray(data[0]), maps.values)
    # a sum pyramid is shown per level-0 pixel: level 1 is the 2 x 2 sums divided by 4
    binned = maps.values.reshape(2, 20, 2, 18, 2).sum(axis=(2, 4)) / 4
    np.testing.assert_allclose(np.asarray(data[1]), binned, rtol=1e-6)
    windows = zarr.open_group(url, mode="r").attrs["ome"]["omero"]["channels"]
    assert kwargs["contrast_limits"] == [[w["window"]["start"], w["window"]["end"]] for w in windows]
    low, high = kwargs["contrast_limits"][0]
    coarsest_mean = maps.values[0].reshape(10, 4, 9, 4).sum(axis=(1, 3)) / 16
    assert low == pytest.approx(np.percentile(coarsest_mean, 0.1), rel=1e-5)
    assert high == pytest.approx(np.percentile(coarsest_mean, 99.9), rel=1e-5)


def test_series_keeps_its_angle_axis(tmp_path, series, plugin):
    url = str(tmp_path / "s.ome.zarr")
    to_ome_zarr(series, url, chunks={"y": 8, "x": 8}, progress=False)
    [(data, kwargs, _)] = read([url], plugin_name="xrfsr_dask", stack=False)
    assert kwargs["axis_labels"] == ["angle", "y", "x"] and kwargs["units"] == ["degree", "nm", "nm"]
    assert kwargs["scale"] == [60.0, 50.0, 40.0] and kwargs["translate"] == [-60.0, 1000.0, -200.0]
    assert kwargs["metadata"]["angle_deg"] == [-60.0, 0.0, 60.0]
    np.testing.assert_array_equal(np.asarray(data[0]), series.values)


def test_plain_store_opens_lazily_at_one_resolution(tmp_path, maps, plugin):
    url = str(tmp_path / "m.zarr")
    save(maps, url, chunks={"y": 16, "x": 16}, progress=False)
    [(data, kwargs, _)] = read([url], plugin_name="xrfsr_dask", stack=False)
    assert not kwargs["multiscale"] and isinstance(data, dsa.Array)
    assert kwargs["name"] == ["Ni_K", "Mo_L"] and kwargs["scale"] == [50.0, 40.0]
    np.testing.assert_array_equal(np.asarray(data), maps.values)


def test_other_folders_are_left_to_other_readers(tmp_path, maps):
    foreign = tmp_path / "foreign.zarr"
    zarr.open_group(str(foreign), mode="w", zarr_format=3).create_array("0", shape=(4, 4), dtype="f4")
    (tmp_path / "notes").mkdir()
    assert napari_get_reader(str(foreign)) is None
    assert napari_get_reader(str(tmp_path / "notes")) is None
    assert napari_get_reader(str(tmp_path / "absent.zarr")) is None
    url = str(tmp_path / "m.ome.zarr")
    to_ome_zarr(maps, url, progress=False)
    assert napari_get_reader([url]) is not None
    assert napari_get_reader([url, url]) is None


def test_volume_opens_with_z_in_nm(tmp_path, plugin):
    values = np.random.default_rng(4).poisson(5.0, size=(2, 8, 12, 10)).astype(np.float32)
    volume = xrf_volume(values, elements=["Ni_K", "Co_K"], voxel_nm=(30.0, 20.0, 10.0), origin_nm=(0.0, 100.0, 0.0))
    url = str(tmp_path / "v.ome.zarr")
    to_ome_zarr(volume, url, chunks={"z": 4, "y": 4, "x": 4}, progress=False)
    [(data, kwargs, _)] = read([url], plugin_name="xrfsr_dask", stack=False)
    assert kwargs["axis_labels"] == ["z", "y", "x"] and kwargs["units"] == ["nm", "nm", "nm"]
    assert kwargs["scale"] == [30.0, 20.0, 10.0] and kwargs["translate"] == [0.0, 100.0, 0.0]
    assert [level.shape for level in data] == [(2, 8, 12, 10), (2, 4, 6, 5), (2, 2, 3, 3)]
    # 2 x 2 x 2 bins shown per level-0 voxel: the mean of the eight
    np.testing.assert_allclose(np.asarray(data[1])[:, 0, 0, 0], values[:, :2, :2, :2].mean(axis=(1, 2, 3)), rtol=1e-6)
