"""Decode any image file a user is likely to have into a square RGB uint8 array.

Odd files are the norm in hand-collected folders (16-bit PNGs, CMYK JPEGs, palettes with
transparency, rotated phone photos, truncated downloads); each is either converted the way
a person would expect or rejected with a reason, never a crash.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


class SkipImage(Exception):
    """The file is not a usable image; the message is the reason shown in the manifest."""


def _to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16/32-bit grey: scale, don't clip
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        img = img.convert("RGBA")
        canvas = Image.new("RGBA", img.size, (*background, 255))
        img = Image.alpha_composite(canvas, img)
    return img.convert("RGB")


def _square(img: Image.Image, size: int, crop: str, background: tuple[int, int, int]) -> Image.Image:
    """``size`` x ``size``: the centre square resized, or the whole image resized to fit and
    padded. Padding comes after the resize, so a 100000 x 1 strip never becomes a 100000^2 canvas."""
    w, h = img.size
    if crop == "center":
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        return img.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    scale = size / max(w, h)
    fitted = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), background)
    canvas.paste(fitted, ((size - fitted.width) // 2, (size - fitted.height) // 2))
    return canvas


def load_image(
    source: Path | BinaryIO, size: int, crop: str = "center", background: tuple[int, int, int] = (255, 255, 255)
) -> tuple[np.ndarray, str | None]:
    """(size, size, 3) uint8 RGB, EXIF-upright, squared by ``crop`` and resized with Lanczos,
    and a note when the result is likely poor (tiny source, extreme aspect ratio)."""
    if (source.stat().st_size if isinstance(source, Path) else source.getbuffer().nbytes) == 0:
        raise SkipImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                img.seek(0)  # first frame of animated GIF/WebP/TIFF
                img.load()
                img = ImageOps.exif_transpose(img) or img
                img = _to_rgb(img, background)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise SkipImage(_reason(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated or corrupt data
        raise SkipImage(f"cannot decode: {_reason(e)}") from None
    if min(img.size) < 1:
        raise SkipImage("image has no pixels")
    w, h = img.size
    note = None
    if max(w, h) > 4 * min(w, h):
        note = f"{w}x{h} is far from square; {'cropped to its centre' if crop == 'center' else 'padded'}"
    elif 2 * min(w, h) < size:  # more than 2x enlargement: visibly blurry
        note = f"upscaled from {w}x{h}"
    return np.array(
        _square(img, size, crop, background), dtype=np.uint8
    ), note  # writable: torch.from_numpy warns otherwise


def _reason(e: BaseException) -> str:
    if isinstance(e, UnidentifiedImageError):
        return "not an image file Pillow can read"
    if isinstance(e, (Image.DecompressionBombError, Image.DecompressionBombWarning)):
        return "too many pixels (decompression bomb guard)"
    return str(e).splitlines()[0] if str(e) else type(e).__name__
