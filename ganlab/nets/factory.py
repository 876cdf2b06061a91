"""``model.discriminator`` by name: each choice builds its networks here, beside their classes, so a
new discriminator touches this table and nothing in the loop.

A builder constructs its discriminator and returns the step that initialises it and gives the
finished module. The two steps are apart so that the global random numbers are drawn in one fixed
order (G's layers, D's layers, G's init, D's init, then a second discriminator): a seed gives the
same weights on every run, and adding a choice changes none of the others."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ganlab.nets.dcgan import Discriminator, Generator, init_dcgan_
from ganlab.nets.projected import FeaturesAndPixels, ProjectedDiscriminator

Init = Callable[[], nn.Module]


def _dcgan(image_size: int, width: int, spectral: bool) -> Init:
    D = Discriminator(image_size, width, spectral)
    return lambda: init_dcgan_(D) or D


def _projected(image_size: int, width: int, spectral: bool, option: str = "projected", scales: int = 4) -> Init:
    # its heads are always spectrally normalised, as in the paper
    D = ProjectedDiscriminator(image_size, width, option, scales)
    return lambda: init_dcgan_(D.heads) or D  # the fixed random projections keep PyTorch's (variance-preserving) init


def _features_and_pixels(
    image_size: int, width: int, spectral: bool, option: str = "dcgan+projected", scales: int = 4
) -> Init:
    init_features = _projected(image_size, width, spectral, option, scales)

    def init() -> nn.Module:
        features = init_features()
        pixels = _dcgan(image_size, width, spectral)()  # built last: the other choices draw the same numbers as before
        return FeaturesAndPixels(features, pixels)

    return init


DISCRIMINATORS: dict[str, Callable[[int, int, bool], Init]] = {
    "dcgan": _dcgan,
    "projected": _projected,
    "dcgan+projected": _features_and_pixels,
    "dcgan+shallow": lambda size, width, spectral: _features_and_pixels(size, width, spectral, "dcgan+shallow", 2),
}


def networks(
    discriminator: str, latent_size: int, image_size: int, g_width: int, d_width: int, spectral: bool
) -> tuple[Generator, nn.Module]:
    """(G, D), initialised; seed the global generators first."""
    G = Generator(latent_size, image_size, g_width)
    init_d = DISCRIMINATORS[discriminator](image_size, d_width, spectral)
    init_dcgan_(G)
    return G, init_d()
