"""Stage ``latent-study``: the homework's hand-made latent vectors, each image with its caption."""

from __future__ import annotations

import torch

from ganlab import layout
from ganlab.device import resolve_device
from ganlab.io import tracking
from ganlab.io.atomic import atomic_dir
from ganlab.metrics.sampler import generate, load_generator
from ganlab.params import Params, flatten
from ganlab.render.latent_study import build_studies, write_page


def run(params: Params) -> None:
    G, _ = load_generator(layout.CHECKPOINT, resolve_device(params.device), which=params.generator)
    studies = build_studies(params.latent_study, G.latent_size)
    images = generate(G, torch.cat([s.latents for s in studies]))  # eval-mode BN keeps images independent
    with atomic_dir(layout.LATENT_STUDY) as out:
        count = write_page(studies, images, out, G.image_size, G.latent_size)
    with tracking.stage_run("latent-study", flatten(params, ("latent_study", "generator", "device"))) as mlrun:
        mlrun.attach(layout.LATENT_STUDY, "latent_study")
    print(f"latent-study: {count} images in {len(studies)} studies -> {layout.LATENT_STUDY}/index.html")
