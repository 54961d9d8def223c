"""OME-Zarr (NGFF 0.5) export: validated by ome-zarr-models, read back by ome-zarr-py, counts kept per level,
resumable, refusing to overwrite, on S3."""

import itertools
import pathlib

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.common.omero import Omero
from ome_zarr_models.v05.image import Image

from xrfsr_dask import (
    IncompleteStoreError,
    SchemaError,
    SourceNotFoundError,
    StoreExistsError,
    StoreMismatchError,
    open_xrf,
    save,
    xrf_maps,
    xrf_volume,
)
from xrfsr_dask.io import describe_pyramid, level_for_view, open_ome_zarr, open_pyramid, to_ome_zarr


def _validated(url, storage_options=None):
    """The NGFF 0.5 image model of the store (ome-zarr-models raises on any violation)."""
    group = zarr.open_group(url, mode="r", storage_options=storage_options)
    Omero.model_validate(group.attrs["ome"]["omero"])
    return Image.from_zarr(group).attributes.ome.multiscales[0]


def _ome_zarr_py(url):
    """Levels and metadata as ome-zarr-py's reader sees them."""
    node = next(iter(Reader(parse_url(url))()))
    return [np.asarray(level) for level in node.data], node.metadata


def _without_provenance(attrs):
    return {k: v for k, v in attrs.items() if k != "provenance"}


@pytest.fixture
def maps():
    rng = np.random.default_rng(3)
    counts = rng.poisson(30.0, size=(3, 37, 52)).astype(np.float32)
    return xrf_maps(counts, elements=["Ni_K", "Co_K", "Mo_L"], step_nm=(50.0, 40.0), origin_nm=(1000.0, -200.0),
                    probe_fwhm_nm=61.6, scan_mode="fly", dwell_s=0.05)


def test_maps_round_trip_validated_and_read_by_ome_zarr_py(tmp_path, maps):
    url = str(tmp_path / "m.ome.zarr")
    summary = to_ome_zarr(maps, url, chunks={"y": 16, "x": 16}, progress=False)
    # levels until one chunk: 37 x 52 -> 19 x 26 -> 10 x 13; chunks 3*3*4 + 3*2*2 + 3*1*1
    assert (summary.chunks_total, summary.chunks_written, summary.chunks_skipped) == (51, 51, 0)
    multiscale = _validated(url)
    assert [(a.name, a.type, a.unit) for a in multiscale.axes] == [
        ("c", "channel", None), ("y", "space", "nanometer"), ("x", "space", "nanometer")]
    transforms = [[t.model_dump() for t in d.coordinateTransformations] for d in multiscale.datasets]
    assert transforms[1] == [{"type": "scale", "scale": [1.0, 100.0, 80.0]},
                             {"type": "translation", "translation": [0.0, 1025.0, -180.0]}]
    assert transforms[2][1]["translation"] == [0.0, 1075.0, -140.0]

    levels, meta = _ome_zarr_py(url)
    np.testing.assert_array_equal(levels[0], maps.values)
    assert [lv.shape for lv in levels] == [(3, 37, 52), (3, 19, 26), (3, 10, 13)]
    assert meta["channel_names"] == ["Ni_K", "Co_K", "Mo_L"]

    back = open_pyramid(url)
    assert len(back) == 3
    level0 = back[0].compute()
    np.testing.assert_array_equal(level0.values, maps.values)
    for name in ("element", "line", "energy_kev", "y", "x"):
        xr.testing.assert_identical(level0[name], maps[name])
    assert _without_provenance(level0.attrs) == _without_provenance(maps.attrs)
    assert [p["operation"] for p in level0.attrs["provenance"]][-2:] == [
        "xrfsr_dask.io.to_ome_zarr", "xrfsr_dask.io.open_pyramid"]
    coarse = back[2]
    assert coarse.attrs["step_nm"] == [200.0, 160.0] and coarse.attrs["dwell_s"] == pytest.approx(0.8)
    np.testing.assert_allclose(coarse.y.values[:2], [1075.0, 1275.0])
    np.testing.assert_allclose(coarse.x.values[:2], [-140.0, 20.0])


def test_binning_is_count_preserving_known_answer(tmp_path):
    values = np.arange(1.0, 31.0, dtype=np.float32).reshape(1, 5, 6)
    values[0, 0, 0] = np.nan  # a dead pixel counts as nothing
    values[0, 4, :2] = np.nan  # a bin with no finite pixel stays unknown
    data = xrf_maps(values, elements=["Fe_K"], step_nm=10.0)
    url = str(tmp_path / "k.ome.zarr")
    to_ome_zarr(data, url, levels=3, chunks={"y": 2, "x": 4}, progress=False)
    level1, level2 = (lv.values[0] for lv in open_pyramid(url)[1:])
    expected1 = np.array([
        [2 + 7 + 8, 3 + 4 + 9 + 10, 5 + 6 + 11 + 12],
        [13 + 14 + 19 + 20, 15 + 16 + 21 + 22, 17 + 18 + 23 + 24],
        [np.nan, 27 + 28, 29 + 30],
    ], dtype=np.float32)
    np.testing.assert_array_equal(level1, expected1)
    expected2 = np.array([[np.nansum(expected1[:2, :2]), np.nansum(expected1[:2, 2:])],
                          [np.nansum(expected1[2:, :2]), np.nansum(expected1[2:, 2:])]])
    np.testing.assert_array_equal(level2, expected2)
    assert np.nansum(level2) == np.nansum(values)

    mean_url = str(tmp_path / "mean.ome.zarr")
    to_ome_zarr(data, mean_url, levels=3, chunks={"y": 2, "x": 4}, downsample="mean", progress=False)
    mean = open_pyramid(mean_url)
    np.testing.assert_array_equal(mean[1].values[0], expected1 / 4)
    np.testing.assert_array_equal(mean[2].values[0], expected2 / 16)
    assert mean[2].attrs["units"] == "counts per level-0 pixel"


def test_totals_kept_on_every_level_of_poisson_counts(tmp_path, maps):
    url = str(tmp_path / "t.ome.zarr")
    to_ome_zarr(maps.chunk({"y": 11, "x": 13}), url, chunks={"y": 8, "x": 8}, progress=False)
    totals = [float(level.sum(dim=("y", "x")).values.sum()) for level in open_pyramid(url)]
    assert len(totals) == 4
    assert totals == [float(maps.values.astype(np.float64).sum())] * 4


def test_series_has_angle_axis_in_degrees(tmp_path, series):
    url = str(tmp_path / "s.ome.zarr")
    to_ome_zarr(series, url, chunks={"y": 8, "x": 8}, progress=False)
    multiscale = _validated(url)
    assert [(a.name, a.type, a.unit) for a in multiscale.axes] == [
        ("c", "channel", None), ("angle", "angle", "degree"), ("y", "space", "nanometer"),
        ("x", "space", "nanometer")]
    scale, translation = multiscale.datasets[1].coordinateTransformations
    assert list(scale.scale) == [1.0, 60.0, 100.0, 80.0]
    assert list(translation.translation) == [0.0, -60.0, 1025.0, -180.0]
    levels, meta = _ome_zarr_py(url)
    np.testing.assert_array_equal(levels[0], series.values)
    assert levels[1].shape == (2, 3, 12, 15)
    back = open_ome_zarr(url, level=0).compute()
    xr.testing.assert_identical(back.angle, series.angle)
    np.testing.assert_array_equal(back.values, series.values)


def test_uneven_angles_by_index_with_the_angles_kept(tmp_path, series):
    uneven = series.assign_coords(angle=series.angle.copy(data=[-60.0, 0.0, 45.0]))
    url = str(tmp_path / "u.ome.zarr")
    to_ome_zarr(uneven, url, progress=False)
    multiscale = _validated(url)
    assert (multiscale.axes[1].name, multiscale.axes[1].unit) == ("angle", None)
    assert list(multiscale.datasets[0].coordinateTransformations[0].scale)[1] == 1.0
    np.testing.assert_array_equal(open_ome_zarr(url, level=-1).angle.values, [-60.0, 0.0, 45.0])


def test_volume_binned_in_three_dims(tmp_path):
    rng = np.random.default_rng(5)
    values = rng.poisson(4.0, size=(2, 9, 12, 10)).astype(np.float32)
    volume = xrf_volume(values, elements=["Ni_K", "Co_K"], voxel_nm=(20.0, 10.0, 10.0))
    url = str(tmp_path / "v.ome.zarr")
    to_ome_zarr(volume, url, chunks={"z": 4, "y": 4, "x": 4}, progress=False)
    multiscale = _validated(url)
    assert [a.name for a in multiscale.axes] == ["c", "z", "y", "x"]
    levels = open_pyramid(url)
    assert [lv.shape for lv in levels] == [(2, 9, 12, 10), (2, 5, 6, 5), (2, 3, 3, 3)]
    assert levels[1].attrs["voxel_nm"] == [40.0, 20.0, 20.0]
    np.testing.assert_array_equal(levels[1].values[:, 0, 0, 0], values[:, :2, :2, :2].sum(axis=(1, 2, 3)))
    np.testing.assert_array_equal(levels[2].values.sum(axis=(1, 2, 3)), values.sum(axis=(1, 2, 3)))
    xr.testing.assert_identical(levels[0].compute().z, volume.z)


def test_sharded_store_round_trip(tmp_path, maps):
    url = str(tmp_path / "sh.ome.zarr")
    summary = to_ome_zarr(maps, url, chunks={"y": 8, "x": 8}, shards={"y": 32, "x": 32}, progress=False)
    # one object per shard: level 0 3 x 2 x 2, level 1 (19 x 26) 3 x 1 x 1, level 2 and 3 one each
    assert summary.chunks_total == 12 + 3 + 3 + 3
    array = zarr.open_array(url, path="0", mode="r")
    assert array.shards == (1, 32, 32) and array.chunks == (1, 8, 8)
    assert len([p for p in pathlib.Path(url, "0", "c").rglob("*") if p.is_file()]) == 12
    levels, _ = _ome_zarr_py(url)
    np.testing.assert_array_equal(levels[0], maps.values)
    _validated(url)


def test_s3_round_trip_with_shards(s3_bucket, series):
    prefix, options = s3_bucket
    url = f"{prefix}/s.ome.zarr"
    to_ome_zarr(series, url, chunks={"y": 8, "x": 8}, shards={"y": 16, "x": 16}, storage_options=options,
                progress=False)
    _validated(url, options)
    back = open_pyramid(url, storage_options=options)
    np.testing.assert_array_equal(back[0].values, series.values)
    np.testing.assert_array_equal(back[1].values.sum(axis=(2, 3)), series.values.sum(axis=(2, 3)))
    with pytest.raises(StoreExistsError):
        to_ome_zarr(series, url, storage_options=options, progress=False)


def test_opening_and_building_compute_nothing(tmp_path, maps, no_dask_compute):
    url = str(tmp_path / "m.ome.zarr")
    to_ome_zarr(maps, url, chunks={"y": 16, "x": 16}, progress=False)
    with no_dask_compute():
        levels = open_pyramid(url)
        assert all(isinstance(lv.data, dsa.Array) for lv in levels)


def test_source_chunks_read_once(tmp_path, maps):
    reads = itertools.count()

    def counted(block):
        next(reads)
        return block

    lazy = maps.copy(data=dsa.from_array(maps.values, chunks=(1, 16, 16)).map_blocks(
        counted, meta=np.empty((0, 0, 0), np.float32)))
    to_ome_zarr(lazy, str(tmp_path / "once.ome.zarr"), chunks={"y": 16, "x": 16}, progress=False)
    assert next(reads) == 3 * 3 * 4


def _failing_after(data, n_good):
    calls = itertools.count()

    def block(x):
        if next(calls) >= n_good:
            raise OSError("simulated crash while computing a chunk")
        return x

    return data.copy(data=dsa.from_array(data.values, chunks=(1, 8, 8)).map_blocks(
        block, meta=np.empty((0, 0, 0), np.float32)))


def test_interrupted_export_is_incomplete_and_resumes(tmp_path, maps):
    url = str(tmp_path / "r.ome.zarr")
    chunks = {"y": 8, "x": 8}
    with dask.config.set(scheduler="sync"), pytest.raises(OSError, match="simulated crash"):
        to_ome_zarr(_failing_after(maps, 20), url, chunks=chunks, progress=False)
    with pytest.raises(IncompleteStoreError, match=r"unfinished OME-Zarr export.*--resume"):
        open_pyramid(url)
    described = describe_pyramid(url)  # 8 x 8 chunks: 3*5*7 + 3*3*4 + 3*2*2 + 3*1*1 = 156
    written = sum(level["chunks_written"] for level in described["levels"])
    assert described["status"] == f"INCOMPLETE ({written} of 156 chunks written)" and 0 < written < 156
    assert [level["shape"] for level in described["levels"]] == [[3, 37, 52], [3, 19, 26], [3, 10, 13], [3, 5, 7]]
    assert described["levels"][3]["spacing_nm"] == {"y": 400.0, "x": 320.0}
    with pytest.raises(IncompleteStoreError, match=r"resume=True"):
        to_ome_zarr(maps, url, chunks=chunks, progress=False)
    chunks_present = [p for p in pathlib.Path(url).glob("*/c/**/*") if p.is_file()]
    present = len(chunks_present)
    assert 0 < len([p for p in chunks_present if p.parts[-5] == "0"]) < 3 * 5 * 7
    torn = next(p for p in pathlib.Path(url, "0", "c").rglob("*") if p.is_file())
    torn.write_bytes(torn.read_bytes()[:10])  # a chunk cut short by a kill

    summary = to_ome_zarr(maps, url, chunks=chunks, resume=True, progress=False)
    assert summary.chunks_skipped == present - 1
    assert summary.chunks_written == summary.chunks_total - summary.chunks_skipped
    levels, _ = _ome_zarr_py(url)
    np.testing.assert_array_equal(levels[0], maps.values)
    np.testing.assert_array_equal(levels[-1].sum(axis=(1, 2)), maps.values.sum(axis=(1, 2)))
    again = to_ome_zarr(maps, url, chunks=chunks, resume=True, progress=False)
    assert (again.chunks_written, again.chunks_skipped) == (0, summary.chunks_total)


def test_resume_refuses_other_data_or_options(tmp_path, maps):
    url = str(tmp_path / "r.ome.zarr")
    with dask.config.set(scheduler="sync"), pytest.raises(OSError):
        to_ome_zarr(_failing_after(maps, 0), url, chunks={"y": 8, "x": 8}, progress=False)
    with pytest.raises(StoreMismatchError, match=r"its shape is \[3, 37, 52\] but this export's is \[3, 37, 40\]"):
        to_ome_zarr(maps.isel(x=slice(0, 40)), url, chunks={"y": 8, "x": 8}, resume=True, progress=False)
    with pytest.raises(StoreMismatchError, match=r"its downsample is sum but this export's is mean"):
        to_ome_zarr(maps, url, chunks={"y": 8, "x": 8}, downsample="mean", resume=True, progress=False)
    finer = maps.assign_attrs(step_nm=[25.0, 20.0]).assign_coords(
        y=maps.y.copy(data=1000.0 + 25.0 * np.arange(37)), x=maps.x.copy(data=-200.0 + 20.0 * np.arange(52)))
    with pytest.raises(StoreMismatchError, match=r"its step_nm \(\[50.0, 40.0\]\) differs from the data's"):
        to_ome_zarr(finer, url, chunks={"y": 8, "x": 8}, resume=True, progress=False)
    with pytest.raises(StoreMismatchError, match=r"its element"):
        to_ome_zarr(maps.assign_coords(element=["Ni_K", "Co_K", "Fe_K"]), url, chunks={"y": 8, "x": 8},
                    resume=True, progress=False)


def test_existing_data_never_overwritten_silently(tmp_path, maps):
    url = str(tmp_path / "e.ome.zarr")
    to_ome_zarr(maps, url, progress=False)
    with pytest.raises(StoreExistsError, match=r"already exists; pass overwrite=True"):
        to_ome_zarr(maps * 2, url, progress=False)
    np.testing.assert_array_equal(open_ome_zarr(url).values, maps.values)
    to_ome_zarr(maps * 2, url, overwrite=True, progress=False)
    np.testing.assert_array_equal(open_ome_zarr(url).values, 2 * maps.values)

    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "keep.txt").write_text("beamtime notes")
    with pytest.raises(StoreExistsError, match="is not a zarr store; refusing to write into it"):
        to_ome_zarr(maps, str(folder), progress=False)
    assert (folder / "keep.txt").read_text() == "beamtime notes"

    plain = str(tmp_path / "plain.zarr")
    save(maps, plain, progress=False)
    with pytest.raises(StoreMismatchError, match="not an OME-Zarr export of xrfsr_dask"):
        to_ome_zarr(maps, plain, resume=True, progress=False)


def test_open_xrf_points_an_export_to_the_pyramid_readers(tmp_path, maps):
    url = str(tmp_path / "v.ome.zarr")
    to_ome_zarr(maps, url, progress=False)
    with pytest.raises(SchemaError, match=r"is an OME-Zarr export .*open_pyramid"):
        open_xrf(url)
    np.testing.assert_array_equal(open_ome_zarr(url).values, maps.values)


def test_bad_input_named(tmp_path, maps):
    url = str(tmp_path / "b.ome.zarr")
    with pytest.raises(ValueError, match=r"levels = 0; give a whole number >= 1"):
        to_ome_zarr(maps, url, levels=0)
    with pytest.raises(ValueError, match=r"levels = 9 but the data reach one pixel along \('y', 'x'\) at level 6"):
        to_ome_zarr(maps, url, levels=9)
    with pytest.raises(ValueError, match=r"shards\['y'\] = 20 is not a whole number of chunks \(16 along 'y'\)"):
        to_ome_zarr(maps, url, chunks={"y": 16, "x": 16}, shards={"y": 20})
    with pytest.raises(ValueError, match=r"shards names dims \['z'\]"):
        to_ome_zarr(maps, url, shards={"z": 4})
    with pytest.raises(ValueError, match=r"downsample = 'max'; expected 'sum'"):
        to_ome_zarr(maps, url, downsample="max")
    with pytest.raises(ValueError, match="overwrite=True or resume=True, not both"):
        to_ome_zarr(maps, url, overwrite=True, resume=True)
    with pytest.raises(TypeError, match=r"to_ome_zarr\(\) got unexpected keyword argument\(s\) \['overwite'\]"):
        to_ome_zarr(maps, url, overwite=True)
    with pytest.raises(SchemaError, match="named 'values'; expected 'counts'"):
        to_ome_zarr(maps.rename("values"), url)
    assert not pathlib.Path(url).exists()

    with pytest.raises(SourceNotFoundError, match="no zarr store at"):
        open_pyramid(url)
    plain = str(tmp_path / "plain.zarr")
    save(maps, plain, progress=False)
    with pytest.raises(SchemaError, match="store of xrfsr_dask.save: open it with open_xrf"):
        open_pyramid(plain)
    foreign = str(tmp_path / "foreign.zarr")
    zarr.open_group(foreign, mode="w", zarr_format=3)
    with pytest.raises(SchemaError, match="written by another tool: read it with ome-zarr-py"):
        open_pyramid(foreign)
    to_ome_zarr(maps, url, chunks={"y": 16, "x": 16}, progress=False)
    with pytest.raises(ValueError, match=r"level = 3 but .* has levels 0 to 2"):
        open_ome_zarr(url, level=3)


def test_level_for_view_known_answers(tmp_path):
    data = xrf_maps(dsa.zeros((1, 4096, 2048), chunks=(1, 512, 512), dtype=np.float32), elements=["Ni_K"],
                    step_nm=10.0)
    url = str(tmp_path / "big.ome.zarr")
    to_ome_zarr(data, url, chunks={"y": 512, "x": 512}, progress=False)
    levels = open_pyramid(url)
    assert [lv.shape[1:] for lv in levels] == [(4096, 2048), (2048, 1024), (1024, 512), (512, 256)]
    assert level_for_view(levels, screen_px=1024) == 2  # 40960 nm across / 40 nm pixels = 1024
    assert level_for_view(levels, screen_px=1000) == 2
    assert level_for_view(levels, screen_px=1025) == 1
    assert level_for_view(levels, screen_px=512, y=slice(0, 5120), x=slice(0, 5120)) == 0
    assert level_for_view(levels, screen_px=64) == 3  # never coarser than the coarsest level
    with pytest.raises(ValueError, match="screen_px = 0"):
        level_for_view(levels, screen_px=0)


def test_two_worker_cluster_writes_the_same_store(tmp_path, maps):
    from distributed import Client, LocalCluster

    threads = str(tmp_path / "threads.ome.zarr")
    to_ome_zarr(maps, threads, chunks={"y": 8, "x": 8}, progress=False)
    source = str(tmp_path / "m.zarr")
    save(maps, source, progress=False)
    cluster_url = str(tmp_path / "cluster.ome.zarr")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster):
        summary = to_ome_zarr(open_xrf(source), cluster_url, chunks={"y": 8, "x": 8}, progress=False)
    assert summary.chunks_written == summary.chunks_total
    for here, there in zip(open_pyramid(threads), open_pyramid(cluster_url), strict=True):
        np.testing.assert_array_equal(here.values, there.values)
