"""Phantoms: determinism, layout, NMC composition and voids."""

import numpy as np
import pytest
from scipy import ndimage

from xrfsr_dask.phantoms import ELEMENTS, Phase, nmc_particle, nmc_volume


@pytest.fixture(scope="module")
def particle():
    return nmc_particle((128, 128), seed=3, return_phases=True)


def test_same_seed_same_maps_other_seed_differs():
    a = nmc_particle((64, 80), seed=11)
    b = nmc_particle((64, 80), seed=11)
    c = nmc_particle((64, 80), seed=12)
    np.testing.assert_array_equal(a.values, b.values)
    assert np.mean(a.values != c.values) > 0.05
    cube = (16, 16, 16)
    np.testing.assert_array_equal(nmc_volume(cube, seed=2).values, nmc_volume(cube, seed=2).values)
    assert not np.array_equal(nmc_volume(cube, seed=2).values, nmc_volume(cube, seed=3).values)


def test_maps_layout_in_nanometres():
    maps = nmc_particle((48, 64), pixel_nm=7.5, seed=1, counts=500.0)
    assert maps.dims == ("element", "y", "x")
    assert maps.shape == (4, 48, 64)
    assert list(maps.element.values) == list(ELEMENTS)
    assert maps.dtype == np.float32
    np.testing.assert_allclose(np.diff(maps.x.values), 7.5)
    np.testing.assert_allclose(np.diff(maps.y.values), 7.5)
    assert maps.x.attrs["units"] == "nm"
    assert maps.attrs["step_nm"] == [7.5, 7.5]
    assert maps.attrs["probe_fwhm_nm"] is None
    assert maps.attrs["units"] == "counts"
    values = maps.values
    assert np.all(np.isfinite(values))
    assert values.min() == 0.0
    record = maps.attrs["provenance"][-1]
    assert record["operation"] == "xrfsr_dask.phantoms.nmc_particle"
    assert record["parameters"]["seed"] == 1
    assert record["parameters"]["counts"] == 500.0
    np.testing.assert_allclose(float(maps.sel(element="Ni_K").max()), 500.0, rtol=0.15)


def test_background_is_added_everywhere():
    plain = nmc_particle((32, 32), seed=4)
    lifted = nmc_particle((32, 32), seed=4, background=3.0)
    np.testing.assert_allclose(lifted.values - plain.values, 3.0, atol=1e-3)


def test_grain_interiors_are_nmc622(particle):
    maps, phases = particle
    bulk = maps.where(phases == Phase.INTERIOR).sum(["y", "x"])
    ni, co, mn = (float(bulk.sel(element=e)) for e in ("Ni_K", "Co_K", "Mn_K"))
    total = ni + co + mn
    np.testing.assert_allclose([ni / total, mn / total, co / total], [0.6, 0.2, 0.2], rtol=0.1)
    mean_ni = float(maps.sel(element="Ni_K").where(phases == Phase.INTERIOR).mean())
    np.testing.assert_allclose(mean_ni, 2000.0, rtol=0.05)
    # Grains differ in composition by a few percent, no more.
    co = maps.sel(element="Co_K").where(phases == Phase.INTERIOR)
    assert 0.005 < float(co.std() / co.mean()) < 0.1


def test_mo_enriched_at_grain_boundaries_and_surface(particle):
    maps, phases = particle
    mo = maps.sel(element="Mo_L")
    interior = float(mo.where(phases == Phase.INTERIOR).mean())
    assert 0.01 < interior / 2000.0 < 0.03
    assert float(mo.where(phases == Phase.BOUNDARY).mean()) > 2 * interior
    assert float(mo.where(phases == Phase.SURFACE).mean()) > 2 * interior
    # Transition metals are not enriched there.
    ni = maps.sel(element="Ni_K")
    assert float(ni.where(phases == Phase.BOUNDARY).mean()) < float(ni.where(phases == Phase.INTERIOR).mean())


def test_structure_reaches_the_pixel_scale(particle):
    maps, phases = particle
    boundary = (phases == Phase.BOUNDARY).values
    depth = ndimage.distance_transform_edt(boundary)
    assert boundary.mean() > 0.02
    assert np.percentile(depth[boundary], 99) <= 1.5
    assert depth.max() <= 2.5
    # The outline is a step from nothing to the full bulk between neighbours.
    ni = maps.sel(element="Ni_K").values
    assert np.abs(np.diff(ni, axis=1)).max() > 0.9 * 2000.0
    _, n_grains = ndimage.label(phases.values == Phase.INTERIOR)
    assert n_grains >= 8


def test_pores_and_cracks_are_empty(particle):
    maps, phases = particle
    outline = (phases != Phase.OUTSIDE).values
    empty = (maps.values == 0).all(axis=0)
    assert 0.005 < empty[outline].mean() < 0.1
    np.testing.assert_array_equal(empty & outline, (phases == Phase.VOID).values)
    dense, dense_phases = nmc_particle((128, 128), seed=3, porosity=0.0, cracks=0, return_phases=True)
    assert not (dense_phases == Phase.VOID).any()
    assert not (dense.values == 0).all(axis=0)[(dense_phases != Phase.OUTSIDE).values].any()
    _, cracked = nmc_particle((128, 128), seed=3, porosity=0.0, cracks=4, return_phases=True)
    assert int((cracked == Phase.VOID).sum()) > 50
    _, porous = nmc_particle((128, 128), seed=3, porosity=0.06, cracks=0, return_phases=True)
    assert 0.03 < float((porous == Phase.VOID).sum() / (porous != Phase.OUTSIDE).sum()) < 0.08


def test_element_subset_and_order_are_honoured():
    full = nmc_particle((64, 64), seed=9)
    co = nmc_particle((64, 64), seed=9, elements=["Co_K"])
    assert list(co.element.values) == ["Co_K"]
    np.testing.assert_array_equal(co.values[0], full.sel(element="Co_K").values)
    swapped = nmc_particle((64, 64), seed=9, elements=("Mo_L", "Ni_K"))
    np.testing.assert_array_equal(swapped.values, full.sel(element=["Mo_L", "Ni_K"]).values)


def test_volume_layout_and_composition():
    volume, phases = nmc_volume((40, 36, 44), voxel_nm=25.0, seed=1, grain_nm=250.0, return_phases=True)
    assert volume.dims == ("element", "z", "y", "x")
    assert volume.shape == (4, 40, 36, 44)
    assert volume.dtype == np.float32
    assert volume.attrs["voxel_nm"] == [25.0, 25.0, 25.0]
    np.testing.assert_allclose(np.diff(volume.z.values), 25.0)
    assert phases.dims == ("z", "y", "x")
    assert np.all(np.isfinite(volume.values))
    assert volume.values.min() == 0.0
    bulk = volume.where(phases == Phase.INTERIOR).sum(["z", "y", "x"])
    np.testing.assert_allclose(
        (bulk / bulk.sel(element="Ni_K")).sel(element=["Co_K", "Mn_K"]).values, 1 / 3, rtol=0.1
    )
    mo = volume.sel(element="Mo_L")
    interior = float(mo.where(phases == Phase.INTERIOR).mean())
    assert float(mo.where(phases == Phase.BOUNDARY).mean()) > 2 * interior
    assert 0.0 < float((phases == Phase.VOID).sum() / (phases != Phase.OUTSIDE).sum()) < 0.1
    assert volume.attrs["provenance"][-1]["operation"] == "xrfsr_dask.phantoms.nmc_volume"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"elements": ["Ni_K", "Fe_K"]}, ValueError, r"unknown names \['Fe_K'\].*Ni_K, Co_K, Mn_K, Mo_L"),
        ({"elements": []}, ValueError, r"no names"),
        ({"elements": ["Ni_K", "Ni_K"]}, ValueError, r"repeated names"),
        ({"pixel_nm": 0.0}, ValueError, r"pixel_nm must be a finite number > 0 \(nm\); got 0\.0"),
        ({"pixel_nm": -5}, ValueError, r"pixel_nm .* got -5"),
        ({"shape": (32, 32, 32)}, ValueError, r"shape must be 2 integers \('y', 'x'\).*use nmc_volume"),
        ({"shape": (4, 32)}, ValueError, r"at least 8; got \(4, 32\)"),
        ({"porosity": 0.6}, ValueError, r"porosity must be below 0\.5"),
        ({"cracks": -1}, ValueError, r"cracks must be a whole number >= 0; got -1"),
        ({"grain_nm": float("nan")}, ValueError, r"grain_nm must be a finite number"),
        ({"seed": 1.5}, TypeError, r"seed must be an integer; got 1\.5"),
    ],
)
def test_particle_bad_input(kwargs, error, match):
    kwargs.setdefault("shape", (32, 32))
    with pytest.raises(error, match=match):
        nmc_particle(**kwargs)


def test_volume_bad_input():
    with pytest.raises(ValueError, match=r"shape must be 3 integers \('z', 'y', 'x'\).*use nmc_particle"):
        nmc_volume((32, 32))
    with pytest.raises(ValueError, match=r"voxel_nm must be a finite number > 0"):
        nmc_volume((16, 16, 16), voxel_nm=0)
    with pytest.raises(ValueError, match=r"unknown names \['Mo_K'\]"):
        nmc_volume((16, 16, 16), elements=["Mo_K"])
