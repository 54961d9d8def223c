"""Rotation centre: known offsets recovered by both methods, in pixels and nm."""

import numpy as np
import pytest

from xrfsr_dask import nmc_volume, project
from xrfsr_dask.tomo import find_center, reconstruct


@pytest.fixture(scope="module")
def wide():
    """Projections of a particle over 360 degrees on a 64-pixel detector, axis at 31.5."""
    volume = nmc_volume(shape=(8, 64, 64), voxel_nm=20.0, seed=11, radius_nm=400.0)
    return project(volume, angles=np.arange(0.0, 360.0, 3.0))


@pytest.mark.parametrize("crop", [(0, 64), (3, 64), (0, 59), (5, 62)])
def test_opposite_pairs_recover_known_offset(wide, crop):
    """Cropping the detector moves the axis by a known amount: it sits at 31.5 - start."""
    start, stop = crop
    series = wide.isel(x=slice(start, stop))
    found = find_center(series)
    expected = 31.5 - start
    assert found.method == "opposite"
    assert found.pixel == pytest.approx(expected, abs=0.5)
    assert found.offset_pixel == pytest.approx(expected - (stop - start - 1) / 2, abs=0.5)
    assert found.nm == pytest.approx(float(series.x[0]) + 20.0 * found.pixel)
    assert found.spread_pixel < 0.25


@pytest.mark.parametrize("start", [0, 4])
def test_sharpness_recovers_known_offset_without_opposite_pairs(wide, start):
    series = wide.sel(angle=slice(0, 179)).isel(x=slice(start, None))
    found = find_center(series)
    assert found.method == "sharpness"
    assert found.pixel == pytest.approx(31.5 - start, abs=0.5)
    volume = reconstruct(series, center=found)
    assert volume.attrs["provenance"][-1]["parameters"]["center_pixel"] == found.pixel


def test_opposite_needs_pairs(wide):
    with pytest.raises(ValueError, match=r"method='opposite' needs projections 180 degrees apart.*method='sharpness'"):
        find_center(wide.sel(angle=slice(0, 179)), method="opposite")
    with pytest.raises(ValueError, match=r"method='middle' is not one of"):
        find_center(wide, method="middle")


@pytest.mark.parametrize("start", [0, 5])
def test_sharpness_survives_probe_blur_and_counting_noise(start):
    # Noise used to swamp the total variation, which then picked the edge of
    # the search range (-16.4 px here); the negative mass of the slices does not.
    from xrfsr_dask import simulate_scan

    volume = nmc_volume((48, 64, 64), voxel_nm=20.0, seed=5)
    series = project(volume, angles=np.arange(0.0, 180.0, 2.0))
    scanned = simulate_scan(series, step_nm=20.0, probe=60.0, noise=True, seed=1).isel(x=slice(start, None))
    for element in (None, "Ni_K"):
        found = find_center(scanned, element=element)
        assert found.method == "sharpness"
        assert found.pixel == pytest.approx(31.5 - start, abs=0.5)
