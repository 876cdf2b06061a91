"""The objectives, written on logits: the lecture's, the hinge, and R3GAN's relativistic pairing.

The lecture's: D maximises log D(x) + log(1 - D(G(z))); G maximises log D(G(z)) (the
non-saturating form on the slides). With D(x) = sigmoid(logit), each term is a binary
cross-entropy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ganlab.nets.archs import ARCHS
from ganlab.params import TrainParams


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-(mean log D(x) + mean log(1 - D(G(z)))): real labelled 1, fake labelled 0."""
    return F.binary_cross_entropy_with_logits(
        real_logits, torch.ones_like(real_logits)
    ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))


def generator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """-mean log D(G(z)): fake labelled 1."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))


def hinge_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Geometric GAN / SAGAN hinge: mean relu(1 - D(x)) + mean relu(1 + D(G(z)))."""
    return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()


def hinge_generator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    return -fake_logits.mean()


def rpgan_discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Relativistic pairing (Jolicoeur-Martineau 2018; R3GAN, Huang et al. 2024): D scores each real
    above the fake it is paired with, mean softplus(D(G(z)) - D(x)). A critic that judges pairs cannot
    push all fakes to one corner while ignoring the reals, which is how the lecture's loss lets G drop
    modes; with R1 and R2 (below) R3GAN proves the game locally convergent."""
    return F.softplus(fake_logits - real_logits).mean()


def rpgan_generator_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor | None = None) -> torch.Tensor:
    """G's side of the pair: mean softplus(D(x) - D(G(z))); it needs D's scores of the reals too."""
    assert real_logits is not None, "the pairing loss pairs each fake with a real"
    return F.softplus(real_logits - fake_logits).mean()


@dataclass(frozen=True)
class Loss:
    d: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (real logits, fake logits) -> D's loss
    g: Callable[..., torch.Tensor]  # (fake logits, real logits or None) -> G's loss
    pairs: bool = False  # G's loss reads D's scores of a batch of reals too


LOSSES = {
    "bce": Loss(discriminator_loss, generator_loss),
    "hinge": Loss(hinge_discriminator_loss, hinge_generator_loss),
    "rpgan": Loss(rpgan_discriminator_loss, rpgan_generator_loss, pairs=True),
}


def gradient_penalty(logits: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Mean over images of ||dD(x)/dx||^2; ``images`` must require grad and ``logits`` be computed
    from them. On reals it is R1 (Mescheder et al. 2018), on fakes R2: both zero-centred, so D is
    pushed towards a flat surface wherever the data or G's images lie."""
    (grad,) = torch.autograd.grad(logits.sum(), images, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3)).mean()


def objective(arch: str, t: TrainParams) -> tuple[Loss, float, float]:
    """(the loss, R1's weight, R2's weight) a run trains with: ``train.loss``, ``train.r1_gamma`` and
    ``train.r2_gamma`` where set, else ``model.arch``'s own recipe."""
    a = ARCHS[arch]
    return (
        LOSSES[t.loss or a.loss],
        a.gamma if t.r1_gamma is None else t.r1_gamma,
        a.gamma if t.r2_gamma is None else t.r2_gamma,
    )
