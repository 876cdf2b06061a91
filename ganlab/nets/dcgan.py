"""The lecture's DCGAN generator and discriminator, generalised over image size.

Both are plain ``nn.Sequential`` stacks so that at 128 px with the default widths their
``state_dict`` keys and shapes are exactly those of the lecture's notebook cells: a weight
file moves between this project and the notebook unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ganlab.device import device_of

SUPPORTED_SIZES = (32, 64, 128, 256)


def _num_blocks(image_size: int) -> int:
    if image_size not in SUPPORTED_SIZES:
        raise ValueError(f"image size {image_size} is not one of {SUPPORTED_SIZES}")
    return int(math.log2(image_size // 4))


class Generator(nn.Sequential):
    """Latent (N, L) or (N, L, 1, 1) -> image (N, 3, S, S) in [-1, 1].

    Widths double from ``width`` at the last hidden layer towards the input, so 128 px with
    width 32 gives the lecture's 512-256-128-64-32.
    """

    def __init__(self, latent_size: int = 128, image_size: int = 128, width: int = 32):
        blocks = _num_blocks(image_size)
        chans = [width * 2 ** (blocks - 1 - i) for i in range(blocks)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_size, chans[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], 3, 4, 2, 1, bias=False), nn.Tanh()]
        super().__init__(*layers)
        self.latent_size = latent_size
        self.image_size = image_size
        self.width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z.reshape(z.shape[0], self.latent_size, 1, 1))


class Discriminator(nn.Sequential):
    """Image (N, 3, S, S) -> one logit per image, shape (N,).

    The lecture ends with a Sigmoid and uses BCE on probabilities; returning the logit and
    using BCE-with-logits is the same math, numerically stable, and allowed under autocast.
    ``torch.sigmoid(D(x))`` is the lecture's score.
    """

    def __init__(self, image_size: int = 128, width: int = 64, spectral_norm: bool = False):
        blocks = _num_blocks(image_size)
        chans = [width * 2**i for i in range(blocks)]
        layers: list[nn.Module] = []
        c_in = 3
        for c_out in chans:
            layers += [
                nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            c_in = c_out
        layers += [nn.Conv2d(c_in, 1, 4, 1, 0, bias=False), nn.Flatten()]
        if spectral_norm:  # Miyato et al. 2018: each conv's largest singular value kept at 1
            layers = [nn.utils.parametrizations.spectral_norm(m) if isinstance(m, nn.Conv2d) else m for m in layers]
        super().__init__(*layers)
        self.image_size = image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).reshape(-1)


def init_dcgan_(module: nn.Module) -> None:
    """DCGAN initialisation (Radford et al. 2015): conv weights N(0, 0.02), BN scale N(1, 0.02)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            parametrized = nn.utils.parametrize.is_parametrized(m, "weight")  # spectral norm
            nn.init.normal_(m.parametrizations.weight.original if parametrized else m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


@torch.no_grad()
def recalibrate_batchnorm(G: nn.Module, batches: int = 8, batch_size: int = 128, seed: int = 0) -> nn.Module:
    """Replace BN running statistics by an exact average over fresh latents, then set eval mode.

    Running statistics kept with momentum 0.1 during training lag behind a generator that
    moves every step; eval-mode images from them look washed out. Re-estimating them for the
    final weights makes one-latent-at-a-time sampling match the batch-statistics look.
    """
    bns = [m for m in G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:  # a generator without BatchNorm (r3gan) samples the same in either mode
        return G.eval()
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: exact mean over all batches
    G.train()
    cpu = torch.Generator().manual_seed(seed)  # the same latents on every machine
    for z in torch.randn(batches * batch_size, G.latent_size, generator=cpu).split(batch_size):
        G(z.to(device_of(G)))
    for m, momentum in zip(bns, saved):
        m.momentum = momentum
    return G.eval()
