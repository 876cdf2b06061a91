"""A small classifier of the demo faces' attributes, trained on their labels.

It turns "do the samples look like the data?" into numbers for the demo data set: how the
attribute mix of generated faces differs from the training faces, and how often the
classifier can tell what a generated face is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganlab.data.demo_faces import ATTRIBUTES
from ganlab.device import autocast_for, device_of
from ganlab.io import checkpoint

SIZE = 64  # the classifier looks at every data set at 64 px


class AttributeNet(nn.Module):
    def __init__(self, heads: dict[str, int]):
        super().__init__()
        chans, layers, c_in = (32, 64, 128, 256), [], 3
        for c in chans:
            layers += [nn.Conv2d(c_in, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(True)]
            c_in = c
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleDict({name: nn.Linear(c_in, k) for name, k in heads.items()})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-1] != SIZE:
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
        features = self.body(x)
        return {name: head(features) for name, head in self.heads.items()}


def new_net() -> AttributeNet:
    return AttributeNet({a: len(v) for a, v in ATTRIBUTES.items()})


def fit(images: torch.Tensor, labels: dict[str, np.ndarray], device: torch.device, seed: int = 0, epochs: int = 12,
        holdout: float = 0.2) -> tuple[AttributeNet, dict[str, float]]:
    """Train on (1 - holdout) of the images; return the net (on ``device``) and its held-out accuracy per attribute."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(images), generator=g)
    n_test = max(1, int(len(images) * holdout))
    test, train = perm[:n_test], perm[n_test:]
    torch.manual_seed(seed)
    net = new_net().to(device)
    targets = {a: torch.as_tensor(v).to(device) for a, v in labels.items()}
    images = images.to(device)
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    autocast = autocast_for(device, True)
    for _ in range(epochs):
        net.train()
        for idx in train[torch.randperm(len(train), generator=g)].split(64):
            idx = idx.to(device)
            with autocast():
                out = net(images[idx].float())
                loss = sum(F.cross_entropy(out[a].float(), targets[a][idx]) for a in out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    probs = predict(net, images[test.to(device)])
    accuracy = {a: float((p.argmax(1) == targets[a][test.to(device)]).float().mean()) for a, p in probs.items()}
    return net, accuracy


@torch.inference_mode()
def predict(net: AttributeNet, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
    """Class probabilities per attribute, on the net's device."""
    net.eval()
    outs = [net(chunk.to(device_of(net)).float()) for chunk in images.split(batch)]
    return {a: torch.cat([o[a] for o in outs]).float().softmax(1) for a in net.heads}


def load(path: Path, device: torch.device) -> tuple[AttributeNet | None, str]:
    """The classifier on ``device``, or None and the reason it is not available."""
    if not path.is_file():
        return None, f"no {path} (run `gan attributes`)"
    rebuild = "rebuild it with `gan attributes` (or `dvc repro`)"
    state = checkpoint.require(checkpoint.load(path), path, ("available",), rebuild)
    if not state.get("available"):
        return None, state.get("reason", "no attribute classifier")
    net = new_net()
    checkpoint.load_weights(net, checkpoint.require(state, path, ("weights",), rebuild)["weights"], path, rebuild)
    return net.to(device).eval(), ""
