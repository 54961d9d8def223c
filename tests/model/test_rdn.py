"""The network: shapes for every scale, parameter counts, config validation, count conservation, CPU inference form."""

import copy
import dataclasses
import pickle

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xrfsr_dask.model import PRESETS, RDNConfig, build_rdn
from xrfsr_dask.model.rdn import conserve_counts


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_output_grid_is_scale_times_finer(scale):
    torch.manual_seed(0)
    net = build_rdn("tiny", scale=scale)
    out = net(torch.rand(3, 1, 11, 7))
    assert out.shape == (3, 1, 11 * scale, 7 * scale)


def test_paper_preset_has_about_22_million_parameters():
    # Zhang et al. (2018) RDN with D=16, C=8, G=G0=64 at scale 2: 22.1 M.
    net = build_rdn("paper")
    assert (net.config.blocks, net.config.layers, net.config.growth, net.config.features) == (16, 8, 64, 64)
    assert 21.5e6 < net.n_parameters < 22.5e6


def test_image_skip_makes_a_zero_network_bicubic():
    net = build_rdn(dataclasses.replace(PRESETS["tiny"], conserve_counts=False), scale=2)
    with torch.no_grad():
        net.output.weight.zero_()
        net.output.bias.zero_()
    x = torch.rand(1, 1, 9, 9)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False)
    torch.testing.assert_close(net(x), bicubic)


def test_receptive_radius_bounds_the_influence_of_one_pixel():
    torch.manual_seed(1)
    net = build_rdn("tiny", scale=2)
    radius = net.config.receptive_radius
    size = 2 * radius + 11
    x = torch.zeros(1, 1, size, size)
    centre = size // 2
    with torch.no_grad():
        base = net(x)
        x[0, 0, centre, centre] = 1.0
        changed = (net(x) - base).abs()[0, 0] > 0
    rows = changed.any(1).nonzero()[:, 0]
    reach = max(centre * 2 - int(rows.min()), int(rows.max()) - centre * 2) / 2
    assert reach <= radius


def test_unknown_preset_and_bad_config_are_named():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        build_rdn("huge")
    with pytest.raises(ValueError, match="scale must be one of"):
        RDNConfig(scale=5)
    with pytest.raises(ValueError, match="growth must be a positive integer"):
        RDNConfig(growth=0)


def test_presets_are_named_configs():
    assert set(PRESETS) == {"paper", "medium", "small", "tiny"}
    assert all(c.scale == 2 for c in PRESETS.values())
    sizes = [sum(p.numel() for p in build_rdn(name).parameters()) for name in ("tiny", "small", "medium", "paper")]
    assert sizes == sorted(sizes) and 2 < sizes[2] / sizes[1] < 2.5


@settings(max_examples=30, deadline=None)
@given(scale=st.sampled_from([1, 2, 3, 4]), ny=st.integers(3, 40), nx=st.integers(3, 40),
       level=st.floats(0.5, 1e4), seed=st.integers(0, 2**16))
def test_binned_output_keeps_the_total_counts_of_any_input(scale, ny, nx, level, seed):
    # Whatever the network writes (here random, a fifth of it negative), the
    # layer's output binned back to the input grid holds the input's total
    # counts (inputs normalised as the model does, high quantile about 1).
    # (Where the network writes nothing positive anywhere near input
    # counts, there is nothing to scale: the layer cannot conserve them.)
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand(2, 1, ny, nx, generator=generator, dtype=torch.float64) * level
    shape = (2, 1, ny * scale, nx * scale)
    sign = torch.where(torch.rand(shape, generator=generator, dtype=torch.float64) < 0.2, -1.0, 1.0)
    out = (torch.rand(shape, generator=generator, dtype=torch.float64) + 0.05) * sign
    kept = conserve_counts(out * level, x, scale)
    assert kept.min() >= 0
    torch.testing.assert_close(kept.sum((-2, -1)) / scale**2, x.sum((-2, -1)), rtol=1e-3, atol=1e-3 * level)


def test_counts_are_kept_locally_not_only_in_total():
    # Input with its counts in the left half; an output spread evenly over
    # the whole field: the layer moves the counts back to the left half.
    x = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    x[..., :16] = 10.0
    kept = conserve_counts(torch.ones(1, 1, 64, 64, dtype=torch.float64), x, 2)
    left, right = kept[..., :24].mean(), kept[..., 40:].mean()
    assert abs(float(left) - 10.0) < 0.05 and float(right) < 1e-3


def test_trained_networks_conserve_counts():
    torch.manual_seed(3)
    net = build_rdn("tiny", scale=2).eval()
    assert net.config.conserve_counts and net.config.receptive_radius == 2 + 4 + 1 + 1 + 1 + 8
    x = torch.rand(3, 1, 24, 20) * 50
    with torch.no_grad():
        out = net(x)
    torch.testing.assert_close(out.sum((-2, -1)) / 4, x.sum((-2, -1)), rtol=1e-4, atol=1e-3)


def _piecewise_and_concatenated(net, x):
    """The network in CPU inference on channels-last input (piece by piece) and under no_grad (concatenating)."""
    net = net.eval().to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        fast = net(x)
    with torch.no_grad():
        reference = net(x)
    return fast, reference


@pytest.mark.parametrize("preset", ["tiny", "small", "medium"])
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_piecewise_form_computes_the_concatenating_network(preset, scale):
    # Random weights of realistic size (not the init's near-zero residuals), a batch of two uneven maps.
    torch.manual_seed(2)
    net = build_rdn(preset, scale=scale)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.1)
    x = torch.rand(2, 1, 13, 10)
    with torch.no_grad():
        exact = copy.deepcopy(net).double()(x.double())  # the float64 network: both float32 forms' target
    fast, reference = _piecewise_and_concatenated(net, x)
    assert fast.shape == reference.shape == (2, 1, 13 * scale, 10 * scale)
    span = float(exact.max() - exact.min())
    assert span > 0
    error, rounding = float((fast - exact).abs().max()), float((reference - exact).abs().max())
    assert error <= 3 * rounding + 1e-6 * span  # as close to the exact network as the concatenating form, ...
    assert error <= 1e-4 * span  # ... and far inside the 1e-3 of the range that predict promises


def test_piecewise_form_follows_weights_changed_in_place_and_survives_pickling():
    torch.manual_seed(3)
    net = build_rdn("tiny").eval().to(memory_format=torch.channels_last)
    x = torch.rand(1, 1, 12, 12).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        before = net(x)
    assert net.blocks[0]._split is not None  # the split weights are cached ...
    with torch.no_grad():
        net.blocks[0].convs[1].weight.mul_(-3.0)  # ... and rebuilt when a weight changes in place
    fast, reference = _piecewise_and_concatenated(net, x)
    assert float((fast - before).abs().max()) > 1e-3
    torch.testing.assert_close(fast, reference, rtol=0, atol=1e-5)
    shipped = pickle.loads(pickle.dumps(net))
    assert shipped.blocks[0]._split is None  # sent to a dask worker without the cache
    with torch.inference_mode():
        torch.testing.assert_close(shipped(x), fast, rtol=0, atol=0)
