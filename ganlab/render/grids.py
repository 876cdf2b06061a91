"""Images to files: the 8 x 8 grids of the lecture, single samples, PIL images for MLflow.

This is the host boundary: whatever device a tensor comes from, it is copied to the CPU here.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.functional import to_pil_image
from torchvision.utils import make_grid, save_image

from ganlab.io.atomic import atomic_path


def to_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """(N, 3, S, S) in [-1, 1] -> one (3, H, W) image in [0, 1] on the CPU, with ``padding`` px gutters."""
    return make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, normalize=True, value_range=(-1, 1))


def save_png(image: torch.Tensor, path: Path) -> None:
    """(3, H, W) in [0, 1] -> PNG, written atomically."""
    with atomic_path(path) as tmp:
        save_image(image, tmp, format="png")


def to_pil(image: torch.Tensor) -> Image.Image:
    return to_pil_image(image.cpu())
