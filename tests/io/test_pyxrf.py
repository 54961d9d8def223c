"""PyXRF HDF5 files in the layout PyXRF writes (xrfmap/detsum/xrf_fit ...)."""

import h5py
import numpy as np
import pytest

from xrfsr_dask import IngestError, NonFiniteCountsError, SourceNotFoundError, XrfsrWarning, read
from xrfsr_dask.testing import grid_positions, particles, write_pyxrf_h5

NAMES = ["Ni_K", "Co_K", "Mn_K", "Mo_L", "compton", "elastic", "snip_bkg", "r_factor", "sel_cnt", "total_cnt"]


def make(path, *, shape=(12, 16), step_um=(0.05, 0.04), origin_um=(3.0, -1.5), jitter=0.0, **kwargs):
    maps = np.concatenate([particles(shape, 4, seed=1), np.ones((6, *shape), np.float32)])
    y, x = grid_positions(shape, step_um, origin_um, jitter=jitter)
    i0 = np.full(shape, 2.0e5)
    i0[:, shape[1] // 2:] = 1.0e5
    kwargs.setdefault("scalers", {"i0": i0, "time": np.full(shape, 0.05)})
    write_pyxrf_h5(path, maps, NAMES, y_pos=kwargs.pop("y_pos", y), x_pos=kwargs.pop("x_pos", x), **kwargs)
    return maps


def test_reads_element_lines_with_nm_grid(tmp_path):
    maps = make(tmp_path / "scan2D_1.h5", theta=-12000, theta_units="mdeg", dwell_s=0.05)
    da = read(tmp_path / "scan2D_1.h5")
    assert list(da.element.values) == ["Ni_K", "Co_K", "Mn_K", "Mo_L"]
    np.testing.assert_array_equal(da.values, maps[:4])
    assert da.attrs["step_nm"] == pytest.approx([50.0, 40.0])
    assert float(da.y[0]) == pytest.approx(3000.0) and float(da.x[0]) == pytest.approx(-1500.0)
    assert da.attrs["scan_mode"] == "fly" and da.attrs["dwell_s"] == 0.05
    record = da.attrs["provenance"][-1]
    assert record["operation"] == "xrfsr_dask.io.read" and record["parameters"]["format"] == "pyxrf"


def test_jittered_fly_positions_give_the_mean_grid(tmp_path):
    make(tmp_path / "a.h5", shape=(40, 50), jitter=0.004)
    da = read(tmp_path / "a.h5")
    assert da.attrs["step_nm"] == pytest.approx([50.0, 40.0], rel=5e-3)


def test_decreasing_positions_are_flipped_to_increasing(tmp_path):
    shape = (6, 8)
    y, x = grid_positions(shape, (0.05, 0.04))
    maps = make(tmp_path / "a.h5", shape=shape, x_pos=x[:, ::-1].copy(), y_pos=y)
    da = read(tmp_path / "a.h5")
    assert np.all(np.diff(da.x.values) > 0)
    np.testing.assert_array_equal(da.values, maps[:4, :, ::-1])


def test_all_channels_and_named_selection(tmp_path):
    make(tmp_path / "a.h5")
    assert list(read(tmp_path / "a.h5", elements="all").element.values) == NAMES
    assert list(read(tmp_path / "a.h5", elements=["Mo_L", "Ni_K"]).element.values) == ["Mo_L", "Ni_K"]
    with pytest.raises(IngestError, match=r"channels \['Fe_K'\] not found; the file has \['Ni_K'"):
        read(tmp_path / "a.h5", elements=["Fe_K"])


def test_normalise_by_i0_keeps_counts_at_mean_flux(tmp_path):
    maps = make(tmp_path / "a.h5")
    da = read(tmp_path / "a.h5", normalize="i0")
    i0 = np.full((12, 16), 2.0e5)
    i0[:, 8:] = 1.0e5
    np.testing.assert_allclose(da.values, maps[:4] * i0.mean() / i0, rtol=1e-6)
    assert da.attrs["units"] == "counts at mean i0"
    with pytest.raises(IngestError, match=r"no scaler 'i1' to normalise by; scalers in the file: \['i0', 'time'\]"):
        read(tmp_path / "a.h5", normalize="i1")


def test_zero_i0_is_reported_not_patched(tmp_path):
    i0 = np.full((12, 16), 1.0e5)
    i0[2, 3] = 0.0
    make(tmp_path / "a.h5", scalers={"i0": i0})
    with pytest.raises(NonFiniteCountsError, match=r"Ni_K: 1 NaN, 0 inf \(first at y=2, x=3\)"):
        read(tmp_path / "a.h5", normalize="i0")


def test_nan_counts_reported_or_kept(tmp_path):
    path = make_with_nan(tmp_path)
    with pytest.raises(NonFiniteCountsError, match=r"Co_K: 1 NaN, 0 inf \(first at y=4, x=5\).*Nothing was zeroed"):
        read(path)
    with pytest.warns(XrfsrWarning, match=r"Co_K: 1 NaN"):
        da = read(path, nonfinite="keep")
    assert np.isnan(da.sel(element="Co_K").values[4, 5])


def make_with_nan(tmp_path):
    path = tmp_path / "nan.h5"
    make(path)
    with h5py.File(path, "r+") as f:
        f["xrfmap/detsum/xrf_fit"][1, 4, 5] = np.nan
    return path


def test_wrong_layout_names_keys_looked_for_and_found(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("xrfmap/detsum/counts", data=np.zeros((2, 2, 4)))
    with pytest.raises(IngestError, match=r"missing \['xrfmap/detsum/xrf_fit'.*the file has: xrfmap, xrfmap/detsum, "
                                          r"xrfmap/detsum/counts"):
        read(path)


def test_missing_file_named(tmp_path):
    with pytest.raises(SourceNotFoundError, match=r"not found: .*nope\.h5"):
        read(tmp_path / "nope.h5")


def test_shape_mismatch_inside_file(tmp_path):
    path = tmp_path / "a.h5"
    make(path)
    with h5py.File(path, "r+") as f:
        del f["xrfmap/detsum/xrf_fit_name"]
        f["xrfmap/detsum/xrf_fit_name"] = np.array([b"Ni_K"])
    with pytest.raises(IngestError, match=r"has 10 maps but xrf_fit_name has 1 names"):
        read(path)
