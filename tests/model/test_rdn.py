"""The network: shapes for every scale, parameter counts, config validation."""

import pytest
import torch

from xrfsr_dask.model import PRESETS, RDNConfig, build_rdn


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
    net = build_rdn("tiny", scale=2)
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
    assert set(PRESETS) == {"paper", "small", "tiny"}
    assert all(c.scale == 2 for c in PRESETS.values())
