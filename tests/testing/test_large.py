"""Lazily generated large maps: the shapes they promise, Poisson counts around them, repeatable, lazy."""

import numpy as np
import pytest

from xrfsr_dask.testing.large import CELL_PX, large_maps


def test_building_computes_nothing(no_dask_compute):
    with no_dask_compute():
        maps = large_maps((16384, 16384), chunk=1024)
    assert maps.shape == (4, 16384, 16384) and maps.data.npartitions == 4 * 16 * 16
    assert list(maps.element.values) == ["Ni_K", "Co_K", "Mn_K", "Mo_L"]
    assert maps.attrs["step_nm"] == [50.0, 50.0]


def test_expected_counts_known_answers():
    maps = large_maps((512, 512), chunk=200, noise=False).values
    ni, co, mn, mo = maps
    yy, xx = np.mgrid[:512, :512]
    inside = np.hypot(yy - 255.5, xx - 255.5) <= 256
    # Ni and Co fill complementary halves of the star: full signal in one, 15 % in the other
    np.testing.assert_allclose((ni / 200 + co / (200 / 1.5))[inside], 1.15, rtol=1e-6)
    np.testing.assert_allclose(ni[~inside], 30.0)
    assert 0.45 < (ni[inside] == 200).mean() < 0.55
    # Mn rings from 0 to full signal inside, 10 % outside
    assert mn[inside].min() == pytest.approx(0.0, abs=0.05) and mn[inside].max() == pytest.approx(100.0, rel=1e-3)
    np.testing.assert_allclose(mn[~inside], 10.0)
    # a Mo particle (radius 6.4 to 25.6 px) at every cell centre, background 5 % at the cell corners
    centres = mo[CELL_PX // 2::CELL_PX, CELL_PX // 2::CELL_PX]
    corners = mo[::CELL_PX, ::CELL_PX]
    np.testing.assert_allclose(centres, 80.0)
    np.testing.assert_allclose(corners, 4.0)


def test_poisson_counts_repeatable_and_seeded():
    a = large_maps((600, 600), chunk=256, seed=3)
    b = large_maps((600, 600), chunk=256, seed=3)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.array_equal(a.values, large_maps((600, 600), chunk=256, seed=4).values)
    corner = a.values[0, :40, :40]  # outside the star: expected 30 counts
    assert abs(corner.mean() - 30.0) < 4 * np.sqrt(30.0 / corner.size)
    assert corner.var() == pytest.approx(30.0, rel=0.1)  # Poisson: variance equals the mean
    assert np.array_equal(corner, np.round(corner))


def test_bad_counts_named():
    with pytest.raises(ValueError, match="counts has 2 values for 4 elements"):
        large_maps((64, 64), counts=[1.0, 2.0])
