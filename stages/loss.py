"""The lecture's objective, written on logits.

D maximises log D(x) + log(1 - D(G(z))); G maximises log D(G(z)) (the non-saturating form
on the slides). With D(x) = sigmoid(logit), each term is a binary cross-entropy.
"""

import torch
import torch.nn.functional as F


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """-(mean log D(x) + mean log(1 - D(G(z)))): real labelled 1, fake labelled 0."""
    return F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits)) + F.binary_cross_entropy_with_logits(
        fake_logits, torch.zeros_like(fake_logits)
    )


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """-mean log D(G(z)): fake labelled 1."""
    return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
