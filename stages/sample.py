"""Stage ``sample``: the fixed-latent 8 x 8 grid and single images from the trained generator,
which it also logs as the training run's MLflow model."""

from __future__ import annotations

import copy

from ganlab import layout
from ganlab.device import resolve_device
from ganlab.io import tracking
from ganlab.io.atomic import atomic_dir
from ganlab.metrics.sampler import fixed_latents, generate, load_generator
from ganlab.params import Params, flatten
from ganlab.render.annotate import save_captioned
from ganlab.render.grids import save_png, to_grid

SINGLES_AT_ONCE = 256  # generate()'s own batch: the same images as one call for all


def run(params: Params) -> None:
    s = params.sample
    G, kimg = load_generator(layout.CHECKPOINT, resolve_device(params.device), which=params.generator)
    grid = generate(G, fixed_latents(s.seed, G.latent_size))  # eval-mode BN: each image independent of its batch mates
    with atomic_dir(layout.SAMPLES) as out:
        caption = f"{len(grid)} samples, fixed latents (seed {s.seed}), {params.generator} generator at {kimg:g} kimg"
        save_captioned(to_grid(grid), caption, out / "grid.png")
        # a chunk at a time: sample.count's 10000 at 256 px were 7.9 GB at once
        for first, z in enumerate(fixed_latents(s.seed + 1, G.latent_size, s.count).split(SINGLES_AT_ONCE)):
            for i, image in enumerate(generate(G, z), start=first * SINGLES_AT_ONCE):
                save_png(to_grid(image[None], nrow=1, padding=0), out / f"sample_{i:03d}.png")
    with tracking.stage_run("sample", flatten(params, ("sample", "generator", "device"))) as mlrun:
        mlrun.attach(layout.SAMPLES, "samples")
    tracking.log_generator(
        copy.deepcopy(G).cpu(),
        fixed_latents(0, G.latent_size, 2).numpy(),
        {"which": params.generator, "kimg": f"{kimg:g}"},
    )
    print(
        f"sample: 8x8 grid and {s.count} images from the {params.generator} generator ({kimg:g} kimg) -> {layout.SAMPLES}/"
    )
