"""Structure families: determinism, counts, data model, physical-size invariance, correlations."""

import math

import numpy as np
import pytest

from xrfsr_dask.families import FAMILIES, HELD_OUT, _band, _ellipses, _grf, _Grid, _rects, structure_maps
from xrfsr_dask.schema import validate

NAMES = sorted(FAMILIES)


def _bin2(values):
    n, ny, nx = values.shape
    return values.reshape(n, ny // 2, 2, nx // 2, 2).mean(axis=(2, 4))


def _pearson(a, b):
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def test_family_table():
    assert set(FAMILIES) == {
        "cell", "fibres", "porous", "polycrystal", "targets", "particles", "texture", "circuit"
    }
    assert HELD_OUT == ("circuit",)
    assert all(isinstance(text, str) and text for text in FAMILIES.values())


@pytest.mark.parametrize("family", NAMES)
def test_same_seed_same_maps_other_seed_differs(family):
    a = structure_maps(family, (64, 64), pixel_nm=20.0, seed=3)
    b = structure_maps(family, (64, 64), pixel_nm=20.0, seed=3)
    c = structure_maps(family, (64, 64), pixel_nm=20.0, seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    assert np.mean(a.values != c.values) > 0.3


@pytest.mark.parametrize("family", NAMES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counts_are_finite_non_negative_and_scaled(family, seed):
    maps = structure_maps(family, (128, 128), pixel_nm=10.0, seed=seed, counts=1000.0)
    values = maps.values
    record = maps.attrs["provenance"][-1]["parameters"]
    assert values.dtype == np.float32
    assert np.all(np.isfinite(values))
    assert values.min() >= 0.0
    brightest = record["brightest"]
    assert record["levels"][brightest] == 1.0
    assert 500.0 <= np.percentile(values[brightest], 99) <= 2000.0
    # Every element holds structure, at a level drawn from 1 % to 100 % of counts.
    levels = np.array(record["levels"])
    assert np.all((levels >= 0.01) & (levels <= 1.0))
    for plane, level in zip(values, levels, strict=True):
        assert plane.std() > 0.0
        assert plane.max() > 0.2 * level * 1000.0


def test_counts_scale_every_plane_linearly():
    low = structure_maps("porous", (64, 64), pixel_nm=20.0, seed=5, counts=10.0).values
    high = structure_maps("porous", (64, 64), pixel_nm=20.0, seed=5, counts=1000.0).values
    np.testing.assert_allclose(high, 100.0 * low, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", NAMES)
def test_maps_follow_the_data_model(family):
    maps = structure_maps(family, (40, 56), pixel_nm=12.5, seed=7, elements=("Cu_K", "W_L", "Zn_K"))
    assert validate(maps) is maps
    assert maps.dims == ("element", "y", "x")
    assert maps.shape == (3, 40, 56)
    assert list(maps.element.values) == ["Cu_K", "W_L", "Zn_K"]
    for axis, n in (("y", 40), ("x", 56)):
        assert maps[axis].attrs["units"] == "nm"
        np.testing.assert_allclose(maps[axis].values, 12.5 * np.arange(n))
    assert maps.attrs["step_nm"] == [12.5, 12.5]
    assert maps.attrs["probe_fwhm_nm"] is None
    record = maps.attrs["provenance"][-1]
    assert record["operation"] == "xrfsr_dask.families.structure_maps"
    parameters = record["parameters"]
    assert (parameters["family"], parameters["seed"], parameters["pixel_nm"]) == (family, 7, 12.5)
    assert parameters["elements"] == ["Cu_K", "W_L", "Zn_K"]
    assert isinstance(parameters["structure"], dict) and parameters["structure"]
    assert len(parameters["mix"]) == 3


@pytest.mark.parametrize("family", NAMES)
def test_pixel_size_samples_the_same_structure(family):
    # The same 1.28 um field at 5 nm and at 10 nm: the fine map binned 2 x 2 is the coarse map.
    for seed in (0, 1):
        fine = structure_maps(family, (256, 256), pixel_nm=5.0, seed=seed).values.astype(np.float64)
        coarse = structure_maps(family, (128, 128), pixel_nm=10.0, seed=seed).values.astype(np.float64)
        binned = _bin2(fine)
        for b, c in zip(binned, coarse, strict=True):
            assert _pearson(b, c) > 0.97
            np.testing.assert_allclose(b.mean(), c.mean(), rtol=0.05)


def test_families_differ():
    planes = {f: structure_maps(f, (96, 96), pixel_nm=20.0, seed=0).values for f in NAMES}
    for i, first in enumerate(NAMES):
        for second in NAMES[i + 1:]:
            r = max(abs(_pearson(a, b)) for a, b in zip(planes[first], planes[second], strict=True))
            assert r < 0.6, (first, second, r)


@pytest.mark.parametrize("family", ["texture", "fibres", "polycrystal"])
def test_some_elements_correlate_and_some_anticorrelate(family):
    for seed in (0, 1, 2):
        values = structure_maps(family, (128, 128), pixel_nm=20.0, seed=seed).values
        r = np.corrcoef(values.reshape(len(values), -1))[np.triu_indices(len(values), 1)]
        assert r.min() < -0.2
        if family != "polycrystal":
            assert r.max() > 0.5


def test_texture_roles_correlate_as_stated():
    values = structure_maps("texture", (128, 128), pixel_nm=20.0, seed=0).values
    base, correlated, anti, independent = (np.log(v) for v in values)
    assert _pearson(base, correlated) > 0.5
    assert _pearson(base, anti) < -0.4
    assert abs(_pearson(base, independent)) < 0.3


def test_elements_cycle_through_roles_and_one_name_is_one_plane():
    names = ["Cu_K", "W_L", "Zn_K", "Ti_K", "Mn_K", "Ni_K"]
    maps = structure_maps("cell", (64, 64), pixel_nm=20.0, seed=1, elements=names)
    record = maps.attrs["provenance"][-1]["parameters"]
    assert maps.shape == (6, 64, 64)
    assert [next(iter(mix)) for mix in record["mix"]] == [
        "membrane", "cytoplasm", "granules", "organelles", "membrane", "cytoplasm"
    ]
    single = structure_maps("texture", (32, 32), pixel_nm=20.0, elements="Fe_K")
    assert single.shape == (1, 32, 32)


def test_random_field_has_unit_variance_and_the_stated_correlation_length():
    grid = _Grid(512, 512, 5.0)
    field = _grf(grid, 123, 50.0)
    assert abs(field.mean()) < 1e-9 and abs(field.std() - 1.0) < 1e-9
    # exp(-r**2 / (2 corr**2)) at r = corr (10 pixels): exp(-1/2) = 0.61.
    lagged = np.mean([_pearson(field[:, :-10], field[:, 10:]), _pearson(field[:-10], field[10:])])
    assert abs(lagged - math.exp(-0.5)) < 0.08


def test_partial_volume_keeps_the_mass_of_thin_and_small_features():
    grid = _Grid(64, 64, 10.0)
    # A band 4 nm wide (0.4 pixel) holds 0.4 pixel of mass per unit length.
    y, _x = grid.axes()
    band = _band(y - 321.7, 2.0, grid.p) * np.ones((1, 64))
    np.testing.assert_allclose(band.sum(axis=0), 0.4, rtol=1e-6)
    # Discs, spheres and faceted particles from 0.2 to 10 pixels across keep their area or
    # volume wherever they sit on the grid: within 6 %, 2 % on average.
    rng = np.random.default_rng(0)
    for profile, volume in (("flat", 1.0), ("dome", 2 / 3), ("facet", 1 - 1 / (3 * 1.5**2))):
        for radius in (1.0, 3.0, 7.0, 21.0, 50.0):
            ratios = []
            for cy, cx in rng.uniform(300.0, 340.0, (8, 2)):
                drawn = _ellipses(grid, cy, cx, radius, 0.8 * radius, 0.4, profile=profile)
                ratios.append(drawn.sum() * 100.0 / (volume * math.pi * 0.8 * radius**2))
            assert np.all(np.abs(np.array(ratios) - 1) < 0.06), (profile, radius, ratios)
            assert abs(np.mean(ratios) - 1) < 0.02, (profile, radius, ratios)
    # Axis-aligned rectangles are covered exactly.
    box = _rects(grid, np.array([12.0]), np.array([47.5]), np.array([100.0]), np.array([133.0]))
    np.testing.assert_allclose(box.sum() * 100.0, 35.5 * 33.0, rtol=1e-9)
    np.testing.assert_allclose(box[1, 9:15], [0.0, 0.8, 0.8, 0.8, 0.8 * 0.3, 0.0], atol=1e-12)
    np.testing.assert_allclose(box[2:5, 12], [1.0, 1.0, 0.75], atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"family": "cells"}, ValueError, r"family='cells' is not a known.*'cell', 'fibres'"),
        ({"family": "cell", "shape": (4, 64)}, ValueError, r"shape must be two integers.*got \(4, 64\)"),
        ({"family": "cell", "shape": (64,)}, ValueError, r"shape must be two integers"),
        ({"family": "cell", "shape": (64.0, 64)}, ValueError, r"shape must be two integers"),
        ({"family": "cell", "pixel_nm": 0.0}, ValueError, r"pixel_nm must be a pixel size in nm.*got 0.0"),
        ({"family": "cell", "pixel_nm": float("nan")}, ValueError, r"pixel_nm must be.*got nan"),
        ({"family": "cell", "pixel_nm": 500.0}, ValueError, r"pixel_nm .*\(0, 100\].*coarsen"),
        ({"family": "cell", "counts": -1.0}, ValueError, r"counts must be a finite number.*got -1.0"),
        ({"family": "cell", "counts": math.inf}, ValueError, r"counts must be .*got inf"),
        ({"family": "cell", "seed": -1}, ValueError, r"seed must be an integer >= 0; got -1"),
        ({"family": "cell", "seed": 1.5}, TypeError, r"seed must be an integer"),
        ({"family": "cell", "elements": []}, ValueError, r"elements must be one or more distinct"),
        ({"family": "cell", "elements": ["Fe_K", "Fe_K"]}, ValueError, r"distinct.*\['Fe_K', 'Fe_K'\]"),
    ],
)
def test_bad_arguments_are_refused_with_a_fix(kwargs, error, match):
    family = kwargs.pop("family")
    with pytest.raises(error, match=match):
        structure_maps(family, **{"shape": (32, 32), **kwargs})
