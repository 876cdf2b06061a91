"""``model.arch`` by name: a generator, the discriminator that looks at pixels, and the recipe they
train with (the loss and its gradient penalties, which ``train.loss`` and ``train.r1_gamma`` /
``r2_gamma`` override when set). Apart from ``factory.py`` so that the stages that only draw
images (sample, latent-study, evaluate) rebuild a generator without importing the ImageNet
network of the projected discriminators."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ganlab.nets import dcgan, r3gan, resize

Init = Callable[[], nn.Module]


@dataclass(frozen=True)
class Arch:
    generator: Callable[[int, int, int], nn.Module]  # (latent size, image size, width) -> G, uninitialised
    init_generator: Callable[[nn.Module], None]
    pixels: Callable[[int, int, bool], Init]  # (image size, width, spectral norm) -> D's init step
    loss: str  # training/loss.py's LOSSES
    gamma: float  # R1 and R2 weight


def _dcgan_pixels(image_size: int, width: int, spectral: bool) -> Init:
    D = dcgan.Discriminator(image_size, width, spectral)
    return lambda: dcgan.init_dcgan_(D) or D


def _r3gan_pixels(image_size: int, width: int, spectral: bool) -> Init:
    if spectral:
        raise ValueError("model.d_spectral_norm applies to the dcgan D only (r3gan's D is regularised by R1 and R2)")
    D = r3gan.Discriminator(image_size, width)
    return lambda: D.init_() or D


ARCHS: dict[str, Arch] = {
    "dcgan": Arch(dcgan.Generator, dcgan.init_dcgan_, _dcgan_pixels, loss="bce", gamma=0.0),
    "resize": Arch(resize.Generator, dcgan.init_dcgan_, _dcgan_pixels, loss="rpgan", gamma=0.05),
    "r3gan": Arch(r3gan.Generator, lambda G: G.init_(), _r3gan_pixels, loss="rpgan", gamma=0.05),
}


def generator_for(model: dict[str, Any]) -> nn.Module:
    """The (uninitialised) generator a checkpoint's ``model`` describes; checkpoints from before
    ``model.arch`` existed hold the lecture's."""
    return ARCHS[model.get("arch", "dcgan")].generator(model["latent_size"], model["image_size"], model["g_width"])
