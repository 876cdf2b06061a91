"""Stage ``attributes``: a small classifier of the demo faces' attributes, trained on their labels.

It turns "do the samples look like the data?" into numbers for the demo data set: how the
attribute mix of generated faces differs from the training faces, and how often the
classifier can tell what a generated face is. Data sets without labels skip it, saying why.
"""

from __future__ import annotations

import csv
import json

import torch
import torch.nn.functional as F
from torch import nn

from stages import checkpoint, layout
from stages.atomic import write_text
from stages.demo_faces import ATTRIBUTES
from stages.hardware import autocast_for
from stages.params import Params

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


def read_labels(files: list[str]) -> dict[str, torch.Tensor]:
    """Class indices per attribute, in the dataset's row order."""
    with open(layout.DEMO_IMAGES / "labels.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    return {a: torch.tensor([values.index(rows[fn][a]) for fn in files]) for a, values in ATTRIBUTES.items()}


def fit(images: torch.Tensor, labels: dict[str, torch.Tensor], seed: int = 0, epochs: int = 12, holdout: float = 0.2
        ) -> tuple[AttributeNet, dict[str, float]]:
    """Train on (1 - holdout) of the images; return the net and its held-out accuracy per attribute."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(images), generator=g)
    n_test = max(1, int(len(images) * holdout))
    test, train = perm[:n_test], perm[n_test:]
    torch.manual_seed(seed)
    net = AttributeNet({a: len(v) for a, v in ATTRIBUTES.items()})
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    autocast = autocast_for(torch.device("cpu"), True)
    for _ in range(epochs):
        net.train()
        for idx in train[torch.randperm(len(train), generator=g)].split(64):
            with autocast():
                out = net(images[idx].float())
                loss = sum(F.cross_entropy(out[a].float(), labels[a][idx]) for a in out)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    probs = predict(net, images[test])
    accuracy = {a: float((p.argmax(1) == labels[a][test]).float().mean()) for a, p in probs.items()}
    return net, accuracy


@torch.inference_mode()
def predict(net: AttributeNet, images: torch.Tensor, batch: int = 256) -> dict[str, torch.Tensor]:
    net.eval()
    outs = [net(chunk.float()) for chunk in images.split(batch)]
    return {a: torch.cat([o[a] for o in outs]).float().softmax(1) for a in net.heads}


def load(path=layout.ATTRIBUTES) -> tuple[AttributeNet | None, str]:
    """The classifier, or None and the reason it is not available."""
    if not path.is_file():
        return None, f"no {path} (run `gan attributes`)"
    state = checkpoint.load(path)
    if not state.get("available"):
        return None, state.get("reason", "no attribute classifier")
    net = AttributeNet({a: len(v) for a, v in ATTRIBUTES.items()})
    net.load_state_dict(state["weights"])
    return net.eval(), ""


def run(params: Params) -> None:
    if params.prepare.source != "demo":
        reason = "attribute metrics need the demo's labels; prepare.source is a folder"
        checkpoint.save({"available": False, "reason": reason}, layout.ATTRIBUTES)
        write_text(layout.ATTRIBUTES_REPORT, json.dumps({"available": False, "reason": reason}, indent=1))
        print(f"attributes: skipped ({reason})")
        return
    data = checkpoint.load(layout.DATASET)
    net, accuracy = fit(data["images"], read_labels(data["files"]))
    checkpoint.save({"available": True, "weights": net.state_dict(), "accuracy": accuracy}, layout.ATTRIBUTES)
    report = {"available": True, "heldout_accuracy": accuracy, "heldout_accuracy_mean": sum(accuracy.values()) / len(accuracy)}
    write_text(layout.ATTRIBUTES_REPORT, json.dumps(report, indent=1))
    print("attributes: held-out accuracy " + ", ".join(f"{a}={v:.2f}" for a, v in accuracy.items()))
