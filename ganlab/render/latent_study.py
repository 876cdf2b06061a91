"""The homework's hand-made latent vectors, and the page that shows each image with its caption.

Studies (all from ``params.latent_study``): constant vectors (all 0, 1, -1, 0.5, 0.3), one-hot
vectors, a base vector with one feature set to a large value (the lecture's feature 3 = 50 and
feature 123 = -50), and one dimension swept over a range with the others fixed.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ganlab.errors import UserError
from ganlab.io.atomic import atomic_path, write_text
from ganlab.metrics.sampler import fixed_latents
from ganlab.params import LatentStudyParams
from ganlab.render.annotate import to_uint8, upscale, with_caption

BASES = {"zeros": 0.0, "ones": 1.0, "neg_ones": -1.0}  # latent_study.feature_base: the value of every dimension


@dataclass
class Study:
    name: str
    title: str
    captions: list[str]
    latents: torch.Tensor  # (n, latent_size), on the CPU until the sampler moves it


def build_studies(p: LatentStudyParams, latent_size: int) -> list[Study]:
    """Every non-empty study, in page order. params.yaml's dimensions were checked against
    ``model.latent_size``; the generator may be older than that setting, so they are checked again
    against the one it has."""
    for key, dim in p.dimensions():
        if not 0 <= dim < latent_size:
            raise UserError(
                f"latent_study.{key}: dimension {dim} is outside the generator's latent vector of {latent_size} "
                "(models/checkpoint.pt was trained with another model.latent_size: train again, or choose dimensions below it)"
            )

    def full(value: float, n: int = 1) -> torch.Tensor:
        return torch.full((n, latent_size), float(value))

    constants = torch.cat([full(c) for c in p.constants]) if p.constants else full(0, 0)
    one_hot = full(0.0, len(p.one_hot_dims))
    for row, dim in enumerate(p.one_hot_dims):
        one_hot[row, dim] = 1.0
    base_value = BASES[p.feature_base]
    features = full(base_value, 1 + len(p.features))
    for row, (dim, value) in enumerate(p.features.items(), start=1):
        features[row, dim] = value
    sw = p.sweep
    values = torch.linspace(sw.start, sw.stop, sw.steps)
    base = fixed_latents(p.seed, latent_size, 1) if sw.base == "random" else full(1.0 if sw.base == "ones" else 0.0)
    sweep = base.repeat(sw.steps, 1)
    sweep[:, sw.dim] = values
    base_name = f"all {base_value:g}"
    studies = [
        Study("constants", "Constant latent vectors", [f"all {c:g}" for c in p.constants], constants),
        Study(
            "one_hot",
            "One-hot latent vectors (0, ..., 1, ..., 0)",
            [f"one-hot dim {d}" for d in p.one_hot_dims],
            one_hot,
        ),
        Study(
            "features",
            f"One feature set to a large value, others {base_name}",
            [base_name] + [f"{base_name}, dim {d} = {v:g}" for d, v in p.features.items()],
            features,
        ),
        Study(
            "sweep",
            f"Dimension {sw.dim} swept from {sw.start:g} to {sw.stop:g}, others fixed ({sw.base} base)",
            [f"dim {sw.dim} = {v:.2f}" for v in values.tolist()],
            sweep,
        ),
    ]
    return [s for s in studies if s.captions]


def write_page(studies: list[Study], images: torch.Tensor, out: Path, image_size: int, latent_size: int) -> int:
    """One PNG per latent vector, a captioned strip per study and ``index.html``; returns the image count.
    ``images``: every study's images in order, (N, 3, S, S) in [-1, 1] on any device.

    The page carries its images inline (data URIs): MLflow's artifact viewer serves each file
    at its own URL, where relative links to the PNGs beside the page would break."""
    images = images.detach().float().cpu().add(1).div(2)
    sections, offset = [], 0
    for study in studies:
        tiles, figures = [], []
        for i, caption in enumerate(study.captions):
            tile = upscale(to_uint8(images[offset + i]))
            png = _png(tile)
            _write(png, out / f"{study.name}/{i:02d}.png")
            tiles.append(with_caption(tile, caption))
            src = "data:image/png;base64," + base64.b64encode(png).decode()
            figures.append(
                f'<figure><img src="{src}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'
            )
        offset += len(study.captions)
        _write(
            _png(np.hstack([np.pad(t, ((0, 0), (2, 2), (0, 0)), constant_values=255) for t in tiles])),
            out / f"{study.name}.png",
        )
        sections.append(f'<h2>{html.escape(study.title)}</h2>\n<div class="row">{"".join(figures)}</div>')
    write_text(out / "index.html", _PAGE.format(body="\n".join(sections), size=image_size, latent=latent_size))
    return offset


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _write(data: bytes, path: Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Latent study</title>
<style>body{{font-family:sans-serif;margin:2em}} .row{{display:flex;flex-wrap:wrap;gap:8px}}
figure{{margin:0;text-align:center}} img{{width:128px;image-rendering:pixelated}} figcaption{{font-size:12px}}</style>
</head><body>
<h1>Images from hand-made latent vectors</h1>
<p>Generator: {size} x {size} px, latent size {latent}, BatchNorm in eval mode (each image independent of the others).</p>
{body}
</body></html>
"""
