"""Filters of filtered back-projection, as frequency responses.

The ramp is the transform of the band-limited discrete ramp kernel
(Kak & Slaney, eq. 3.61: ``h[0] = 1/4``, ``h[k] = -1/(pi k)^2`` for odd
``k``, 0 for even), which has no DC offset, unlike sampling ``|f|``
directly. Apodising windows are functions of ``f / 0.5``, the frequency as
a fraction of Nyquist.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = ["FILTERS", "FilterName", "filter_response"]

FilterName = Literal["ramp", "shepp-logan", "cosine", "hamming", "hann"]
FILTERS: tuple[str, ...] = ("ramp", "shepp-logan", "cosine", "hamming", "hann")


def filter_response(name: str, length: int) -> np.ndarray:
    """Filter response at ``numpy.fft.fftfreq(length)``, in cycles per pixel.

    Multiplying the FFT of a projection zero-padded to ``length`` by this
    and transforming back gives the filtered projection that, back-projected
    with the angle weights of :func:`~xrfsr_dask.tomo._geometry.angle_weights`,
    reconstructs the slice in the units of the projections per pixel.
    """
    if name not in FILTERS:
        raise ValueError(f"filter_name={name!r} is not one of {FILTERS}.")
    k = np.arange(length)
    offset = np.minimum(k, length - k)
    kernel = np.zeros(length)
    kernel[0] = 0.25
    odd = offset % 2 == 1
    kernel[odd] = -1.0 / (np.pi * offset[odd]) ** 2
    response = np.fft.fft(kernel).real
    x = np.abs(np.fft.fftfreq(length)) / 0.5
    window = {
        "ramp": np.ones_like(x),
        "shepp-logan": np.sinc(x / 2),
        "cosine": np.cos(np.pi * x / 2),
        "hamming": 0.54 + 0.46 * np.cos(np.pi * x),
        "hann": 0.5 * (1 + np.cos(np.pi * x)),
    }[name]
    return response * window
