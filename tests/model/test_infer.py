"""predict: counts in, counts out; tiles equal whole images; NaN and small-map handling."""

import numpy as np
import pytest
import torch

from xrfsr_dask import NonFiniteCountsError, XrfsrWarning
from xrfsr_dask.model import build_rdn, predict


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(3)
    return build_rdn("tiny", scale=2)


@pytest.fixture(scope="module")
def maps():
    rng = np.random.default_rng(0)
    return rng.poisson(200.0, size=(2, 48, 40)).astype(np.float32)


def test_counts_come_back_in_counts(net, maps):
    # Per-map normalisation is inverted: ten times the counts give ten times the output.
    out = predict(net, maps, device="cpu")
    assert out.shape == (2, 96, 80) and out.dtype == np.float32
    np.testing.assert_allclose(predict(net, 10 * maps, device="cpu"), 10 * out, rtol=1e-5, atol=1e-3)
    assert abs(out.mean() / maps.mean() - 1) < 0.2


def test_tiles_with_a_full_halo_equal_whole_image_inference(net, maps):
    whole = predict(net, maps, tile=512, device="cpu")
    radius = net.config.receptive_radius
    tiled = predict(net, maps, tile=13, halo=radius, batch_size=5, device="cpu")
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-4 * float(whole.max()))
    cut = predict(net, maps, tile=13, halo=0, device="cpu")
    assert np.abs(cut - whole).max() > 1e-3 * float(whole.max())


def test_integers_are_cast_and_a_single_map_keeps_its_dims(net, maps):
    ints = maps.astype(np.int32)
    np.testing.assert_array_equal(predict(net, ints[0], device="cpu"), predict(net, maps[:1], device="cpu")[0])


def test_nan_raises_with_locations_or_is_masked_in_its_footprint(net, maps):
    bad = maps.copy()
    bad[1, 5, 7] = np.nan
    with pytest.raises(NonFiniteCountsError, match=r"1 non-finite pixel\(s\) .* at \(1, 5, 7\).*nan='mask'"):
        predict(net, bad, device="cpu")
    out = predict(net, bad, nan="mask", device="cpu")
    footprint = np.isnan(out)
    assert footprint.sum() == 4 and footprint[1, 10:12, 14:16].all()
    clean = predict(net, maps, device="cpu")
    far = np.ones_like(footprint)
    far[1, :30, :34] = False
    np.testing.assert_allclose(out[far], clean[far], rtol=1e-5)


def test_small_maps_warn_and_bad_input_is_named(net):
    with pytest.warns(XrfsrWarning, match="smaller than the network's receptive field"):
        out = predict(net, np.ones((5, 6), np.float32), device="cpu")
    assert out.shape == (10, 12)
    with pytest.raises(ValueError, match=r"dims \(\.\.\., y, x\)"):
        predict(net, np.ones(5), device="cpu")
    with pytest.raises(TypeError, match="must hold numbers"):
        predict(net, np.array([["a"]]), device="cpu")
    with pytest.raises(ValueError, match=r"nan must be one of \('raise', 'mask'\)"):
        predict(net, np.ones((30, 30)), nan="fill", device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_a_gpu_is_refused(net, maps):
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        predict(net, maps, device="cuda")


@pytest.mark.gpu
def test_gpu_bf16_agrees_with_cpu(net, maps):
    cpu = predict(net, maps, device="cpu")
    gpu = predict(net, maps, device="cuda", precision="bf16")
    assert np.abs(gpu - cpu).max() < 2e-2 * float(cpu.max())
