"""The lecture's generator with resize-convolutions instead of transposed ones (Odena, Dumoulin and
Olah, "Deconvolution and Checkerboard Artifacts", Distill 2016).

Why: a 4 x 4 transposed convolution with stride 2 lets some output pixels receive twice the
kernel taps of their neighbours, which paints a checkerboard over every image until the weights
learn to cancel it, and a small set's short training rarely gets there (the lecture's G on 200
icons: a grid over every sample). Doubling the size by nearest-neighbour copying and then
convolving 3 x 3 gives every pixel the same taps, so no grid can appear. Everything else is the
lecture's: the widths, BatchNorm and ReLU, the tanh at the end; the D is the lecture's.
"""

from __future__ import annotations

import torch
from torch import nn

from ganlab.nets.dcgan import _num_blocks


class Generator(nn.Sequential):
    """Latent (N, L) or (N, L, 1, 1) -> image (N, 3, S, S) in [-1, 1]: the lecture's widths, each
    2x step a nearest upsampling and a 3 x 3 convolution."""

    def __init__(self, latent_size: int = 128, image_size: int = 128, width: int = 32):
        blocks = _num_blocks(image_size)
        chans = [width * 2 ** (blocks - 1 - i) for i in range(blocks)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(latent_size, chans[0], 4, 1, 0, bias=False),  # 1 x 1 -> 4 x 4: no overlap, no grid
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(True),
        ]
        for c_in, c_out in zip(chans, chans[1:]):
            layers += [
                nn.Upsample(scale_factor=2, mode="nearest"),
                nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(True),
            ]
        layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(chans[-1], 3, 3, 1, 1, bias=False), nn.Tanh()]
        super().__init__(*layers)
        self.latent_size = latent_size
        self.image_size = image_size
        self.width = width

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z.reshape(z.shape[0], self.latent_size, 1, 1))
