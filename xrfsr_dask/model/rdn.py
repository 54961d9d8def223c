"""Residual Dense Network (Zhang et al., CVPR 2018) for one-channel element maps.

The network reads a normalised LR map ``(N, 1, H, W)`` and writes the map on
a grid ``scale`` times finer ``(N, 1, scale·H, scale·W)``:

1. shallow features: two 3x3 convolutions to ``features`` (G0) channels;
2. ``blocks`` (D) residual dense blocks, each of ``layers`` (C) 3x3
   convolutions with ReLU whose inputs are the block input and every earlier
   layer's output (``growth`` G channels each), a 1x1 local feature fusion
   back to G0 channels and a local residual connection;
3. global feature fusion: the outputs of all D blocks concatenated, a 1x1
   and a 3x3 convolution, plus the first shallow features (global residual
   learning);
4. upsampling by sub-pixel convolution (pixel shuffle) for scale 2, 3 or 4
   (scale 4 as two 2x stages), or none for scale 1 (deblurring on the same
   grid), and a 3x3 convolution to one channel.

With ``image_skip`` (the default) the input interpolated bicubically to the
output grid is added to the result, so the network learns the correction to
bicubic upsampling. That is not in Zhang et al.; it makes small networks
trained for minutes on a CPU converge far faster, and costs nothing at
inference.

With ``conserve_counts`` (the default for new networks) a last layer without
weights makes the output non-negative and conserves counts: the output ``o``
is multiplied, per LR pixel block, by ``w = K (x / K b)``, where ``b`` is
the output averaged over each ``scale x scale`` block (the output binned
back to the input grid), ``x`` the input, and ``K`` a smoothing of
:data:`CONSERVE_PASSES` binomial passes per axis (σ ≈ 1.4 LR pixels) whose
matrix is symmetric and doubly stochastic. Then ``Σ b·w = Σ x⁺`` up to the
ε of the division: the output binned back to the input grid keeps the
total counts of the input's positive part. Since ``K`` is local, counts
are also kept over regions well larger than σ, but not pixel by pixel
(one Richardson–Lucy step of the binned output towards the input). The
layer widens the receptive radius by ``2·CONSERVE_PASSES``. It keeps
what was measured: a dead pixel or a lost line recorded as zero counts
stays a deficit of counts in its neighbourhood — mark them NaN and
enhance with ``nan="mask"``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, cast

import torch
from torch import nn
from torch.nn import functional

__all__ = ["CONSERVE_PASSES", "PRESETS", "RDN", "RDNConfig", "build_rdn", "conserve_counts", "upsample_bicubic"]

SCALES = (1, 2, 3, 4)
CONSERVE_PASSES = 4
"""Passes of the binomial [1, 2, 1]/4 smoothing per axis in :func:`conserve_counts`."""
CONSERVE_EPS = 1e-4
"""Added to the smoothed binned output before dividing (normalised units: the map's 0.999 quantile is 1)."""


@dataclasses.dataclass(frozen=True)
class RDNConfig:
    """Architecture of an :class:`RDN`; stored in every model card.

    Attributes
    ----------
    scale
        Output grid refinement: 1 (same grid), 2, 3 or 4.
    blocks, layers, growth, features
        D residual dense blocks of C convolutions with growth rate G, and G0
        feature channels between blocks.
    image_skip
        Add the bicubically interpolated input to the output.
    conserve_counts
        End with :func:`conserve_counts`: a non-negative output whose
        binning back to the input grid keeps the input's counts locally and
        in total. Cards written before this option existed load with
        ``False``.
    """

    scale: int = 2
    blocks: int = 16
    layers: int = 8
    growth: int = 64
    features: int = 64
    image_skip: bool = True
    conserve_counts: bool = True

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}; got {self.scale!r}.")
        for name in ("blocks", "layers", "growth", "features"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer; got {value!r}.")

    @property
    def receptive_radius(self) -> int:
        """LR pixels on each side that can influence one output pixel.

        Two shallow 3x3 layers, C per dense block, one in global fusion, one
        before the pixel shuffle and one on the output grid (half an LR
        pixel, rounded up), and twice :data:`CONSERVE_PASSES` for the
        count-conserving layer.
        """
        conserve = 2 * CONSERVE_PASSES if self.conserve_counts else 0
        return 2 + self.blocks * self.layers + 1 + (1 if self.scale > 1 else 0) + 1 + conserve


PRESETS: dict[str, RDNConfig] = {
    "paper": RDNConfig(blocks=16, layers=8, growth=64, features=64),
    "medium": RDNConfig(blocks=6, layers=4, growth=24, features=32),
    "small": RDNConfig(blocks=4, layers=4, growth=16, features=32),
    "tiny": RDNConfig(blocks=2, layers=2, growth=8, features=8),
}
"""Named architectures: ``paper`` (about 22 M parameters at scale 2, as in
Zhang et al. and Wu et al.), ``medium`` (about 0.44 M, 2.2 times ``small``'s
training step on a CPU), ``small`` (trains in minutes on two CPU cores;
the bundled model) and ``tiny`` (for tests)."""


def upsample_bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``(N, C, H, W)`` interpolated bicubically onto the grid ``scale`` times finer (itself for 1).

    ``align_corners=False``: LR pixel ``k`` covers output pixels
    ``[k·scale, (k+1)·scale)``, the grid convention of the whole library.
    """
    if scale == 1:
        return x
    return functional.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


def _smooth(v: torch.Tensor) -> torch.Tensor:
    """Binomial smoothing with a half-sample symmetric border: a symmetric, doubly stochastic operator."""
    taps = v.new_tensor([0.25, 0.5, 0.25])
    for _ in range(CONSERVE_PASSES):
        v = functional.conv2d(functional.pad(v, (1, 1, 0, 0), mode="replicate"), taps.view(1, 1, 1, 3))
        v = functional.conv2d(functional.pad(v, (0, 0, 1, 1), mode="replicate"), taps.view(1, 1, 3, 1))
    return v


def conserve_counts(out: torch.Tensor, x: torch.Tensor, scale: int) -> torch.Tensor:
    """Make ``out`` (N, 1, sH, sW) non-negative with the counts of ``x`` (N, 1, H, W) in every neighbourhood.

    ``out ≥ 0`` is multiplied per ``scale x scale`` block by ``w = K (x⁺ /
    (K b + ε))`` with ``b`` the block means of ``out`` and ``K`` the
    symmetric, doubly stochastic smoothing of :data:`CONSERVE_PASSES`
    binomial passes, so that ``Σ b·w = Σ x⁺`` (up to ε): binned back to the
    input grid, the result keeps the total counts of the input's positive
    part, and counts over regions well larger than ``K``'s σ ≈ 1.4 pixels
    (not pixel by pixel). Negative input (background-subtracted data)
    counts as zero.
    """
    out = functional.relu(out)
    binned = functional.avg_pool2d(out, scale) if scale > 1 else out
    weight = _smooth(functional.relu(x) / (_smooth(binned) + CONSERVE_EPS))
    if scale > 1:
        weight = weight.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
    return out * weight


def _conv(c_in: int, c_out: int, kernel: int = 3) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)


class _DenseBlock(nn.Module):
    """One residual dense block; see the module docstring.

    In CPU inference (``torch.inference_mode``, channels-last fp32 input, no
    autocast, PyTorch built with oneDNN) the block runs *piece by piece*: a
    convolution over a concatenation is the sum of convolutions over its
    pieces (the block input, then each earlier layer's output), so each
    layer starts from the convolution of the block input and oneDNN adds
    every further piece's share into that output as it writes it (its
    ``sum`` post-op), with the ReLU fused into the last; the 1x1 fusion and
    the block's residual are built the same way. Nothing is concatenated
    (the copies were a third of the CPU time) and no separate addition or
    ReLU pass runs. The arithmetic is that of the concatenating form, the
    pieces summed in the same order (the output agrees to float rounding:
    5e-7 to 2e-6 of its range for the ``paper`` and ``small`` presets;
    ``benchmarks/rdn_speed.py``). Training and other devices run the
    concatenating form.
    """

    def __init__(self, features: int, growth: int, layers: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(_conv(features + i * growth, growth) for i in range(layers))
        self.fuse = _conv(features + layers * growth, features, 1)
        self._features, self._growth = features, growth
        self._split: tuple[tuple[int, ...], list[list[torch.Tensor]], list[torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _cpu_inference(x):
            return self._forward_pieces(x)
        state = [x]
        for conv in self.convs:
            state.append(functional.relu(conv(torch.cat(state, 1))))
        return x + self.fuse(torch.cat(state, 1))

    def _pieces(self) -> tuple[list[list[torch.Tensor]], list[torch.Tensor]]:
        """Each layer's weights split by input piece, then the fusion's (channels-last; cached per weights)."""
        convs = cast(list[nn.Conv2d], [*self.convs, self.fuse])
        key = tuple(v for conv in convs for v in (conv.weight.data_ptr(), conv.weight._version))
        if self._split is None or self._split[0] != key:
            c0, g = self._features, self._growth
            bounds = [(0, c0)] + [(c0 + i * g, c0 + (i + 1) * g) for i in range(len(convs) - 1)]
            split = [
                [conv.weight[:, lo:hi].contiguous(memory_format=torch.channels_last)
                 for lo, hi in bounds[: 1 + (conv.in_channels - c0) // g]]
                for conv in convs
            ]
            self._split = (key, split[:-1], split[-1])
        return self._split[1], self._split[2]

    def _forward_pieces(self, x: torch.Tensor) -> torch.Tensor:
        """The block with every convolution over a concatenation done piece by piece (:func:`_convolve_pieces`)."""
        layers, fusion = self._pieces()
        state = [x]
        for conv, weights in zip(cast(list[nn.Conv2d], list(self.convs)), layers, strict=True):
            state.append(_convolve_pieces(state, weights, conv.bias, padding=1, relu=True))
        return _convolve_pieces(state, fusion, self.fuse.bias, padding=0, residual=x)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled (e.g. sent to dask workers) without the split weights, which are rebuilt on first use."""
        return {**super().__getstate__(), "_split": None}


_FUSED_OPS = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise_")


def _convolve_pieces(
    pieces: list[torch.Tensor], weights: list[torch.Tensor], bias: torch.Tensor | None, *, padding: int,
    relu: bool = False, residual: torch.Tensor | None = None,
) -> torch.Tensor:
    """The convolution of the concatenated pieces (plus ``residual``; ReLU'd if asked) without concatenating:
    the first piece's convolution starts the output and oneDNN adds each further piece's share into it as it
    writes it, the pieces in the order of the concatenation and the ReLU fused into the last."""
    pad, one, last = [padding, padding], [1, 1], len(weights) - 1

    def activation(p: int) -> str | None:
        return "relu" if relu and p == last else None

    mkldnn = torch.ops.mkldnn
    if residual is None:
        out = mkldnn._convolution_pointwise(pieces[0], weights[0], bias, pad, one, one, 1, activation(0) or "none",
                                            [], None)
    else:
        out = mkldnn._convolution_pointwise.binary(pieces[0], residual, weights[0], bias, pad, one, one, 1, "add",
                                                   None, activation(0), [], None)
    for p in range(1, len(weights)):
        mkldnn._convolution_pointwise_.binary(out, pieces[p], weights[p], None, pad, one, one, 1, "add", None,
                                              activation(p), [], None)
    return out


def _cpu_inference(x: torch.Tensor) -> bool:
    """Inference on a CPU with channels-last fp32 input and no autocast: where the piecewise form runs."""
    return (
        _FUSED_OPS and torch.is_inference_mode_enabled() and x.device.type == "cpu" and x.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
        and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    )


def _upsampler(features: int, scale: int) -> nn.Sequential:
    if scale == 1:
        return nn.Sequential()
    stages = [2, 2] if scale == 4 else [scale]
    layers: list[nn.Module] = []
    for factor in stages:
        layers += [_conv(features, features * factor**2), nn.PixelShuffle(factor)]
    return nn.Sequential(*layers)


class RDN(nn.Module):
    """Residual Dense Network on one-channel maps; see the module docstring.

    Parameters
    ----------
    config
        The architecture.

    Attributes
    ----------
    card : dict
        The model card: architecture, normalisation, training and test
        metrics (see :mod:`xrfsr_dask.model.weights`). A new network's card
        holds the architecture and the default normalisation.

    References
    ----------
    Zhang, Y. et al. Residual Dense Network for Image Super-Resolution.
    CVPR 2018, https://doi.org/10.1109/CVPR.2018.00262
    """

    def __init__(self, config: RDNConfig) -> None:
        super().__init__()
        self.config = config
        g0 = config.features
        self.shallow1 = _conv(1, g0)
        self.shallow2 = _conv(g0, g0)
        self.blocks = nn.ModuleList(
            _DenseBlock(g0, config.growth, config.layers) for _ in range(config.blocks)
        )
        self.fuse = nn.Sequential(_conv(config.blocks * g0, g0, 1), _conv(g0, g0))
        self.upsample = _upsampler(g0, config.scale)
        self.output = _conv(g0, 1)
        self.card: dict[str, Any] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 1, H, W)`` normalised LR maps to ``(N, 1, scale·H, scale·W)``."""
        first = self.shallow1(x)
        h = self.shallow2(first)
        outputs = []
        for block in self.blocks:
            h = block(h)
            outputs.append(h)
        h = self.fuse(torch.cat(outputs, 1)) + first
        out = self.output(self.upsample(h))
        if self.config.image_skip:
            out = out + upsample_bicubic(x, self.config.scale)
        if self.config.conserve_counts:
            out = conserve_counts(out, x, self.config.scale)
        return out

    @property
    def n_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())


def build_rdn(
    preset: Literal["paper", "medium", "small", "tiny"] | RDNConfig = "small", *, scale: int | None = None
) -> RDN:
    """A new, randomly initialised RDN from a preset name or a config.

    Parameters
    ----------
    preset
        A name in :data:`PRESETS` or an :class:`RDNConfig`.
    scale
        Override the preset's scale (1, 2, 3 or 4).

    Examples
    --------
    >>> net = build_rdn("paper")
    >>> round(net.n_parameters / 1e6, 1)
    22.1
    """
    if isinstance(preset, RDNConfig):
        config = preset
    elif preset in PRESETS:
        config = PRESETS[preset]
    else:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)} or pass an RDNConfig.")
    if scale is not None:
        config = dataclasses.replace(config, scale=scale)
    net = RDN(config)
    net.card = {"architecture": dataclasses.asdict(config)}
    return net
