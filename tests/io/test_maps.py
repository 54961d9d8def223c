"""MAPS / XRF-Maps HDF5 files, version-10 and version-9 layouts."""

import numpy as np
import pytest

from xrfsr_dask import IngestError, read, read_series
from xrfsr_dask.testing import particles, write_maps_h5

NAMES = ["Fe", "Ni", "Pb_L", "COMPTON_AMPLITUDE", "Num_Iter"]


def make(path, *, version=10, analysis="fitted", shape=(10, 14), theta=None, **kwargs):
    maps = particles(shape, len(NAMES), seed=3)
    kwargs.setdefault("y_axis", 2.0 + 0.0001 * np.arange(shape[0]))   # mm
    kwargs.setdefault("x_axis", -1.0 + 0.00025 * np.arange(shape[1]))
    write_maps_h5(path, maps, NAMES, version=version, analysis=analysis, theta=theta,
                  scalers={"US_IC": np.full(shape, 3.0e4)}, **kwargs)
    return maps


@pytest.mark.parametrize("version", [9, 10])
@pytest.mark.parametrize("analysis", ["fitted", "roi"])
def test_reads_both_layouts_in_nm(tmp_path, version, analysis):
    maps = make(tmp_path / "m.h5", version=version, analysis=analysis)
    da = read(tmp_path / "m.h5")
    assert list(da.element.values) == ["Fe", "Ni", "Pb_L"]
    assert list(da.line.values) == ["K", "K", "L"]
    np.testing.assert_array_equal(da.values, maps[:3])
    assert da.attrs["step_nm"] == pytest.approx([100.0, 250.0])
    assert float(da.y[0]) == pytest.approx(2.0e6) and float(da.x[0]) == pytest.approx(-1.0e6)
    assert da.attrs["units"] == ("counts/s" if version == 10 else "counts")


def test_fitted_preferred_then_explicit_analysis(tmp_path):
    path = tmp_path / "m.h5"
    make(path, analysis="roi")
    with pytest.raises(IngestError, match=r"missing \['MAPS/XRF_Analyzed/Fitted/Counts_Per_Sec', 'MAPS/XRF_fits'\]"):
        read(path, analysis="fitted")


def test_two_dimensional_axes(tmp_path):
    shape = (10, 14)
    yy, xx = np.meshgrid(2.0 + 0.0001 * np.arange(10), -1.0 + 0.00025 * np.arange(14), indexing="ij")
    make(tmp_path / "m.h5", shape=shape, y_axis=yy, x_axis=xx)
    assert read(tmp_path / "m.h5").attrs["step_nm"] == pytest.approx([100.0, 250.0])


def test_axis_length_mismatch_named(tmp_path):
    make(tmp_path / "m.h5", x_axis=np.arange(13) * 0.001)
    with pytest.raises(IngestError, match=r"MAPS/Scan/x_axis has 13 positions but the maps have 14 along x"):
        read(tmp_path / "m.h5")


def test_theta_zero_everywhere_is_refused_with_a_hint(tmp_path):
    paths = [tmp_path / f"m{i}.h5" for i in range(3)]
    for p in paths:
        make(p, theta=0.0)
    with pytest.raises(IngestError, match=r"both record the angle 0.0 deg.*MAPS writes 0.*theta_pv"):
        read_series(paths)
    series = read_series(paths, angles=[0, 30, 60])
    assert list(series.angle.values) == [0, 30, 60]
