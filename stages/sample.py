"""Stage ``sample``: the fixed-latent 8 x 8 grid and single images from the trained generator."""

from __future__ import annotations

import shutil

import torch

from stages import checkpoint, layout, tracking
from stages.params import Params
from stages.sampling import fixed_latents, save_png, to_grid


def run(params: Params) -> None:
    s = params.sample
    G = checkpoint.load_generator(layout.CHECKPOINT, which=params.generator)
    shutil.rmtree(layout.SAMPLES, ignore_errors=True)
    with torch.inference_mode():  # eval-mode BN: each image is independent of its batch mates
        grid = G(fixed_latents(s.seed, G.latent_size))
        singles = G(fixed_latents(s.seed + 1, G.latent_size, s.count)) if s.count else grid[:0]
    save_png(to_grid(grid), layout.SAMPLES / "grid.png")
    for i, image in enumerate(singles):
        save_png(to_grid(image[None], nrow=1)[:, 2:-2, 2:-2], layout.SAMPLES / f"sample_{i:03d}.png")
    tracking.attach(layout.SAMPLES, "samples")
    print(f"sample: 8x8 grid and {s.count} images -> {layout.SAMPLES}/")
