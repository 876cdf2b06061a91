"""The one evaluation of a generator, used by training (to keep the best one) and by ``gan evaluate``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ganlab.device import device_of
from ganlab.metrics.attributes import AttributeNet
from ganlab.metrics.sampler import fixed_latents, generate
from ganlab.metrics.scores import DIRECTIONS, attribute_fidelity, fid_kid, memorisation


@dataclass
class Evaluation:
    metrics: dict[str, float]
    notes: dict[str, str]  # metric -> why it is unavailable
    samples: torch.Tensor  # the generated images, on the generator's device
    nearest: torch.Tensor  # (samples, 2): distance to the nearest training image, and its index


def evaluate_generator(G: nn.Module, real: torch.Tensor, samples: int, seed: int, attributes: AttributeNet | None = None,
                       fid_weights: str | None = None) -> Evaluation:
    """Score ``samples`` images from ``seed``'s latents against ``real``, on G's device.

    ``attributes``: the demo's attribute classifier (on G's device), or None where there are no
    labels. ``fid_weights``: None skips FID/KID (in-training evaluation), else the setting of
    ``evaluate.inception_weights``.
    """
    real = real.to(device_of(G)).float()
    fake = generate(G, fixed_latents(seed, G.latent_size, samples))
    metrics: dict[str, float] = {}
    notes: dict[str, str] = {}
    if attributes is not None:
        metrics.update(attribute_fidelity(attributes, fake, real))
    mem, table = memorisation(fake, real)
    metrics.update(mem)
    if fid_weights is not None:
        scores, reason = fid_kid(fake, real, fid_weights)
        metrics.update(scores)
        if reason:
            notes["fid"] = reason
    return Evaluation(metrics, notes, fake, table)


def improves(value: float | None, best: float | None, metric: str) -> bool:
    """Whether ``value`` of ``metric`` beats the best so far (a missing or non-finite value never does)."""
    if value is None or not math.isfinite(value):
        return False
    return best is None or (value < best if DIRECTIONS[metric] == "min" else value > best)
