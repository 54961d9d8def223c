"""Projection of a volume: the parallel-beam geometry every backend follows, counts, refusals."""

import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from xrfsr_dask import SchemaError, xrf_volume
from xrfsr_dask.phantoms import nmc_particle, nmc_volume
from xrfsr_dask.tomo import project


@pytest.fixture(scope="module")
def volume():
    return nmc_volume((40, 40, 40), seed=5, grain_nm=200.0)


def test_projection_at_zero_degrees_is_the_sum_along_y(volume):
    series = project(volume, angles=[0.0, 45.0, 90.0])
    assert series.dims == ("element", "angle", "y", "x")
    assert series.shape == (4, 3, 40, 40)
    np.testing.assert_allclose(series.isel(angle=0).values, volume.sum("y").values, rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(series.y.values, volume.z.values)
    np.testing.assert_array_equal(series.x.values, volume.x.values)
    np.testing.assert_array_equal(series.angle.values, [0.0, 45.0, 90.0])
    assert series.attrs["step_nm"] == [20.0, 20.0]
    assert series.attrs["scan_mode"] == "step"
    assert series.attrs["probe_fwhm_nm"] is None
    assert series.attrs["units"] == "counts"
    operations = [p["operation"] for p in series.attrs["provenance"]]
    assert operations == ["xrfsr_dask.phantoms.nmc_volume", "xrfsr_dask.tomo.project"]


def test_projection_conserves_counts_at_every_angle(volume):
    angles = np.linspace(-90.0, 270.0, 25)
    totals = project(volume, angles=angles).sum(["y", "x"])
    expected = volume.sum(["z", "y", "x"])
    np.testing.assert_allclose((totals / expected).values, 1.0, rtol=0.01)


@pytest.mark.parametrize("theta", [0.0, 90.0, 30.0, -120.0])
def test_bright_voxel_lands_at_x_cos_plus_y_sin(theta):
    n = 32
    values = np.zeros((1, 5, n, n), dtype=np.float32)
    iz, iy, ix = 2, 21, 9
    values[0, iz, iy, ix] = 100.0
    volume = xrf_volume(values, elements=["Ni_K"], voxel_nm=10.0)
    row = project(volume, angles=[theta]).isel(element=0, angle=0)
    assert float(row.sum()) == pytest.approx(100.0)
    assert float(row.isel(y=iz).sum()) == pytest.approx(100.0)
    centre = (n - 1) / 2
    rad = np.deg2rad(theta)
    t = (ix - centre) * np.cos(rad) + (iy - centre) * np.sin(rad)
    detector = np.arange(n)
    landed = float((row.isel(y=iz).values * detector).sum() / 100.0) - centre
    assert landed == pytest.approx(t, abs=0.5)


def test_projection_follows_ndimage_rotate_and_mirrors_at_180(volume):
    series = project(volume, angles=[0.0, 37.0, 180.0])
    mirrored = series.sel(angle=0.0).values[..., ::-1]
    np.testing.assert_allclose(series.sel(angle=180.0).values, mirrored, rtol=1e-5, atol=1e-2)
    values = volume.values.astype(np.float64)
    rotated = ndimage.rotate(values, 37.0, axes=(2, 3), reshape=False, order=1).sum(axis=2)
    error = np.abs(series.sel(angle=37.0).values - rotated).mean() / rotated.mean()
    assert error < 0.01


def test_projection_of_a_dask_volume_and_progress(volume, capsys):
    lazy = volume.chunk({"z": 16})
    series = project(lazy, angles=[10.0, 20.0], progress=True)
    np.testing.assert_allclose(series.values, project(volume, angles=[10.0, 20.0]).values, rtol=1e-6)
    assert "project" in capsys.readouterr().err


def test_project_refuses_radians_and_bad_angles(volume):
    with pytest.raises(SchemaError, match=r"look like radians.*numpy\.rad2deg"):
        project(volume, angles=np.linspace(0, np.pi, 8))
    with pytest.raises(SchemaError, match=r"finite; got NaN or infinity at positions \[1\]"):
        project(volume, angles=[0.0, np.nan])
    with pytest.raises(SchemaError, match=r"non-empty 1-D .* got shape \(2, 2\)"):
        project(volume, angles=[[0.0, 1.0], [2.0, 3.0]])
    with pytest.raises(SchemaError, match=r"repeated angles"):
        project(volume, angles=[0.0, 10.0, 0.0])
    # Few angles in a small range are plausible degrees.
    assert project(volume, angles=[0.0, 1.0, 2.0]).sizes["angle"] == 3


def test_project_refuses_what_is_not_a_volume(volume):
    maps = nmc_particle((16, 16))
    with pytest.raises(SchemaError, match=r"project takes a volume \('element', 'z', 'y', 'x'\); got maps"):
        project(maps, angles=[0.0])
    with pytest.raises(SchemaError, match=r"xarray\.DataArray .* got ndarray"):
        project(volume.values, angles=[0.0])
    with pytest.raises(SchemaError, match=r"missing \['element'\]"):
        project(xr.DataArray(np.zeros((2, 2, 2)), dims=("z", "y", "x"), name="counts"), angles=[0.0])
    flat = xrf_volume(np.ones((1, 4, 8, 8)), elements=["Ni_K"], voxel_nm=(10.0, 10.0, 20.0))
    with pytest.raises(ValueError, match=r"square voxels .* \[10\.0, 10\.0, 20\.0\]"):
        project(flat, angles=[0.0])


def test_old_import_path_still_gives_the_projector():
    from xrfsr_dask import phantoms

    assert phantoms.project is project
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        phantoms.nothing  # noqa: B018
