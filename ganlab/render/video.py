"""Training grids -> the lecture's video (OpenCV VideoWriter) and an animated GIF that browsers play."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ganlab import layout
from ganlab.errors import UserError
from ganlab.io.atomic import atomic_path
from ganlab.render.annotate import with_caption
from ganlab.training.clock import log_spaced


def spread_over_training(images: list[int]) -> list[int]:
    """Which grids (named by the images shown before each, ascending) become frames.

    The clock log-spaces the grids over the planned length, so a run that stopped early (a
    plateau, a time budget) drew them crowded into the start of what it trained. Its frames are
    chosen again as if the clock had planned the length it trained: for each of as many points,
    log-spaced over [last/500, last], the grid nearest it within half a step: about one step
    apart, as a run of that length would have drawn them, and none for a point where no grid was
    drawn. A run that trained its whole length is its own schedule and keeps every grid; the
    first (untrained) and last grids always stay.
    """
    if len(images) < 3 or _a_whole_schedule(images[1:]):
        return list(images)
    first, trained, last = images[0], np.log(images[1:]), images[-1]
    half_step = math.log(500) / (len(trained) - 1) / 2
    keep = {last}
    for point in np.linspace(math.log(last / 500), math.log(last), len(trained)):
        i = int(np.abs(trained - point).argmin())
        if abs(trained[i] - point) <= half_step + 1e-9:
            keep.add(images[1 + i])
    return [first, *sorted(keep)]


def _a_whole_schedule(trained: list[int]) -> bool:
    """Whether these grids are exactly the clock's for a run that ended at the last of them, for
    some batch (it divides every count): ``batch x log_spaced(count, last / batch)``."""
    g = math.gcd(*trained)
    batches = {d for k in range(1, math.isqrt(g) + 1) if g % k == 0 for d in (k, g // k)}
    return any([b * s for s in log_spaced(len(trained), trained[-1] // b)] == trained for b in batches)


def grid_frames(grids: Path) -> list[tuple[int, np.ndarray]]:
    """(images seen, RGB frame with its kimg written on it), in training order, spread over
    what the run trained (:func:`spread_over_training`)."""
    named = {int(m.group(1)): p for p in grids.glob("images_*.png") if (m := layout.GRID_FILE.search(p.name))}
    if not named:
        raise UserError(f"{grids}: no training grids to make a video from (run `gan train`)")
    frames = []
    for images in spread_over_training(sorted(named)):
        path = named[images]
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
    # to 256 colours by fast octree: 0.1 s for 41 frames where Pillow's default median cut took 4.2 s
    # (and a 31% smaller file); the AVI keeps every colour
    pil = [
        Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS).quantize(256, method=Image.Quantize.FASTOCTREE)
        for rgb in frames
    ]
    with atomic_path(path) as tmp:
        pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=round(1000 / fps), loop=0)
