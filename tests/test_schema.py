"""Data model: constructors, validation errors that name the field, provenance."""

import math

import dask.array as dsa
import numpy as np
import pytest
import xarray as xr

from xrfsr_dask import SchemaError, add_provenance, validate, xrf_maps, xrf_volume
from xrfsr_dask.schema import (
    NAN_POLICIES,
    check_nan_policy,
    counts_dtype,
    emission_energy_kev,
    emission_lines,
    flux_factor,
    kind_of,
)


def maps(**kwargs):
    kwargs.setdefault("elements", ["Ni_K", "Co_K"])
    kwargs.setdefault("step_nm", (20.0, 25.0))
    return xrf_maps(np.ones((2, 4, 5)), **kwargs)


def test_maps_coords_are_nanometres_on_the_step_grid():
    da = maps(origin_nm=(100.0, -50.0))
    assert da.dims == ("element", "y", "x")
    np.testing.assert_array_equal(da.y.values, [100.0, 120.0, 140.0, 160.0])
    np.testing.assert_array_equal(da.x.values, [-50.0, -25.0, 0.0, 25.0, 50.0])
    assert da.x.attrs["units"] == "nm" and da.y.attrs["units"] == "nm"
    assert da.attrs["step_nm"] == [20.0, 25.0]
    assert kind_of(da) == "maps"


def test_element_lines_and_energies_from_names():
    da = xrf_maps(np.ones((4, 2, 2)), elements=["Ni_K", "Mo_L", "Pt_M", "compton"], step_nm=10)
    assert list(da.line.values) == ["K", "L", "M", ""]
    np.testing.assert_allclose(da.energy_kev.values[:3], [7.478, 2.293, 2.048])
    assert math.isnan(da.energy_kev.values[3])
    assert emission_energy_kev("Fe_ka1") == ("K", 6.404)
    assert emission_energy_kev("Fe") == ("K", 6.404)
    line, energy = emission_energy_kev("Xx_K")
    assert line == "" and math.isnan(energy)
    line, energy = emission_energy_kev("Rb")
    assert line == "K" and math.isnan(energy)
    assert da.energy_kev.attrs["units"] == "keV"


def test_series_angles_in_degrees_and_radians_converted():
    counts = np.zeros((1, 3, 2, 2))
    deg = xrf_maps(counts, elements=["Ni_K"], step_nm=10, angles=[0, 45, 90])
    rad = xrf_maps(counts, elements=["Ni_K"], step_nm=10, angles=np.deg2rad([0, 45, 90]), angle_units="rad")
    np.testing.assert_allclose(rad.angle.values, deg.angle.values)
    assert deg.dims == ("element", "angle", "y", "x")
    assert deg.angle.attrs["units"] == "deg"


def test_volume_has_voxel_size_and_nm_coords():
    vol = xrf_volume(np.zeros((1, 3, 4, 5)), elements=["Co_K"], voxel_nm=(10, 20, 30))
    assert vol.dims == ("element", "z", "y", "x")
    assert vol.attrs["voxel_nm"] == [10.0, 20.0, 30.0]
    np.testing.assert_array_equal(vol.x.values, [0, 30, 60, 90, 120])


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [(np.float16, np.float32), (np.float32, np.float32), (np.float64, np.float64),
     (np.int32, np.float32), (np.uint16, np.float32), (np.bool_, np.float32)],
)
def test_dtype_policy(dtype, expected):
    assert counts_dtype(dtype) == expected
    assert xrf_maps(np.ones((1, 2, 2), dtype=dtype), elements=["Ni_K"], step_nm=1).dtype == expected


def test_complex_counts_refused():
    with pytest.raises(SchemaError, match=r"complex.*abs\(x\) \*\* 2"):
        xrf_maps(np.ones((1, 2, 2), dtype=complex), elements=["Ni_K"], step_nm=1)


def test_constructor_shape_errors():
    with pytest.raises(SchemaError, match=r"elements has 1 names but counts has 2"):
        xrf_maps(np.ones((2, 2, 2)), elements=["Ni_K"], step_nm=1)
    with pytest.raises(SchemaError, match=r"Pass angles="):
        xrf_maps(np.ones((2, 3, 2, 2)), elements=["Ni_K", "Co_K"], step_nm=1)
    with pytest.raises(SchemaError, match=r"angles has shape \(2,\) but counts has 3"):
        xrf_maps(np.ones((1, 3, 2, 2)), elements=["Ni_K"], step_nm=1, angles=[0, 1])
    with pytest.raises(SchemaError, match=r"step_nm must be one number or 2 numbers"):
        xrf_maps(np.ones((1, 2, 2)), elements=["Ni_K"], step_nm=(1, 2, 3))


def test_validate_refuses_missing_dim():
    da = maps().isel(x=0)
    with pytest.raises(SchemaError, match=r"closest is maps .*missing \[.x.\]"):
        validate(da)


def test_validate_refuses_wrong_dim_order():
    with pytest.raises(SchemaError, match=r"another order; transpose with obj.transpose\(.element., .y., .x.\)"):
        validate(maps().transpose("element", "x", "y"))


def test_validate_refuses_micrometre_coords():
    da = maps()
    da.x.attrs["units"] = "um"
    with pytest.raises(SchemaError, match=r"'x' has units 'um'.*multiply by 1000"):
        validate(da)


def test_validate_refuses_non_monotonic_positions():
    da = maps()
    da = da.assign_coords(y=("y", [0.0, 20.0, 10.0, 30.0], {"units": "nm"}))
    with pytest.raises(SchemaError, match=r"'y' is not strictly increasing: 20.0 nm at index 1"):
        validate(da)


def test_validate_refuses_step_that_disagrees_with_coords():
    da = maps()
    da.attrs["step_nm"] = [20.0, 50.0]
    with pytest.raises(SchemaError, match=r"'x' has spacing 25 nm but step_nm says 50 nm"):
        validate(da)


def test_validate_refuses_unknown_scan_mode():
    da = maps()
    da.attrs["scan_mode"] = "raster"
    with pytest.raises(SchemaError, match=r"scan_mode'\] = 'raster'; expected one of \('step', 'fly'\)"):
        validate(da)


def test_validate_refuses_bad_fast_axis_probe_and_units():
    for key, value, pattern in [
        ("fast_axis", "z", r"fast_axis"),
        ("probe_fwhm_nm", -3.0, r"probe_fwhm_nm'\] = -3.0; expected a positive number or None"),
        ("dwell_s", "fast", r"dwell_s"),
        ("units", None, r"units"),
        ("provenance", "made by hand", r"provenance"),
    ]:
        da = maps()
        da.attrs[key] = value
        with pytest.raises(SchemaError, match=pattern):
            validate(da)


def test_validate_refuses_radian_angles():
    counts = np.zeros((1, 10, 2, 2))
    da = xrf_maps(counts, elements=["Ni_K"], step_nm=10, angles=np.linspace(0, 180, 10))
    da.angle.attrs["units"] = "rad"
    with pytest.raises(SchemaError, match=r"radians.*numpy.rad2deg"):
        validate(da)
    with pytest.raises(SchemaError, match=r"the 10 angles look like radians .*numpy\.rad2deg"):
        xrf_maps(counts, elements=["Ni_K"], step_nm=10, angles=np.linspace(0, np.pi, 10))
    # Eight angles over [0, pi): a span of 7/8 pi, which the older check let through as degrees.
    eight = np.zeros((1, 8, 2, 2))
    with pytest.raises(SchemaError, match=r"the 8 angles look like radians \(all within ±2π, 0 to 2\.749"):
        xrf_maps(eight, elements=["Ni_K"], step_nm=10, angles=np.linspace(0, np.pi, 8, endpoint=False))
    # The same angles in degrees, and a few small angles, are degrees.
    assert xrf_maps(eight, elements=["Ni_K"], step_nm=10, angles=np.linspace(0, 180, 8, endpoint=False)).sizes[
        "angle"] == 8
    assert xrf_maps(counts[:, :3], elements=["Ni_K"], step_nm=10, angles=[0.0, 1.0, 2.0]).sizes["angle"] == 3


def test_steps_written_in_micrometres_are_refused_with_the_fix():
    with pytest.raises(SchemaError, match=r"attrs\['step_nm'\] = \[0\.05, 0\.05\] nm is finer than 0\.5 nm.*"
                                          r"multiplying by 1000 \(step_nm=\[50\.0, 50\.0\]\)"):
        xrf_maps(np.ones((1, 4, 4)), elements=["Ni_K"], step_nm=0.05)
    with pytest.raises(SchemaError, match=r"voxel_nm.*finer than 0\.5 nm"):
        xrf_volume(np.ones((1, 2, 2, 2)), elements=["Ni_K"], voxel_nm=0.01)
    assert xrf_maps(np.ones((1, 4, 4)), elements=["Ni_K"], step_nm=0.5).attrs["step_nm"] == [0.5, 0.5]


def test_validate_names_the_kind_the_caller_takes():
    da = maps()
    assert validate(da, "maps") is da and validate(da, ("maps", "series"), caller="enhance") is da
    with pytest.raises(SchemaError, match=r"^align takes a projection series \('element', 'angle', 'y', 'x'\); "
                                          r"got maps with dims \('element', 'y', 'x'\)\.$"):
        validate(da, "series", caller="align")
    with pytest.raises(SchemaError, match=r"project takes an xarray\.DataArray named 'counts' \(a volume .*\); "
                                          r"got ndarray\. Make one with"):
        validate(da.values, "volume", caller="project")
    with pytest.raises(ValueError, match=r"kind must be among \('maps', 'series', 'volume'\); got \['map'\]"):
        validate(da, "map")


def test_one_flux_normalisation_for_arrays_and_labeled_data():
    flux = np.array([2.0, 1.0, 0.0, 1.0])
    np.testing.assert_allclose(flux_factor(flux), [2 / 3, 4 / 3, np.nan, 4 / 3])
    labeled = flux_factor(xr.DataArray(flux, dims="angle"))
    np.testing.assert_allclose(labeled.values, flux_factor(flux))


def test_nan_policies_share_one_vocabulary():
    assert check_nan_policy("mask", ("raise", "mask")) == "mask"
    with pytest.raises(ValueError, match=r"nan must be one of \('raise', 'mask'\); got 'fill'\. "
                                         r"\('raise': non-finite"):
        check_nan_policy("fill", ("raise", "mask"))
    assert set(NAN_POLICIES) == {"raise", "keep", "mask", "interpolate", "zero"}


def test_bare_symbols_with_several_lines_are_listed():
    assert emission_lines("Mo") == {"K": 17.479, "L": 2.293}
    assert emission_lines("Fe") == {"K": 6.404}


def test_validate_refuses_repeated_elements_and_angles():
    with pytest.raises(SchemaError, match=r"repeated names"):
        xrf_maps(np.ones((2, 2, 2)), elements=["Ni_K", "Ni_K"], step_nm=1)
    with pytest.raises(SchemaError, match=r"repeated angles"):
        xrf_maps(np.ones((1, 2, 2, 2)), elements=["Ni_K"], step_nm=1, angles=[5, 5])


def test_validate_dataset_and_wrong_names():
    ds = maps().to_dataset()
    assert validate(ds).name == "counts"
    with pytest.raises(SchemaError, match=r"no variable 'counts' \(found: \['Ni'\]\)"):
        validate(maps().rename("Ni").to_dataset())
    with pytest.raises(SchemaError, match=r"named 'ni'; expected 'counts'"):
        validate(maps().rename("ni"))


def test_validate_reads_no_values_of_lazy_data():
    def explode(block):
        raise AssertionError("validate computed the data")

    lazy = dsa.ones((2, 4, 5), chunks=(1, 2, 2)).map_blocks(explode, dtype=float)
    da = xrf_maps(lazy, elements=["Ni_K", "Co_K"], step_nm=1)
    assert isinstance(validate(da).data, dsa.Array)


def test_provenance_appends_without_mutating():
    da = maps()
    first = da.attrs["provenance"]
    out = add_provenance(da, "test.op", {"path": __import__("pathlib").Path("/x"), "n": np.int64(3),
                                         "nan": float("nan"), "shape": (1, 2)})
    assert da.attrs["provenance"] is first and len(first) == 1
    record = out.attrs["provenance"][-1]
    assert record["operation"] == "test.op"
    assert record["parameters"] == {"path": "/x", "n": 3, "nan": "nan", "shape": [1, 2]}
    assert record["version"].startswith("xrfsr_dask ")
    xr.testing.assert_equal(out, da)


@pytest.mark.parametrize("name", ["align", "find_center", "normalize", "reconstruct", "project"])
def test_every_public_function_refuses_the_wrong_kind_with_a_schema_error(name):
    from xrfsr_dask import tomo

    wrong = maps() if name != "project" else xrf_maps(np.ones((1, 3, 4, 5)), elements=["Ni_K"], step_nm=10,
                                                      angles=[0, 60, 120])
    wanted = "a volume" if name == "project" else "a projection series"
    with pytest.raises(SchemaError, match=rf"^{name} takes {wanted} "):
        getattr(tomo, name)(wrong, **({"angles": [0.0]} if name == "project" else {}))
