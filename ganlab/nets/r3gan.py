"""A modern GAN's networks, after R3GAN (Huang, Gokaslan, Kuleshov and Tompkin, "The GAN is dead;
long live the GAN! A Modern GAN Baseline", NeurIPS 2024), scaled to 32-256 px and a CPU's budget.

Why beside the lecture's DCGAN: its transposed convolutions paint checkerboards (Odena et al. 2016,
"Deconvolution and Checkerboard Artifacts") and its BatchNorm couples the images of a batch, so a
small set's grid comes out blotchy and alike in texture. R3GAN's nets have neither: residual blocks
(an inverted bottleneck: 1x1 widen, grouped 3x3, 1x1 narrow) with no normalisation, resampled by
bilinear interpolation beside 1x1 convolutions, and a "fix-up" initialisation that lets a deep
stack of such blocks start as close to the identity as a shallow net. They are trained with the
relativistic pairing loss and zero-centred penalties on real and fake data (``training/loss.py``:
``rpgan``, R1 + R2), which the paper proves locally convergent; no other tricks are needed.

Scaled down from the paper's configurations (two blocks per resolution, 384-768 channels): one
block per resolution up to half the image size, and the lecture's nets' widths, doubling from
``width`` next to the image towards 4 x 4, so ``model.g_width`` and ``model.d_width`` mean the
same for both. The output
keeps the lecture's tanh (the paper leaves it unsquashed and clamps): at this compute the tanh
with R1 and R2 at 0.05 scored best of the variants measured (docs/quality_minutes.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.nets.dcgan import SUPPORTED_SIZES

GROUP_WIDTH = 16  # channels per group of the 3x3 convolution (the paper's cardinality at small widths)
EXPANSION = 2  # the bottleneck's widening


def _widths(image_size: int, width: int) -> list[int]:
    """Channels at 4, 8, ..., image_size / 2 px: ``width`` at the top, doubling downwards (the
    lecture's nets' widths at the same resolutions)."""
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image size {image_size} is not one of {SUPPORTED_SIZES}")
    stages = int(math.log2(image_size // 8)) + 1  # 4, 8, ..., image_size / 2
    return [width * 2 ** (stages - 1 - i) for i in range(stages)]


def _msr_(conv: nn.Conv2d | nn.Linear, gain: float = 1.0) -> nn.Module:
    """He (MSR) initialisation for a leaky-ReLU net, times ``gain``; biases at 0."""
    fan_in = conv.weight[0].numel()
    nn.init.normal_(conv.weight, 0.0, gain * math.sqrt(2 / (1 + 0.2**2)) / math.sqrt(fan_in))
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class Block(nn.Module):
    """x + 1x1(act(grouped 3x3(act(1x1(x))))): the paper's residual block without normalisation."""

    def __init__(self, channels: int):
        super().__init__()
        wide = channels * EXPANSION
        self.widen = nn.Conv2d(channels, wide, 1)
        self.mix = nn.Conv2d(wide, wide, 3, padding=1, groups=max(1, wide // GROUP_WIDTH))
        self.narrow = nn.Conv2d(wide, channels, 1)

    def init_(self, blocks: int) -> None:
        """Fix-up: the branch's inner layers scaled by blocks^(-1/(2m - 2)) for its m = 3 layers, and its
        last layer at zero, so every block starts as the identity and the net's variance does not grow
        with depth."""
        scale = blocks ** (-1 / 4)
        _msr_(self.widen, scale)
        _msr_(self.mix, scale)
        nn.init.zeros_(self.narrow.weight)
        nn.init.zeros_(self.narrow.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.widen(x), 0.2)
        h = F.leaky_relu(self.mix(h), 0.2)
        return x + self.narrow(h)


class Generator(nn.Module):
    """Latent (N, L) or (N, L, 1, 1) -> image (N, 3, S, S) in [-1, 1].

    A learned 4 x 4 basis, scaled channel by channel by a linear map of the latent (the paper's
    generative basis), then a residual block at each resolution up to S / 2, with a 1x1
    convolution and a bilinear 2x upsampling between them; the last upsampling reaches S, where a
    3x3 convolution draws RGB. No block runs at S itself: at a CPU's widths one there would cost
    more than the rest of the net (the lecture's G, too, only draws RGB at S).
    """

    def __init__(self, latent_size: int = 128, image_size: int = 64, width: int = 16):
        super().__init__()
        chans = _widths(image_size, width)
        self.basis = nn.Parameter(torch.empty(chans[0], 4, 4))
        self.latent = nn.Linear(latent_size, chans[0], bias=False)
        self.blocks = nn.ModuleList(Block(c) for c in chans)
        self.up = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(chans, chans[1:]))
        self.to_rgb = nn.Conv2d(chans[-1], 3, 3, padding=1)
        self.latent_size, self.image_size, self.width = latent_size, image_size, width

    def init_(self) -> None:
        nn.init.normal_(self.basis)
        _msr_(self.latent)
        for b in self.blocks:
            b.init_(len(self.blocks))
        for c in self.up:
            _msr_(c)
        _msr_(self.to_rgb, 0.5)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.basis * self.latent(z.reshape(z.shape[0], self.latent_size))[:, :, None, None]
        x = self.blocks[0](x)
        for up, block in zip(self.up, self.blocks[1:]):
            x = block(_upsample(up(x)))
        return torch.tanh(self.to_rgb(_upsample(x)))


class Discriminator(nn.Module):
    """Image (N, 3, S, S) -> one logit per image, shape (N,).

    The generator mirrored: a strided 4 x 4 convolution from RGB to S / 2 (the lecture's D's first
    layer), a residual block at each resolution down to 4 x 4, with a 2 x 2 average (a box
    low-pass, then subsampling) and a 1x1 convolution between them; at 4 x 4 the paper's
    discriminative basis (a depthwise 4 x 4 convolution, then a linear map to the logit).
    """

    def __init__(self, image_size: int = 64, width: int = 32):
        super().__init__()
        chans = _widths(image_size, width)[::-1]  # image_size / 2, ..., 4
        self.from_rgb = nn.Conv2d(3, chans[0], 4, 2, 1)
        self.blocks = nn.ModuleList(Block(c) for c in chans)
        self.down = nn.ModuleList(nn.Conv2d(a, b, 1) for a, b in zip(chans, chans[1:]))
        self.basis = nn.Conv2d(chans[-1], chans[-1], 4, groups=chans[-1])
        self.score = nn.Linear(chans[-1], 1)
        self.image_size = image_size

    def init_(self) -> None:
        _msr_(self.from_rgb)
        for b in self.blocks:
            b.init_(len(self.blocks))
        for c in self.down:
            _msr_(c)
        _msr_(self.basis)
        _msr_(self.score)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks[0](F.leaky_relu(self.from_rgb(x), 0.2))
        for down, block in zip(self.down, self.blocks[1:]):
            x = block(down(F.avg_pool2d(x, 2)))
        return self.score(F.leaky_relu(self.basis(x), 0.2).flatten(1)).reshape(-1)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
