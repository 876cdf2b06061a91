"""Fixed latents and the 8 x 8 grids made from them, shared by training, sampling and the video."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn
from torchvision.utils import make_grid, save_image

from stages.atomic import atomic_path

GRID_LATENTS = 64  # 8 x 8, as in the lecture


def fixed_latents(seed: int, latent_size: int, n: int = GRID_LATENTS) -> torch.Tensor:
    """The same latents for a seed on every machine: drawn on the CPU, moved by the caller."""
    return torch.randn(n, latent_size, generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Forward with batch statistics (train mode, as the lecture renders its grids) without
    touching the running statistics that training keeps; the mode is restored afterwards."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved, was_training = [m.momentum for m in bns], model.training
    for m in bns:
        m.momentum = 0.0
    try:
        yield model.train()
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
        model.train(was_training)


def to_grid(images: torch.Tensor, nrow: int = 8) -> torch.Tensor:
    """(N, 3, S, S) in [-1, 1] -> one (3, H, W) image in [0, 1] with 2 px gutters."""
    return make_grid(images.float().cpu(), nrow=nrow, padding=2, normalize=True, value_range=(-1, 1))


def save_png(image: torch.Tensor, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_image(image, tmp, format="png")
