"""zarr v3 storage: round trips, laziness, refusal to overwrite, completeness, resume."""

import itertools
import json
import pathlib

import dask
import dask.array as dsa
import numpy as np
import pytest
import xarray as xr
import zarr

from xrfsr_dask import (
    IncompleteStoreError,
    SourceNotFoundError,
    StoreExistsError,
    StoreMetadataError,
    StoreMismatchError,
    open_xrf,
    save,
    store_status,
    xrf_maps,
    xrf_volume,
)
from xrfsr_dask.io import resolve_chunks


def test_round_trip_is_identical_and_lazy(tmp_path, series):
    url = str(tmp_path / "s.zarr")
    summary = save(series, url, chunks={"y": 10, "x": 16}, progress=False)
    assert (summary.chunks_total, summary.chunks_written, summary.chunks_skipped) == (2 * 3 * 3 * 2, 36, 0)
    back = open_xrf(url)
    assert isinstance(back.data, dsa.Array)
    assert back.chunks == ((1, 1), (1, 1, 1), (10, 10, 4), (16, 14))
    xr.testing.assert_identical(back.compute(), series)
    assert back.element.dtype == object


def test_zarr_format_3_with_checksummed_chunks(tmp_path, series):
    url = tmp_path / "s.zarr"
    save(series, str(url), progress=False)
    meta = json.loads((url / "counts" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "zstd", "crc32c"]


def test_volume_round_trip(tmp_path):
    vol = xrf_volume(np.arange(2 * 5 * 6 * 7, dtype=np.float32).reshape(2, 5, 6, 7), elements=["Ni_K", "Co_K"],
                     voxel_nm=(10, 20, 30))
    save(vol, str(tmp_path / "v.zarr"), chunks={"z": 2}, progress=False)
    xr.testing.assert_identical(open_xrf(str(tmp_path / "v.zarr")).compute(), vol)


def test_memory_url_round_trip(series):
    save(series, "memory://rt/s.zarr", progress=False)
    xr.testing.assert_identical(open_xrf("memory://rt/s.zarr").compute(), series)


def test_file_url_round_trip(tmp_path, series):
    url = (tmp_path / "f.zarr").as_uri()
    save(series, url, progress=False)
    xr.testing.assert_identical(open_xrf(url).compute(), series)


def test_opening_reads_metadata_only(tmp_path, series):
    url = str(tmp_path / "s.zarr")
    save(series, url, progress=False)
    keys = []
    with dask.config.set(scheduler="sync"), dask.callbacks.Callback(pretask=lambda key, *_: keys.append(str(key))):
        back = open_xrf(url)
        assert back.attrs["scan_mode"] == "fly"
    assert keys, "the small coordinates are loaded"
    assert not [k for k in keys if "counts" in k]


def test_existing_store_refused_without_overwrite(tmp_path, series):
    url = str(tmp_path / "s.zarr")
    save(series, url, progress=False)
    before = sorted(p.name for p in pathlib.Path(url, "counts", "c").rglob("*"))
    with pytest.raises(StoreExistsError, match=r"already exists \(complete \(6 of 6 chunks.*overwrite=True"):
        save(series * 2, url, progress=False)
    xr.testing.assert_identical(open_xrf(url).compute(), series)
    assert sorted(p.name for p in pathlib.Path(url, "counts", "c").rglob("*")) == before
    save(series * 2, url, overwrite=True, progress=False)
    np.testing.assert_array_equal(open_xrf(url).values, series.values * 2)


def test_foreign_directory_not_overwritten(tmp_path, series):
    target = tmp_path / "notes"
    target.mkdir()
    (target / "keep.txt").write_text("beamtime notes")
    with pytest.raises(StoreExistsError, match=r"is not a zarr store"):
        save(series, str(target), progress=False)
    assert (target / "keep.txt").read_text() == "beamtime notes"


def test_missing_store_named(tmp_path):
    missing = str(tmp_path / "nope.zarr")
    with pytest.raises(SourceNotFoundError, match=r"no zarr store at .*nope\.zarr"):
        open_xrf(missing)


def _failing_after(series, n_good):
    """A lazy copy of ``series`` whose chunk computations raise after ``n_good`` succeed.

    Counting calls rather than naming a chunk keeps the test deterministic:
    the order in which dask runs independent chunks is not fixed.
    """
    calls = itertools.count()

    def block(x):
        if next(calls) >= n_good:
            raise OSError("simulated crash while computing a chunk")
        return x

    return series.copy(data=dsa.from_array(series.values, chunks=(1, 1, 12, 15)).map_blocks(
        block, meta=np.empty((0, 0, 0, 0), np.float32)))


def test_interrupted_write_is_incomplete_and_resumes(tmp_path, series):
    url = str(tmp_path / "s.zarr")
    chunks = {"y": 12, "x": 15}
    with dask.config.set(scheduler="sync"), pytest.raises(OSError, match="simulated crash"):
        save(_failing_after(series, 9), url, chunks=chunks, progress=False)
    status = store_status(url)
    assert status.written_by_xrfsr and status.complete is False
    assert status.chunks_written == 9 and status.chunks_total == 24
    with pytest.raises(IncompleteStoreError, match=r"unfinished write \(INCOMPLETE \(\d+ of 24 chunks.*--resume"):
        open_xrf(url)
    with pytest.raises(IncompleteStoreError, match=r"resume=True"):
        save(series, url, chunks=chunks, progress=False)
    partial = open_xrf(url, allow_incomplete=True).compute()
    assert np.isnan(partial.values).any()

    summary = save(series, url, resume=True, progress=False)
    assert summary.chunks_skipped == status.chunks_written
    assert summary.chunks_written == 24 - status.chunks_written
    assert store_status(url).complete is True
    xr.testing.assert_identical(open_xrf(url).compute(), series)
    again = save(series, url, resume=True, progress=False)
    assert (again.chunks_written, again.chunks_skipped) == (0, 24)


def test_resume_refuses_different_data(tmp_path, series):
    url = str(tmp_path / "s.zarr")
    with dask.config.set(scheduler="sync"), pytest.raises(OSError):
        save(_failing_after(series, 0), url, chunks={"y": 12, "x": 15}, progress=False)
    with pytest.raises(StoreMismatchError, match=r"its shape is \(2, 3, 24, 30\) but the data's is \(2, 3, 24, 20\)"):
        save(series.isel(x=slice(0, 20)), url, resume=True, progress=False)
    shifted = series.assign_coords(angle=series.angle + 1)
    with pytest.raises(StoreMismatchError, match=r"coordinate 'angle' differs"):
        save(shifted, url, resume=True, progress=False)


def test_incomplete_marker_set_before_chunks_land(tmp_path, series):
    url = str(tmp_path / "s.zarr")
    seen = []

    def spy(x):
        seen.append(zarr.open_group(url, mode="r").attrs["xrfsr_dask"]["complete"])
        return x

    lazy = series.copy(data=dsa.from_array(series.values, chunks=(1, 1, 24, 30)).map_blocks(spy, dtype=np.float32))
    with dask.config.set(scheduler="sync"):
        save(lazy, url, progress=False)
    assert seen and not any(seen)
    assert zarr.open_group(url, mode="r").attrs["xrfsr_dask"]["complete"] is True


def test_chunk_parameter_errors(series):
    with pytest.raises(ValueError, match=r"chunks names dims \['z'\] that the data does not have"):
        resolve_chunks(series, {"z": 4})
    with pytest.raises(ValueError, match=r"chunks\['y'\] = 0"):
        resolve_chunks(series, {"y": 0})
    assert resolve_chunks(series, {"x": -1, "y": 1000}) == {"element": 1, "angle": 1, "y": 24, "x": 30}


def test_the_old_import_path_and_one_set_of_writer_options(tmp_path):
    from xrfsr_dask.enhance import enhance_to_zarr
    from xrfsr_dask.io import WriteOptions, open_xrf, save, store
    from xrfsr_dask.tomo import reconstruct_to_zarr

    assert store.save is save and store.open_xrf is open_xrf and store.WriteOptions is WriteOptions
    assert sorted(WriteOptions.__annotations__) == ["overwrite", "progress", "resume", "storage_options"]
    maps = xrf_maps(np.ones((1, 8, 8), np.float32), elements=["Ni_K"], step_nm=50.0, probe_fwhm_nm=60.0)
    for writer in (enhance_to_zarr, reconstruct_to_zarr):
        with pytest.raises(TypeError, match=rf"{writer.__name__}\(\) got unexpected keyword argument\(s\) "
                                            r"\['overwite'\]; the writer options are \['overwrite', 'progress'"):
            writer(maps, str(tmp_path / "out.zarr"), overwite=True)
        with pytest.raises(ValueError, match=r"pass overwrite=True or resume=True, not both"):
            writer(maps, str(tmp_path / "out.zarr"), overwrite=True, resume=True)
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("junk", [b'{"":0}', b"{}", b'{"zarr_format": 3}', b"[]"])
def test_a_root_document_that_is_not_a_group_is_refused(tmp_path, junk):
    # zarr itself reads such a zarr.json as an empty group, which would hide the damage.
    url = str(tmp_path / "s.zarr")
    save(xrf_maps(np.ones((2, 8, 8)), elements=["Ni_K", "Co_K"], step_nm=50.0), url, progress=False)
    (tmp_path / "s.zarr" / "zarr.json").write_bytes(junk)
    with pytest.raises(StoreMetadataError, match=r"root zarr.json is not a zarr v3 group document"):
        open_xrf(url)
