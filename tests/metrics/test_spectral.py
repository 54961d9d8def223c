"""Shell sums: the compiled NumPy pass against sums over the full spectrum by bincount."""

import numpy as np
import pytest

from xrfsr_dask.metrics._spectral import Shells, rfftn, shell_sums


def _full_spectrum_sums(a, b, shells):
    """[n, Σ Re(A·conj B), Σ|A|², Σ|B|²] per shell over the whole ``fftn`` spectrum (no half-axis weights)."""
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    grids = np.meshgrid(*[np.fft.fftfreq(n, d) for n, d in zip(a.shape, shells.spacing_nm, strict=True)], indexing="ij")
    radius = np.sqrt(sum(g**2 for g in grids)).ravel()
    if shells.width is None:
        shell = np.searchsorted(shells.edges, radius, side="right") - 1
    else:
        shell = np.floor(radius / shells.width + 0.5).astype(int)
    inside = (shell >= 0) & (shell < shells.count)
    rows = [np.ones(radius.size), (fa * np.conj(fb)).real.ravel(), np.abs(fa.ravel()) ** 2, np.abs(fb.ravel()) ** 2]
    return np.stack([np.bincount(shell[inside], weights=r[inside], minlength=shells.count) for r in rows])


@pytest.mark.parametrize(
    ("shape", "spacing", "log"),
    [((31, 40, 26), (5.0, 4.0, 7.5), False), ((64, 48), (10.0, 10.0), False), ((30, 33, 20), (5.0, 5.0, 5.0), True)],
    ids=["3d-anisotropic", "2d-even", "3d-log-odd"],
)
def test_compiled_sums_equal_the_full_spectrum(shape, spacing, log):
    # 64 x 48 at 10 nm has samples exactly on shell edges (|f|·480 = 2.5 at (2, 2)): they fall as the rule says.
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=shape), rng.normal(size=shape)
    shells = Shells.log(shape, spacing, 12) if log else Shells.linear(shape, spacing, 1.0)
    spectra = [rfftn(v, axes=range(v.ndim)) for v in (a, b)]
    np.testing.assert_allclose(shell_sums(spectra, shells), _full_spectrum_sums(a, b, shells), rtol=1e-9, atol=1e-6)
    power = shell_sums(spectra[:1], shells, mode="power")
    np.testing.assert_allclose(power, _full_spectrum_sums(a, b, shells)[[0, 2]], rtol=1e-9, atol=1e-6)


def test_blocks_with_offsets_add_up_to_the_whole():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(24, 30, 18)), rng.normal(size=(24, 30, 18))
    shells = Shells.linear(a.shape, (5.0, 5.0, 5.0), 1.5)
    fa, fb = (rfftn(v, axes=range(3)) for v in (a, b))
    whole = shell_sums([fa, fb], shells)
    parts = sum(
        shell_sums([fa[:, rows], fb[:, rows]], shells, offsets=[0, rows.start, 0])
        for rows in (slice(0, 7), slice(7, 19), slice(19, 30))
    )
    np.testing.assert_allclose(parts, whole, rtol=1e-12)
