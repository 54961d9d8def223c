"""Angle weights and FBP filters: known answers."""

import numpy as np
import pytest

from xrfsr_dask.tomo._filters import FILTERS, filter_response
from xrfsr_dask.tomo._geometry import angle_weights, check_center


@pytest.mark.parametrize("span", [180.0, 360.0])
def test_uniform_angles_share_the_half_circle(span):
    theta = np.linspace(0, span, 90, endpoint=False)
    np.testing.assert_allclose(angle_weights(theta), np.pi / 90 * (180 / span) * (span / 180))


def test_missing_wedge_not_filled_by_its_edges():
    theta = np.arange(-60.0, 60.1, 2.0)
    weights = angle_weights(theta)
    np.testing.assert_allclose(weights[1:-1], np.deg2rad(2.0))
    np.testing.assert_allclose(weights[[0, -1]], np.deg2rad(3.0))


def test_ramp_is_abs_frequency_with_only_the_truncation_dc():
    length = 256
    response = filter_response("ramp", length)
    freq = np.abs(np.fft.fftfreq(length))
    # The kernel's tail beyond length / 2 is cut: sum over odd k > L/2 of 2/(pi k)^2.
    assert response[0] == pytest.approx(2 / (np.pi**2 * length), rel=0.02)
    assert response[length // 2] == pytest.approx(0.5, rel=2e-3)
    np.testing.assert_allclose(response[1:], freq[1:], atol=2.0 / (np.pi**2 * length))
    for name in FILTERS:
        windowed = filter_response(name, length)
        assert np.all(windowed <= response + 1e-12) and windowed[1] == pytest.approx(response[1], rel=1e-3)


def test_center_outside_detector_refused():
    assert check_center(0.0, 10) == 0.0
    with pytest.raises(ValueError, match=r"center=-1 pixels is outside the detector \(0 to 9 for 10 pixels\)"):
        check_center(-1, 10)
