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
from ganlab.render.annotate import to_uint8, with_caption


def to_grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """(N, 3, S, S) in [-1, 1] -> one (3, H, W) image in [0, 1] on the CPU, with ``padding`` px gutters."""
    return make_grid(images.detach().float().cpu(), nrow=nrow, padding=padding, normalize=True, value_range=(-1, 1))


def save_png(image: torch.Tensor, path: Path, caption: str | None = None) -> None:
    """(3, H, W) in [0, 1] -> PNG, written atomically; with ``caption``, a band under the image
    says what it shows (a file opened on its own has no page around it to say so). The image's
    pixels are the same either way: ``to_uint8`` rounds as ``save_image`` does."""
    with atomic_path(path) as tmp:
        if caption is None:
            save_image(image, tmp, format="png")
        else:
            Image.fromarray(with_caption(to_uint8(image), caption)).save(tmp, format="png")


def to_pil(image: torch.Tensor) -> Image.Image:
    return to_pil_image(image.cpu())
