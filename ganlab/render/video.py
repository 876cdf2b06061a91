"""Training grids -> the lecture's video (OpenCV VideoWriter) and an animated GIF that browsers play."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ganlab import layout
from ganlab.errors import UserError
from ganlab.io.atomic import atomic_path
from ganlab.render.annotate import with_caption


def grid_frames(grids: Path) -> list[tuple[int, np.ndarray]]:
    """(images seen, RGB frame with its kimg written on it), in training order."""
    found = sorted((int(m.group(1)), p) for p in grids.glob("images_*.png") if (m := layout.GRID_FILE.search(p.name)))
    if not found:
        raise UserError(f"{grids}: no training grids to make a video from (run `gan train`)")
    frames = []
    for images, path in found:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise UserError(f"{path}: cannot read this grid image")
        frames.append(
            (images, with_caption(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{images / 1000:.4g} kimg", top=True))
        )
    if len({f.shape for _, f in frames}) > 1:
        raise UserError(f"{grids}: grids differ in size; delete the folder and retrain")
    return frames


def write_video(frames: list[np.ndarray], path: Path, codec: str, fps: float) -> None:
    h, w = frames[0].shape[:2]
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, (w, h))
        if not writer.isOpened():
            raise UserError(f"video.codec: OpenCV cannot write '{codec}' into a {path.suffix} file here")
        for rgb in frames:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        writer.release()


def write_gif(frames: list[np.ndarray], path: Path, fps: float, scale: float) -> None:
    h, w = frames[0].shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    pil = [Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS) for rgb in frames]
    with atomic_path(path) as tmp:
        pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=round(1000 / fps), loop=0)
