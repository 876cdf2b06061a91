"""Text bands on images: the images seen (kimg) on video frames, captions on latent-study tiles,
the sample grid and the closest pairs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ganlab.io.atomic import atomic_path


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 RGB."""
    return (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def with_caption(rgb: np.ndarray, text: str, top: bool = False) -> np.ndarray:
    """A white band with ``text`` in black under (or over) the image, sized to its width."""
    h, w = rgb.shape[:2]
    scale = max(0.35, min(1.0, w / 600))
    thick = 1 if scale < 0.7 else 2
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    while tw > w - 6 and scale > 0.3:  # long captions shrink to fit the tile
        scale *= 0.9
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    band = np.full((th + base + 10, w, 3), 255, np.uint8)
    cv2.putText(
        band, text, (max(3, (w - tw) // 2), th + 5), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA
    )
    return np.vstack([band, rgb] if top else [rgb, band])


def upscale(rgb: np.ndarray, min_size: int = 128) -> np.ndarray:
    """Nearest-neighbour enlargement of small tiles, so captions fit and pixels stay honest."""
    factor = max(1, -(-min_size // rgb.shape[0]))
    return cv2.resize(rgb, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST) if factor > 1 else rgb


def save_captioned(image: torch.Tensor, caption: str, path: Path) -> None:
    """(3, H, W) in [0, 1] -> PNG with ``caption`` in a band under it, written atomically: a file
    opened on its own has no page around it to say what it shows. Above the band the pixels are
    what ``grids.save_png`` writes (``to_uint8`` rounds as ``save_image`` does); the training
    grids stay bare, being video frames (and training does not depend on this module)."""
    with atomic_path(path) as tmp:
        Image.fromarray(with_caption(to_uint8(image), caption)).save(tmp, format="png")
