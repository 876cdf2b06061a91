"""Differentiable augmentation (DiffAugment, Zhao et al. 2020) and data-set flips.

With 100 images a discriminator memorises the reals within a few hundred steps. DiffAugment
applies the same random, differentiable transforms to real and fake images, for both the D and
the G updates, so D cannot tell them apart by the transform and G still gets gradients through
it. Every random draw comes from the run's generator: resumed runs repeat them exactly.

Adaptive strength (Karras et al. 2020, StyleGAN2-ADA): each transform is applied to an image
with probability p, and p follows D's overfitting: the share of reals D scores as real,
r_t = E[sign(D(x))], is held near a target (0.6) by moving p up when r_t is above it and down
when below, by at most one full step over ``ada_kimg`` thousand images. Few images (D
memorises fast) get strong augmentation, many images little, without tuning. p stays a device
tensor: the training never waits for it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _rand(x: torch.Tensor, rng: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(x.shape[0], *shape, device=x.device, generator=rng, dtype=x.dtype)


def color(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random brightness, saturation and contrast per image."""
    x = x + (_rand(x, rng, 1, 1, 1) - 0.5)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * (_rand(x, rng, 1, 1, 1) * 2) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_rand(x, rng, 1, 1, 1) + 0.5) + mean


def translation(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.125) -> torch.Tensor:
    """Shift each image by up to ``ratio`` of its size; uncovered pixels become 0 (mid-grey).

    One gather of each output pixel from the padded image, channels last: its backward is a
    scatter-add, and forward and backward take 1.7x less time on a CPU than with advanced
    indexing, whose backward is an index-put (the same values, bit for bit)."""
    n, c, h, w = x.shape
    sh, sw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sh, sh + 1, (n, 1, 1), device=x.device, generator=rng)
    dx = torch.randint(-sw, sw + 1, (n, 1, 1), device=x.device, generator=rng)
    gy = (torch.arange(h, device=x.device).view(1, h, 1) + dy + 1).clamp(0, h + 1)  # into a 1-pixel zero border
    gx = (torch.arange(w, device=x.device).view(1, 1, w) + dx + 1).clamp(0, w + 1)
    index = (gy * (w + 2) + gx).view(n, h * w, 1).expand(n, h * w, c)
    padded = F.pad(x, [1, 1, 1, 1]).permute(0, 2, 3, 1).reshape(n, (h + 2) * (w + 2), c)
    return padded.gather(1, index).view(n, h, w, c).permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, rng: torch.Generator, ratio: float = 0.5) -> torch.Tensor:
    """Zero a random square of ``ratio`` x size in each image."""
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device, generator=rng)
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device, generator=rng)
    top, left = cy - ch // 2, cx - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


_OPS = {"color": color, "translation": translation, "cutout": cutout}
POLICIES = tuple(_OPS)  # train.diffaugment's choices


def diff_augment(
    x: torch.Tensor, policies: list[str] | tuple[str, ...], rng: torch.Generator, p: torch.Tensor | None = None
) -> torch.Tensor:
    """Every transform on every image, or (``p``: a 0-dim device tensor) each on a random share p."""
    for name in policies:
        if p is None:
            x = _OPS[name](x, rng)
        else:
            keep = torch.rand(x.shape[0], 1, 1, 1, device=x.device, generator=rng) >= p
            x = torch.where(keep, x, _OPS[name](x, rng))
    return x


def sign_agreement(real_logits: torch.Tensor) -> torch.Tensor:
    """r_t: the mean sign of D's logits on (augmented) reals; 1 when D calls every real real."""
    return torch.sign(real_logits.detach().float()).mean()


def adapt_(p: torch.Tensor, r_t: torch.Tensor, target: float, images: int, ada_kimg: float) -> None:
    """Move p, in place, by ``images`` / ``ada_kimg`` thousand towards holding r_t at ``target``."""
    p.add_(torch.sign(r_t - target) * (images / (ada_kimg * 1000))).clamp_(0, 1)


def random_flip(x: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Mirror each real image with probability 1/2 (faces are left-right symmetric)."""
    flip = torch.rand(x.shape[0], device=x.device, generator=rng) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
