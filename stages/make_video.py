"""Stage ``make-video``: the training grids in training order, as the lecture's video and a GIF."""

from __future__ import annotations

from ganlab import layout
from ganlab.io import tracking
from ganlab.io.atomic import atomic_dir
from ganlab.params import Params, flatten
from ganlab.render.video import grid_frames, write_gif, write_video


def run(params: Params) -> None:
    v = params.video
    frames = grid_frames(layout.GRIDS)
    name = f"training.{v.container}"
    with atomic_dir(layout.VIDEO) as out:
        write_video([rgb for _, rgb in frames], out / name, v.codec, v.fps)
        if v.gif:
            write_gif([rgb for _, rgb in frames], out / "training.gif", v.fps, v.gif_scale)
    target = layout.VIDEO / name
    with tracking.stage_run("make-video", flatten(params, ("video",))) as mlrun:
        mlrun.attach(
            layout.VIDEO / "training.gif" if v.gif else target, "video"
        )  # MLflow shows a GIF inline; the AVI stays in reports/
    drawn = sum(1 for p in layout.GRIDS.glob("images_*.png") if layout.GRID_FILE.search(p.name))
    spread = f"; {len(frames)} of {drawn} grids, spread over what the run trained" if len(frames) < drawn else ""
    print(
        f"make-video: {len(frames)} frames ({frames[0][0] / 1000:g}..{frames[-1][0] / 1000:g} kimg{spread}) at {v.fps} fps -> {target}"
    )
