"""Stage ``make-video``: the training grids in epoch order, as the lecture's video and a GIF."""

from __future__ import annotations

import re
import shutil

import cv2
import numpy as np
from PIL import Image

from stages import layout, tracking
from stages.annotate import with_caption
from stages.atomic import atomic_path
from stages.params import Params, ParamsError

_EPOCH = re.compile(r"epoch_(\d+)\.png$")


def grid_frames() -> list[tuple[int, np.ndarray]]:
    """(epoch, RGB frame with its epoch written on it), sorted by epoch."""
    found = sorted((int(m.group(1)), p) for p in layout.GRIDS.glob("epoch_*.png") if (m := _EPOCH.search(p.name)))
    if not found:
        raise ParamsError(f"{layout.GRIDS}: no training grids to make a video from (run `gan train`)")
    frames = []
    for epoch, path in found:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ParamsError(f"{path}: cannot read this grid image")
        frames.append((epoch, with_caption(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"epoch {epoch}", top=True)))
    if len({f.shape for _, f in frames}) > 1:
        raise ParamsError(f"{layout.GRIDS}: grids differ in size; delete the folder and retrain")
    return frames


def run(params: Params) -> None:
    v = params.video
    frames = grid_frames()
    shutil.rmtree(layout.VIDEO, ignore_errors=True)
    h, w = frames[0][1].shape[:2]
    target = layout.VIDEO / f"training.{v.container}"
    with atomic_path(target) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*v.codec), v.fps, (w, h))
        if not writer.isOpened():
            raise ParamsError(f"video.codec: OpenCV cannot write '{v.codec}' into a .{v.container} file here")
        for _, rgb in frames:
            writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        writer.release()
    if v.gif:
        with atomic_path(layout.VIDEO / "training.gif") as tmp:
            size = (max(1, round(w * v.gif_scale)), max(1, round(h * v.gif_scale)))
            pil = [Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS) for _, rgb in frames]
            pil[0].save(tmp, format="GIF", save_all=True, append_images=pil[1:], duration=round(1000 / v.fps), loop=0)
    tracking.attach(layout.VIDEO, "video")
    print(f"make-video: {len(frames)} frames (epochs {frames[0][0]}..{frames[-1][0]}) at {v.fps} fps -> {target}")
