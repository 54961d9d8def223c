"""Alignment: known drifts recovered within half a pixel, and the volume restored."""

import numpy as np
import pytest
from scipy import ndimage

from xrfsr_dask import NonFiniteCountsError, nmc_volume, project
from xrfsr_dask.tomo import align, reconstruct


def _without_sinusoid(x_shifts, theta_deg):
    """``x`` shifts less their ``a cos + b sin`` part, which only moves the whole sample."""
    radians = np.deg2rad(theta_deg)
    design = np.stack([np.cos(radians), np.sin(radians)], axis=1)
    coefficients, *_ = np.linalg.lstsq(design, x_shifts, rcond=None)
    return x_shifts - design @ coefficients


@pytest.fixture(scope="module")
def drifted():
    volume = nmc_volume(shape=(56, 64, 64), voxel_nm=20.0, seed=4, radius_nm=400.0)
    angles = np.arange(0.0, 180.0, 3.0)
    series = project(volume, angles=angles)
    rng = np.random.default_rng(1)
    drift = rng.uniform(-3, 3, size=(angles.size, 2))
    drift[:, 0] -= drift[:, 0].mean()
    # A drift of the form a cos + b sin only moves the whole sample, which no
    # alignment can tell from its true position; leave it out, so that the
    # aligned volume can be compared with the phantom where it stands.
    drift[:, 1] = _without_sinusoid(drift[:, 1], angles)
    moved = np.stack([
        np.stack([ndimage.shift(series.values[e, a], drift[a], order=3, mode="constant") for a in range(angles.size)])
        for e in range(series.sizes["element"])
    ])
    return volume, series, series.copy(data=moved.astype(np.float32)), drift


def test_known_drift_recovered(drifted):
    volume, clean, moved, drift = drifted
    result = align(moved, progress=False)
    found = result.shift_px.values
    np.testing.assert_allclose(found[:, 0], drift[:, 0], atol=0.5)
    np.testing.assert_allclose(found[:, 1], drift[:, 1], atol=0.5)
    assert result.converged and result.iterations <= 10
    np.testing.assert_allclose(result.shift_nm.values, found * 20.0)
    assert result.series.attrs["provenance"][-1]["operation"] == "xrfsr_dask.tomo.align"

    def error(series):
        return float(np.sqrt(((reconstruct(series) - volume) ** 2).mean()))

    # Shifting there and back interpolates twice, so the aligned volume is a
    # little softer than one from the undrifted projections.
    assert error(result.series) < 1.25 * error(clean) < error(moved)


def test_dask_input_stays_lazy(drifted, no_dask_compute):
    _, _, moved, _ = drifted
    lazy = moved.chunk({"angle": 7})
    result = align(lazy, iterations=2, progress=False)
    with no_dask_compute():
        assert result.series.chunks[1] == lazy.chunks[1]
    eager = align(moved, iterations=2, progress=False)
    np.testing.assert_allclose(result.series.values, eager.series.values, rtol=1e-6)


def test_nan_refused(drifted):
    _, _, moved, _ = drifted
    bad = moved.copy(data=moved.values.copy())
    bad.values[0, 0, 0, 0] = np.nan
    with pytest.raises(NonFiniteCountsError, match=r"align needs finite counts.*nan='interpolate'"):
        align(bad, progress=False)


def test_apply_moves_a_finer_series_by_the_same_nm(drifted):
    _, clean, moved, drift = drifted
    result = align(moved, progress=False)
    # The same projections on a grid twice as fine (10 nm), drifted by the same nm.
    y, x = clean.y.values, clean.x.values
    fine = clean.interp(y=np.arange(y[0], y[-1] + 1e-6, 10.0), x=np.arange(x[0], x[-1] + 1e-6, 10.0))
    fine = fine.assign_attrs(step_nm=[10.0, 10.0])
    for dim in ("y", "x"):
        fine[dim].attrs.update(clean[dim].attrs)
    fine_moved = fine.copy(data=np.stack([
        np.stack([ndimage.shift(fine.values[e, a], 2 * drift[a], order=3, mode="constant")
                  for a in range(fine.sizes["angle"])])
        for e in range(fine.sizes["element"])
    ]))
    aligned = result.apply(fine_moved)
    assert aligned.attrs["provenance"][-1]["operation"] == "xrfsr_dask.tomo.Alignment.apply"
    inner = {"y": slice(8, -8), "x": slice(8, -8)}

    def rms(a):
        return float(np.sqrt(((a - fine).isel(inner) ** 2).mean()))

    assert rms(aligned) < 0.15 * rms(fine_moved)
    lazy = result.apply(fine_moved.chunk({"angle": 10}))
    np.testing.assert_allclose(lazy.values, aligned.values, rtol=1e-6)


def test_apply_refuses_other_angles(drifted):
    _, _, moved, _ = drifted
    result = align(moved, iterations=1, progress=False)
    with pytest.raises(ValueError, match=r"has 59 angles .* found on 60"):
        result.apply(moved.isel(angle=slice(1, None)))
