"""A discriminator that judges images by a frozen ImageNet network's features (Projected GAN,
Sauer et al. 2021), alone or beside the lecture's D (``model.discriminator``: ``projected`` or
``dcgan+projected``; the default is the lecture's D alone: docs/defaults.md)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganlab.nets.backbone import efficientnet_lite
from ganlab.nets.dcgan import SUPPORTED_SIZES

# EfficientNet-Lite0's blocks grouped into four stages ending at 1/4, 1/8, 1/16 and 1/32 of the input
LITE0_STAGES = ((0, 3), (3, 5), (5, 11), (11, 16))


class ProjectedDiscriminator(nn.Module):
    """Image (N, 3, S, S) -> (N, K) logits: small strided-conv discriminators on a frozen ImageNet
    network's features at four scales (Projected GAN, Sauer et al. 2021).

    Why: with 20-1000 images a D learned from pixels sees too few examples to learn what
    images look like, and G is taught little beyond colour fields and periodic textures. Features
    of a pretrained network already separate shapes and textures; D learns only the heads. The
    network is EfficientNet-Lite0, not the Lite1 the quality metrics use, so that G is not trained
    on the very features it is scored in (both are ImageNet classifiers: see README).

    The pretrained network and the random 1x1 projections that mix its channels (CCM) and scales
    (CSM) are fixed; only the heads learn. The pretrained weights are not in ``state_dict`` (they
    come from their package); the projections are, so a checkpoint restores D exactly. Each head
    ends in one logit per image, as the lecture's D does; the loss averages the four.

    ``scales=2`` keeps only the two shallow stages (1/4 and 1/8 of the input: edges, colours,
    small textures) and drops the two deep ones, where ImageNet's classes are told apart: the
    part of the features an ImageNet-feature metric rewards most and a small set teaches least.
    It also runs 5 of the backbone's 16 blocks.
    """

    def __init__(self, image_size: int = 64, width: int = 32, option: str = "projected", scales: int = 4):
        super().__init__()
        if image_size not in SUPPORTED_SIZES:
            raise ValueError(f"image size {image_size} is not one of {SUPPORTED_SIZES}")
        net = efficientnet_lite("efficientnet-lite0", f"model.discriminator: {option} needs")
        stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
        kept = LITE0_STAGES[:scales]  # the deeper stages are neither run nor judged
        stages = [nn.Sequential(*net._blocks[a:b]) for a, b in kept]
        stages[0] = nn.Sequential(stem, *stages[0])
        # not a registered child: outside state_dict and parameters(), and never switched to train
        # mode by D.train(), so its BatchNorm statistics stay ImageNet's
        object.__setattr__(self, "backbone", nn.ModuleList(stages))
        chans = [net._blocks[b - 1]._project_conv.out_channels for _, b in kept]
        widths = [width * 2**i for i in range(len(chans))]
        self.ccm = nn.ModuleList(nn.Conv2d(c, w, 1) for c, w in zip(chans, widths))
        self.csm = nn.ModuleList(nn.Conv2d(w_deep, w, 1) for w, w_deep in zip(widths, widths[1:]))
        self.ccm.requires_grad_(False)
        self.csm.requires_grad_(False)
        heads = []
        for i, w in enumerate(widths):
            res, layers, c = image_size // 2 ** (i + 2), [], w
            while res > 4:
                layers += [
                    spectral_norm(nn.Conv2d(c, min(2 * c, 8 * width), 4, 2, 1, bias=False)),
                    nn.BatchNorm2d(min(2 * c, 8 * width)),
                    nn.LeakyReLU(0.2, inplace=True),
                ]
                c, res = min(2 * c, 8 * width), res // 2
            layers += [spectral_norm(nn.Conv2d(c, 1, min(res, 4), 1, 0, bias=False)), nn.Flatten()]
            heads.append(nn.Sequential(*layers))
        self.heads = nn.ModuleList(heads)
        self.image_size = image_size

    def _apply(self, fn, recurse=True):  # .to(device / memory format) moves the unregistered backbone too
        self.backbone._apply(fn, recurse)
        return super()._apply(fn, recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        for stage in self.backbone:  # EfficientNet-Lite's input is (pixel - 127) / 128: our [-1, 1]
            x = stage(x)
            feats.append(x)
        mixed = [ccm(f) for ccm, f in zip(self.ccm, feats)]
        for i in reversed(range(len(mixed) - 1)):  # deeper scales flow into shallower ones
            up = nn.functional.interpolate(mixed[i + 1], size=mixed[i].shape[-2:], mode="bilinear", align_corners=False)
            mixed[i] = mixed[i] + self.csm[i](up)
        return torch.cat([head(m) for head, m in zip(self.heads, mixed)], dim=1)


class FeaturesAndPixels(nn.Module):
    """The lecture's D on pixels beside the projected D on ImageNet features, weighted equally
    (Vision-aided GAN, Kumari et al. 2022): image (N, 3, S, S) -> (N, 2K) logits, the features' first.

    Why: alone, the projected D let G fall into one face on the demo faces within 25 kimg (and
    into 3-4 kinds of wallpaper); a D that also sees the pixels still rejects a G that paints
    one image, while the ImageNet features teach shapes that 200 images cannot teach a D from
    scratch. The pixel D's one logit is repeated K times, so that the mean over the columns
    (what the loss takes) gives each discriminator half the weight.
    """

    def __init__(self, features: ProjectedDiscriminator, pixels: nn.Module):
        super().__init__()
        self.features, self.pixels = features, pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return torch.cat([f, self.pixels(x)[:, None].expand_as(f)], dim=1)
