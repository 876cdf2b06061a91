"""The one way latents become images, for training grids, samples, the latent study and metrics.

Latents are drawn from a seeded CPU generator, so a seed means the same faces on every machine,
and moved once, here, to the device of the generator that reads them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ganlab.device import device_of
from ganlab.errors import UserError
from ganlab.io import checkpoint, run_checkpoint
from ganlab.nets.archs import generator_for

GRID_LATENTS = 64  # 8 x 8, as in the lecture


def fixed_latents(seed: int, latent_size: int, n: int = GRID_LATENTS) -> torch.Tensor:
    """The same (n, latent_size) latents for a seed on every machine (CPU; :func:`generate` moves them)."""
    return torch.randn(n, latent_size, generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def batch_statistics(model: nn.Module) -> Iterator[nn.Module]:
    """Forward with batch statistics (train mode, as the lecture renders its grids) without
    touching the running statistics that training keeps; the mode is restored afterwards."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved, was_training = [m.momentum for m in bns], model.training
    for m in bns:
        m.momentum = 0.0
    try:
        yield model.train()
    finally:
        for m, momentum in zip(bns, saved):
            m.momentum = momentum
        model.train(was_training)


@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, batch: int = 256, batch_stats: bool = False) -> torch.Tensor:
    """Images (N, 3, S, S) in [-1, 1], float32, on G's device.

    ``batch_stats``: BatchNorm normalises over the batch (one call, as the lecture's grids);
    otherwise G is used as it is, in chunks of ``batch`` (eval mode: each image independent).
    """
    z = z.to(device_of(G))
    if batch_stats:
        with batch_statistics(G) as G_batch:
            return G_batch(z).float()
    return torch.cat([G(chunk).float() for chunk in z.split(batch)])


def load_generator(path: Path, device: torch.device, which: str = "last") -> tuple[nn.Module, float]:
    """The generator for inference (``which``: best or last) on ``device``, in eval mode with
    BN statistics made for sampling, and the kimg it is from. Without in-training evaluation,
    best is last."""
    rebuild = "rebuild it with `gan train` (or `dvc repro`)"
    m, weights, kimg = run_checkpoint.for_stages(checkpoint.load(path), path, which, rebuild)
    try:
        g = generator_for(m)
    except (ValueError, TypeError, RuntimeError, KeyError) as e:
        raise UserError(f"{path}: its 'model' describes no generator this project builds ({e}); {rebuild}") from None
    checkpoint.load_weights(g, weights, path, rebuild)
    state = g.state_dict()
    bad = [k for k, t in state.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:  # every image would be NaN, and saved as black: 64 black samples, no word
        raise UserError(
            f"{path}: the generator's weights at {kimg:g} kimg are not finite (NaN or inf in {len(bad)} of {len(state)} "
            f"tensors, first {bad[0]}): the run diverged or the file is damaged; {rebuild}"
        )
    return g.to(device).eval().requires_grad_(False), kimg
