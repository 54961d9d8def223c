"""FRC/FSC: known answers, a brute-force reference, dask and dtype oracles, bad input."""

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy import ndimage

from xrfsr_dask import nmc_particle, xrf_maps, xrf_volume
from xrfsr_dask.metrics import THRESHOLDS, frc, fsc, split_even_odd, threshold_curve


def reference_correlation(a, b, spacing, shell_width=1.0):
    """Plain loops over shells on the full ``fftn`` spectrum: the definition, written out."""
    fa, fb = np.fft.fftn(a.astype(np.float64)), np.fft.fftn(b.astype(np.float64))
    freqs = np.meshgrid(*[np.fft.fftfreq(n, d) for n, d in zip(a.shape, spacing, strict=True)], indexing="ij")
    radius = np.sqrt(sum(f**2 for f in freqs))
    width = shell_width * max(1 / (n * d) for n, d in zip(a.shape, spacing, strict=True))
    top = min((n // 2) / (n * d) for n, d in zip(a.shape, spacing, strict=True))
    count = int(np.floor(top / width + 1e-9)) + 1
    shell = np.floor(radius / width + 0.5)
    corr, samples = [], []
    for k in range(count):
        inside = shell == k
        num = np.sum((fa[inside] * np.conj(fb[inside])).real)
        den = np.sqrt(np.sum(np.abs(fa[inside]) ** 2) * np.sum(np.abs(fb[inside]) ** 2))
        corr.append(num / den)
        samples.append(int(inside.sum()))
    freq = width * np.arange(count)
    return freq, np.array(corr), np.array(samples)


def reference_resolution(freq, corr, samples):
    """First half-bit crossing after the zero shell, by a loop, linear between shells."""
    limit = (0.2071 + 1.9102 / np.sqrt(samples)) / (1.2071 + 0.9102 / np.sqrt(samples))
    for k in range(2, len(freq)):
        if limit[k] < 1 and corr[k] < limit[k]:
            d0, d1 = corr[k - 1] - limit[k - 1], corr[k] - limit[k]
            return 1 / (freq[k - 1] + d0 / (d0 - d1) * (freq[k] - freq[k - 1]))
    return np.nan


def blurred_pair(fwhm_nm, *, pixel_nm=10.0, counts=200.0, seed=0):
    """Two Poisson realisations of one Ni map blurred by a Gaussian of ``fwhm_nm``."""
    truth = nmc_particle((192, 192), pixel_nm=pixel_nm, seed=3).sel(element="Ni_K")
    sigma = fwhm_nm / 2.3548 / pixel_nm
    mean = ndimage.gaussian_filter(truth.values / truth.values.max() * counts, sigma, mode="constant")
    rng = np.random.default_rng(seed)
    a = truth.copy(data=rng.poisson(mean).astype(np.float32))
    b = truth.copy(data=rng.poisson(mean).astype(np.float32))
    return a, b


@pytest.mark.parametrize("n", [10, 100, 10**4])
def test_threshold_curves_equal_the_published_formulas(n):
    half = (0.2071 + 1.9102 / np.sqrt(n)) / (1.2071 + 0.9102 / np.sqrt(n))
    one = (0.5 + 2.4142 / np.sqrt(n)) / (1.5 + 1.4142 / np.sqrt(n))
    assert threshold_curve("half-bit", n) == pytest.approx(half, rel=1e-12)
    assert threshold_curve("one-bit", n) == pytest.approx(one, rel=1e-12)
    assert threshold_curve("3-sigma", n) == pytest.approx(3 / np.sqrt(n / 2), rel=1e-12)
    assert threshold_curve("1/7", n) == pytest.approx(1 / 7)
    assert threshold_curve(0.5, n) == 0.5


def test_frc_of_an_image_with_itself_is_one_and_never_crosses():
    image = np.random.default_rng(1).normal(size=(96, 80)).astype(np.float32)
    result = frc(image, image, pixel_nm=(10.0, 12.5))
    np.testing.assert_allclose(result.correlation, 1.0, rtol=1e-6)
    assert np.isnan(result.resolution_full_period_nm).all() and np.isnan(result.resolution_half_period_nm).all()
    assert result.frequency.attrs["units"] == "1/nm"
    assert result.resolution_full_period_nm.attrs["units"] == result.resolution_half_period_nm.attrs["units"] == "nm"
    assert list(result.threshold.values) == list(THRESHOLDS)
    # Rings end at the smaller Nyquist frequency, 1 / (2 · 12.5 nm).
    assert result.frequency[-1] <= 1 / 25.0 + 1e-12


def test_frc_of_independent_noise_is_near_zero_and_crosses_at_once():
    rng = np.random.default_rng(2)
    result = frc(rng.normal(size=(256, 256)), rng.normal(size=(256, 256)), pixel_nm=1.0)
    noise_sigma = 1 / np.sqrt(result.samples[1:] / 2)
    assert float(np.abs(result.correlation[1:] / noise_sigma).max()) < 4.5
    half_bit = float(result.crossing_frequency.sel(threshold="half-bit"))
    assert half_bit <= 3 * float(result.frequency[1])


@pytest.mark.parametrize(
    ("shape", "spacing", "width"),
    [((64, 48), (10.0, 10.0), 1.0), ((24, 32, 40), (20.0, 10.0, 10.0), 1.0), ((33, 30, 31), (5.0, 5.0, 5.0), 2.0)],
)
def test_curve_equals_brute_force_shell_loops(shape, spacing, width):
    rng = np.random.default_rng(4)
    base = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    a = base + 0.05 * rng.normal(size=shape)
    b = base + 0.05 * rng.normal(size=shape)
    run = frc if len(shape) == 2 else fsc
    result = run(a, b, **{"pixel_nm" if len(shape) == 2 else "voxel_nm": spacing}, shell_width=width)
    freq, corr, samples = reference_correlation(a, b, spacing, width)
    np.testing.assert_allclose(result.frequency, freq, rtol=1e-12)
    np.testing.assert_array_equal(result.samples, samples)
    np.testing.assert_allclose(result.correlation, corr, rtol=1e-9, atol=1e-12)


def test_resolution_follows_the_blur_and_matches_the_reference():
    ours, reference = [], []
    for fwhm in (30.0, 60.0, 120.0):
        a, b = blurred_pair(fwhm)
        result = frc(a, b)
        ours.append(float(result.resolution_full_period_nm.sel(threshold="half-bit")))
        reference.append(reference_resolution(*reference_correlation(a.values, b.values, (10.0, 10.0))))
    assert ours[0] < ours[1] < ours[2]
    np.testing.assert_allclose(ours, reference, rtol=0.15)
    # The measured resolution tracks the blur: a coarser probe, a coarser resolution, same order.
    assert 0.5 < ours[2] / 120.0 < 3.0


def test_dask_volume_in_odd_chunks_equals_in_memory():
    rng = np.random.default_rng(5)
    base = ndimage.gaussian_filter(rng.normal(size=(40, 36, 30)), 2.0).astype(np.float32)
    a = base + 0.02 * rng.normal(size=base.shape).astype(np.float32)
    b = base + 0.02 * rng.normal(size=base.shape).astype(np.float32)
    eager = fsc(a, b, voxel_nm=(20.0, 10.0, 10.0), window="hann")
    lazy = fsc(
        da.from_array(a, chunks=(7, 36, 30)),
        da.from_array(b, chunks=(11, 20, 30)),
        voxel_nm=(20.0, 10.0, 10.0),
        window="hann",
        progress=False,
    )
    np.testing.assert_allclose(lazy.correlation, eager.correlation, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(lazy.samples, eager.samples)
    np.testing.assert_allclose(lazy.resolution_half_period_nm, eager.resolution_half_period_nm, rtol=1e-5)


def test_dask_inputs_chunked_differently_pair_their_blocks(monkeypatch):
    # A small slab lets the chunk sizes, not the slab minimum, set the blocks of the z pass.
    monkeypatch.setattr("xrfsr_dask.metrics._spectral._SLAB_ELEMENTS", 64)
    rng = np.random.default_rng(9)
    a = ndimage.gaussian_filter(rng.normal(size=(32, 40, 24)), 1.5).astype(np.float32)
    b = a + 0.05 * rng.normal(size=a.shape).astype(np.float32)
    eager = fsc(a, b, voxel_nm=10.0)
    lazy = fsc(
        da.from_array(a, chunks=(4, 40, 24)), da.from_array(b, chunks=(16, 40, 24)), voxel_nm=10.0, progress=False
    )
    np.testing.assert_allclose(lazy.correlation, eager.correlation, rtol=1e-5, atol=1e-6)


def test_element_batch_and_dtypes():
    a, b = blurred_pair(40.0)
    volume_a = xr.concat([a, 2 * a], dim="element").assign_coords(element=["Ni_K", "Co_K"])
    volume_b = xr.concat([b, 2 * b], dim="element").assign_coords(element=["Ni_K", "Co_K"])
    both = frc(volume_a, volume_b)
    assert both.correlation.dims == ("element", "frequency")
    assert both.resolution_half_period_nm.dims == both.resolution_full_period_nm.dims == ("element", "threshold")
    with pytest.raises(ValueError, match="different 'element' labels"):
        frc(volume_a, volume_b.assign_coords(element=["Co_K", "Ni_K"]))
    single = frc(a, b)
    np.testing.assert_allclose(both.correlation.sel(element="Ni_K"), single.correlation, rtol=1e-6)
    # The FRC is scale invariant; integer input is transformed in float32, float64 stays float64.
    np.testing.assert_allclose(both.correlation.sel(element="Co_K"), single.correlation, rtol=1e-5)
    as_int = frc(a.astype(np.int32), b.astype(np.int32))
    as_double = frc(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(as_int.correlation, single.correlation, rtol=1e-6)
    np.testing.assert_allclose(as_double.correlation, single.correlation, rtol=1e-5, atol=1e-6)


def test_fsc_of_xrf_volumes_with_anisotropic_voxels():
    rng = np.random.default_rng(6)
    base = ndimage.gaussian_filter(rng.random((3, 16, 32, 32)), (0, 1, 2, 2)).astype(np.float32)
    noise = 5 * float(base.std())
    noisy = [base + noise * rng.normal(size=base.shape).astype(np.float32) for _ in range(2)]
    a, b = (xrf_volume(v, elements=["Ni", "Co", "Mn"], voxel_nm=(40.0, 20.0, 20.0)) for v in noisy)
    result = fsc(a, b)
    assert result.attrs["spacing_nm"] == [40.0, 20.0, 20.0]
    assert list(result.element.values) == list(a.element.values)
    # Shells end at the z Nyquist frequency 1/(2·40 nm): no finer resolution can be reported,
    # a full period of two z voxels, a half period of one.
    full = result.resolution_full_period_nm.sel(threshold="half-bit")
    half = result.resolution_half_period_nm.sel(threshold="half-bit")
    assert np.isfinite(full).all() and (full >= 80.0).all() and (half >= 40.0).all()


def test_split_even_odd_halves_an_angle_series():
    counts = np.random.default_rng(8).poisson(20.0, size=(2, 7, 12, 10)).astype(np.float32)
    series = xrf_maps(counts, elements=["Ni_K", "Mo_L"], step_nm=50.0, angles=np.linspace(-90, 90, 7))
    even, odd = split_even_odd(series)
    n = series.sizes["angle"] // 2
    assert even.sizes["angle"] == odd.sizes["angle"] == n
    np.testing.assert_array_equal(even.angle, series.angle[0 : 2 * n : 2])
    np.testing.assert_array_equal(odd.angle, series.angle[1 : 2 * n : 2])
    with pytest.raises(ValueError, match="'angle' dim"):
        split_even_odd(series.isel(angle=0))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda a, b: (a, b[:-2]), "differ in shape"),
        (lambda a, b: (a, b.assign_coords(x=b.x + 50.0)), "different 'x' coordinates"),
        (lambda a, b: (a, b.assign_coords(x=b.x * 2)), "different pixel sizes"),
        (lambda a, b: (a, b.where(b.x > 100)), "NaN or infinite"),
        (lambda a, b: (a * 0 + 3, b), "a is constant"),
        (lambda a, b: (a.rename(x="col"), b), "expected \\('y', 'x'\\)"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(change, message):
    a, b = blurred_pair(40.0)
    a, b = change(a, b)
    with pytest.raises(ValueError, match=message):
        frc(a, b)


def test_bad_options_and_2d_given_to_fsc():
    a, b = blurred_pair(40.0)
    with pytest.raises(ValueError, match="use frc for 2-D images"):
        fsc(a, b)
    with pytest.raises(ValueError, match="use frc for 2-D images"):
        fsc(a.values, b.values, voxel_nm=10.0)
    with pytest.raises(ValueError, match="unknown threshold"):
        frc(a, b, thresholds=["two-bit"])
    with pytest.raises(ValueError, match="shell_width"):
        frc(a, b, shell_width=0)
    with pytest.raises(ValueError, match="window="):
        frc(a, b, window="no-such-window")
    with pytest.raises(ValueError, match="pixel_nm"):
        frc(a.values, b.values)
    with pytest.raises(ValueError, match="disagrees"):
        frc(a, b, pixel_nm=7.0)


def test_non_finite_dask_block_is_reported_by_name():
    a, b = blurred_pair(40.0)
    bad = b.values.copy()
    bad[100, 100] = np.inf
    with pytest.raises(ValueError, match="b contains NaN or infinite"):
        frc(da.from_array(a.values, chunks=(50, 192)), da.from_array(bad, chunks=(50, 192)), pixel_nm=10.0,
            progress=False)


@pytest.mark.gpu
def test_cupy_frc_and_fsc_equal_numpy():
    import cupy

    a, b = blurred_pair(40.0)
    on_cpu = frc(a, b)
    on_gpu = frc(a.copy(data=cupy.asarray(a.values)), b.copy(data=cupy.asarray(b.values)))
    np.testing.assert_allclose(on_gpu.correlation, on_cpu.correlation, rtol=1e-5, atol=1e-6)
    rng = np.random.default_rng(7)
    v1 = rng.normal(size=(32, 40, 48)).astype(np.float32)
    v2 = v1 + rng.normal(size=v1.shape).astype(np.float32)
    np.testing.assert_allclose(
        fsc(cupy.asarray(v1), cupy.asarray(v2), voxel_nm=10.0).correlation,
        fsc(v1, v2, voxel_nm=10.0).correlation,
        rtol=1e-5,
        atol=1e-6,
    )


def test_resolution_agrees_with_the_frc_package(monkeypatch):
    """Peer: ``frc`` 0.1.1 (rings k <= r < k+1, its own crossing search) on the same pairs."""
    monkeypatch.setattr(np, "int", int, raising=False)  # frc's half-bit code still uses np.int
    peer = pytest.importorskip("frc")
    for fwhm in (30.0, 60.0, 120.0):
        a, b = blurred_pair(fwhm)
        curve = peer.two_frc(a.values.astype(np.float64), b.values.astype(np.float64))
        n = a.shape[0]
        rings = np.arange(len(curve)) / n
        # Ring 0 is left out: float round-off puts it a hair below its threshold of 1.
        peer_px, *_ = peer.frc_res(rings[1:], curve[1:], n, threshold="half_bit")
        ours = float(frc(a, b).resolution_full_period_nm.sel(threshold="half-bit"))
        assert ours == pytest.approx(peer_px * 10.0, rel=0.15)


def band_limited_pair(shape, spacing_nm, f0, *, snr=25.0, seed=0):
    """Two noisy copies of one random signal whose spectrum is flat below ``f0`` (1/nm) and zero above.

    Below ``f0`` the signal's power per Fourier sample is ``snr`` times the
    noise's, so the correlation is ``snr / (1 + snr)`` ≈ 0.96 there and noise
    (≈ 0) above: every threshold is crossed at ``f0``.
    """
    rng = np.random.default_rng(seed)
    freqs = np.meshgrid(*[np.fft.fftfreq(n, spacing_nm) for n in shape], indexing="ij")
    radius = np.sqrt(sum(f**2 for f in freqs))
    signal = np.fft.ifftn(np.fft.fftn(rng.normal(size=shape)) * (radius < f0)).real
    return tuple(np.sqrt(snr) * signal + rng.normal(size=shape) for _ in range(2))


@pytest.mark.parametrize(("shape", "k"), [((256, 256), 51), ((64, 64, 64), 20)])
def test_known_crossing_gives_full_period_one_over_f0_and_half_period_half_of_it(shape, k):
    spacing = 10.0
    width = 1 / (shape[0] * spacing)  # the shell width
    # f0 on a shell boundary: shell k lies wholly inside the band, shell k + 1 wholly outside.
    f0 = (k + 0.5) * width
    a, b = band_limited_pair(shape, spacing, f0)
    run, key = (frc, "pixel_nm") if len(shape) == 2 else (fsc, "voxel_nm")
    result = run(a, b, **{key: spacing}, progress=False)
    crossing = result.crossing_frequency.values
    # Every threshold is crossed within half a shell width of f0 (1 % of f0 in 2-D, 2.4 % in 3-D) ...
    np.testing.assert_allclose(crossing, f0, atol=width / 2)
    tolerance = 0.5 * width / (f0 - width / 2)
    # ... so the full period is 1/f0 and the half period 1/(2 f0) within the same relative tolerance.
    np.testing.assert_allclose(result.resolution_full_period_nm, 1 / f0, rtol=tolerance)
    np.testing.assert_allclose(result.resolution_half_period_nm, 1 / (2 * f0), rtol=tolerance)
    np.testing.assert_allclose(result.resolution_full_period_nm, 1 / crossing, rtol=1e-12)
    np.testing.assert_allclose(result.resolution_half_period_nm, 1 / (2 * crossing), rtol=1e-12)


def test_resolution_variables_say_their_convention():
    a, b = blurred_pair(40.0)
    result = frc(a, b)
    assert "resolution_nm" not in result
    full, half = result.resolution_full_period_nm, result.resolution_half_period_nm
    assert full.attrs["units"] == half.attrs["units"] == "nm"
    assert full.attrs["long_name"] == "full-period resolution" and full.attrs["definition"].startswith("1 / f ")
    assert half.attrs["long_name"] == "half-period resolution"
    assert half.attrs["definition"].startswith("1 / (2 f) ") and "X-ray microscopy" in half.attrs["definition"]
    np.testing.assert_array_equal(half, full / 2)


def _enhanced(x, model="rdn-small-x2"):
    from xrfsr_dask import add_provenance

    return add_provenance(x, "xrfsr_dask.enhance.enhance", {"model": model, "scale": 2})


def test_frc_between_two_enhanced_datasets_warns_and_names_them():
    from xrfsr_dask import EnhancedFSCWarning

    a, b = blurred_pair(40.0)
    message = (r"FRC between two enhanced datasets, a \(enhanced by rdn-small-x2\) and b \(enhanced by rdn-x\)"
               r".* reproducible .* not the resolution.*ground truth.*xrfsr_dask\.consistency")
    with pytest.warns(EnhancedFSCWarning, match=message) as caught:
        warned = frc(_enhanced(a), _enhanced(b, "rdn-x"))
    # The warning points at the caller's line, and the curve is still computed.
    assert caught[0].filename == __file__
    np.testing.assert_allclose(warned.correlation, frc(a, b).correlation)
    # One enhanced input against an unenhanced reference (a ground truth) is the remedy: no warning
    # (the suite turns the library's warnings into errors).
    frc(_enhanced(a), b)
    frc(a, _enhanced(b))


def test_fsc_of_volumes_reconstructed_from_enhanced_data_warns():
    from xrfsr_dask import EnhancedFSCWarning

    rng = np.random.default_rng(6)
    base = ndimage.gaussian_filter(rng.random((1, 16, 24, 24)), 1.5)
    a, b = (xrf_volume(base + 0.01 * rng.normal(size=base.shape), elements=["Ni"], voxel_nm=20.0) for _ in "ab")
    # Records a reconstruction keeps from its projections, then its own.
    a, b = (_enhanced(v).assign_attrs(provenance=[*_enhanced(v).attrs["provenance"],
                                                  {"operation": "xrfsr_dask.tomo.reconstruct"}]) for v in (a, b))
    with pytest.warns(EnhancedFSCWarning, match=r"^FSC between two enhanced datasets"):
        fsc(a, b, progress=False)


def test_real_enhance_output_is_recognised_as_enhanced():
    from xrfsr_dask import EnhancedFSCWarning
    from xrfsr_dask.enhance import enhance

    truth = nmc_particle((128, 128), pixel_nm=10.0, seed=4, elements=["Ni_K"])
    maps = xrf_maps(truth.coarsen(y=2, x=2).mean().values, elements=["Ni_K"], step_nm=20.0)
    hr = enhance(maps, "rdn-small-x2")  # lazy: the provenance is there before anything is computed
    with pytest.warns(EnhancedFSCWarning, match=r"enhanced by rdn-small-x2\) and b \(enhanced by rdn-small-x2\)"):
        frc(hr, hr + 1.0, progress=False)
