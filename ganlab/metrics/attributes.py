"""A small classifier of labelled attributes, trained from scratch on the real images: the demo
faces' attributes (their labels.csv), or the one attribute ``class`` of a folder of class
subfolders (``gan prepare`` records each image's first subfolder).

It turns "do the samples look like the data?" into numbers: how the attribute (or class) mix
of generated images differs from the training images, and how often the classifier can tell
what a generated image is. Labels come in as {attribute: class index per image}, whatever
their source, with the names of each attribute's classes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganlab.data.demo_faces import ATTRIBUTES
from ganlab.device import autocast_for, device_of
from ganlab.io import checkpoint
from ganlab.names import metric_names  # noqa: F401 - where scores.py takes it from

SIZE = 64  # the classifier looks at every data set at 64 px


class AttributeNet(nn.Module):
    def __init__(self, heads: dict[str, int], names: dict[str, list[str]] | None = None):
        super().__init__()
        self.names = names or {}  # attribute -> the names of its classes (not in the state_dict)
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


def demo_names() -> dict[str, list[str]]:
    return {a: list(v) for a, v in ATTRIBUTES.items()}


def new_net(names: dict[str, Sequence[str]] | None = None) -> AttributeNet:
    """A net with one head per attribute, as many outputs as it has classes (default: the demo's attributes)."""
    names = {a: list(v) for a, v in names.items()} if names is not None else demo_names()
    return AttributeNet({a: len(v) for a, v in names.items()}, names)


def fit(
    images: torch.Tensor,
    labels: dict[str, np.ndarray],
    device: torch.device,
    seed: int = 0,
    epochs: int = 12,
    holdout: float = 0.2,
    names: dict[str, Sequence[str]] | None = None,
    min_steps: int = 0,
) -> tuple[AttributeNet, dict[str, float]]:
    """Train on (1 - holdout) of the images; return the net (on ``device``) and its held-out accuracy per attribute.

    ``labels``: {attribute: class index per image}; ``names``: {attribute: its class names} (default:
    the demo's). ``min_steps``: train for more epochs where ``epochs`` would take fewer steps (a
    small folder of a few hundred images is one to four batches an epoch)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(images), generator=g)
    n_test = max(1, int(len(images) * holdout))
    test, train = perm[:n_test], perm[n_test:]
    epochs = max(epochs, math.ceil(min_steps / max(1, math.ceil(len(train) / 64))))
    torch.manual_seed(seed)
    net = new_net(names).to(device)
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


STALE = "was made for another data set"


def load(path: Path, device: torch.device, dataset_sha: str | None = None) -> tuple[AttributeNet | None, str]:
    """The classifier on ``device``, or None and the reason it is not available. ``dataset_sha``:
    the prepared data's; a classifier of other data is not used (the demo's, left from an earlier
    prepare, scored a folder of photos by hair colour: an ``attr_tv_mean`` that meant nothing)."""
    if not path.is_file():
        return None, f"no {path} (run `gan attributes`)"
    rebuild = "rebuild it with `gan attributes` (or `dvc repro`)"
    state = checkpoint.require(checkpoint.load(path), path, ("available",), rebuild)
    if dataset_sha is not None and state.get("dataset_sha256") != dataset_sha:
        return None, f"{path} {STALE} than data/prepared/ holds (run `gan attributes`)"
    if not state.get("available"):
        return None, state.get("reason", "no attribute classifier")
    net = new_net(state.get("names"))  # a classifier saved before the names were: the demo's
    checkpoint.load_weights(net, checkpoint.require(state, path, ("weights",), rebuild)["weights"], path, rebuild)
    return net.to(device).eval(), ""
