"""``model.discriminator`` by name: what D looks at, the pixels (``model.arch``'s own D,
``archs.py``), a frozen ImageNet network's features, or both. Each choice builds its networks
here, beside their classes, so a new one touches this table and nothing in the loop.

A builder constructs its discriminator and returns the step that initialises it and gives the
finished module. The two steps are apart so that the global random numbers are drawn in one fixed
order (G's layers, D's layers, G's init, D's init, then a second discriminator): a seed gives the
same weights on every run, and adding a choice changes none of the others."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ganlab.nets import dcgan
from ganlab.nets.archs import ARCHS, Arch, Init
from ganlab.nets.projected import FeaturesAndPixels, ProjectedDiscriminator


def _projected(
    arch: Arch, image_size: int, width: int, spectral: bool, option: str = "projected", scales: int = 4
) -> Init:
    # its heads are always spectrally normalised, as in the paper
    D = ProjectedDiscriminator(image_size, width, option, scales)
    return lambda: (
        dcgan.init_dcgan_(D.heads) or D
    )  # the fixed random projections keep PyTorch's (variance-preserving) init


def _features_and_pixels(
    arch: Arch, image_size: int, width: int, spectral: bool, option: str = "dcgan+projected", scales: int = 4
) -> Init:
    init_features = _projected(arch, image_size, width, spectral, option, scales)

    def init() -> nn.Module:
        features = init_features()
        pixels = arch.pixels(
            image_size, width, spectral
        )()  # built last: the other choices draw the same numbers as before
        return FeaturesAndPixels(features, pixels)

    return init


DISCRIMINATORS: dict[str, Callable[[Arch, int, int, bool], Init]] = {
    "dcgan": lambda arch, size, width, spectral: arch.pixels(size, width, spectral),
    "projected": _projected,
    "dcgan+projected": _features_and_pixels,
    "dcgan+shallow": lambda arch, size, width, spectral: _features_and_pixels(
        arch, size, width, spectral, "dcgan+shallow", 2
    ),
}


def networks(
    arch: str, discriminator: str, latent_size: int, image_size: int, g_width: int, d_width: int, spectral: bool
) -> tuple[nn.Module, nn.Module]:
    """(G, D), initialised; seed the global generators first."""
    a = ARCHS[arch]
    G = a.generator(latent_size, image_size, g_width)
    init_d = DISCRIMINATORS[discriminator](a, image_size, d_width, spectral)
    a.init_generator(G)
    return G, init_d()
