"""Contact sheet for docs/quality_panel.md: 64 real images beside 64 samples of each run's kept
generator, captioned, so that runs at equal CPU time are judged by eye side by side.

    python scripts/contact_sheet.py OUT.jpg OUT/NAME/SET "caption=OUT/NAME/SET" ...

The first run folder gives the real images (64 at random, seed 0, from its prepared data set);
each ``caption=RUN`` adds a panel of RUN's best generator (the one its later stages would use)
on the training grids' fixed latents (``caption=RUN:last``: its last generator instead;
``caption=RUN@10``: the training grid nearest 10 minutes of its wall time, from timing.csv, for
quality against minutes). A ``|`` in a caption breaks the line.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ganlab.data.dataset import load_images
from ganlab.errors import UserError
from ganlab.metrics.sampler import fixed_latents, generate, load_generator
from ganlab.params import Params
from ganlab.render.grids import to_grid, to_pil

USAGE = "usage:\n" + "\n".join(line for line in __doc__.splitlines() if line.lstrip().startswith("python scripts/"))


def main(out: str, real_run: str, *columns: str) -> None:
    for column in columns:
        if "=" not in column:
            sys.exit(f"error: {column!r}: not caption=RUN (or caption=RUN:last, caption=RUN@MINUTES)")
    real = load_images(Path(real_run) / "data/prepared/dataset.pt")["images"]
    pick = torch.randperm(len(real), generator=torch.Generator().manual_seed(0))[:64]
    panels = [(f"real images ({len(real)})", to_pil(to_grid(real[pick].float(), padding=1)))]
    grid_seed = Params().train.grid_seed
    for column in columns:
        caption, run = column.split("=", 1)
        if "@" in run:
            run, minutes = run.rsplit("@", 1)
            try:
                minutes = float(minutes)
            except ValueError:
                sys.exit(f"error: {column!r}: {minutes!r} after @ is not a number of minutes")
            image, kimg, at = grid_at(Path(run), minutes)
            panels.append((f"{caption}|grid at {at:.1f} min: {kimg:.1f} kimg", image))
            continue
        run, _, which = run.partition(":")
        G, kimg = load_generator(Path(run) / "models/checkpoint.pt", torch.device("cpu"), which or "best")
        fake = generate(G, fixed_latents(grid_seed, G.latent_size, 64))
        panels.append((f"{caption}|kept: {kimg:.1f} kimg", to_pil(to_grid(fake, padding=1))))
    w, h = panels[-1][1].size  # a full 8 x 8 panel (a set of 20 fills fewer rows)
    top = 8 + 14 * max(caption.count("|") + 1 for caption, _ in panels)
    sheet = Image.new("RGB", (len(panels) * (w + 10), h + top), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (caption, image) in enumerate(panels):
        sheet.paste(image, (i * (w + 10), top))
        for j, line in enumerate(caption.split("|")):
            draw.text((i * (w + 10) + 4, 4 + 14 * j), line, fill="black")
    sheet.save(out, quality=90)  # JPEG: a fifth of the PNG's bytes for photos and samples
    print(out, sheet.size)


def grid_at(run: Path, minutes: float) -> tuple[Image.Image, float, float]:
    """(the training grid nearest ``minutes`` of the run's wall time, its kimg, its minutes)."""
    timing = list(csv.DictReader((run / "reports/train/timing.csv").open()))
    kimg = [0.0] + [float(t["kimg"]) for t in timing]
    seconds = [0.0] + [float(t["seconds"]) for t in timing]
    target = float(np.interp(minutes * 60, seconds, kimg))
    grids = {int(p.stem.split("_")[1]) / 1000: p for p in (run / "reports/train/grids").glob("images_*.png")}
    if not grids:
        sys.exit(f"error: {run}/reports/train/grids: no training grids (images_*.png)")
    near = min(grids, key=lambda k: abs(k - target))
    return Image.open(grids[near]).convert("RGB"), near, float(np.interp(near, kimg, seconds)) / 60


def cli(argv: list[str]) -> None:
    """No or too few arguments: the usage, exit code 2 (they were a TypeError); a run that is not
    there or not finished: ``gan``'s one line (it was an uncaught UserError or FileNotFoundError)."""
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return
    if len(argv) < 2 or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    try:
        main(*argv)
    except UserError as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        sys.exit(f"error: {e.filename}: {e.strerror}")


if __name__ == "__main__":
    cli(sys.argv[1:])
