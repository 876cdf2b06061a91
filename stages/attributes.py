"""Stage ``attributes``: the demo faces' attribute classifier, for evaluation; other data sets skip it, saying why."""

from __future__ import annotations

import json

from ganlab import layout
from ganlab.data.dataset import load_images
from ganlab.data.demo_faces import read_labels
from ganlab.device import resolve_device
from ganlab.io import checkpoint
from ganlab.io.atomic import write_text
from ganlab.metrics.attributes import fit
from ganlab.params import Params


def run(params: Params) -> None:
    if params.prepare.source != "demo":
        reason = "attribute metrics need the demo's labels; prepare.source is a folder"
        checkpoint.save({"available": False, "reason": reason}, layout.ATTRIBUTES)
        write_text(layout.ATTRIBUTES_REPORT, json.dumps({"available": False, "reason": reason}, indent=1))
        print(f"attributes: skipped ({reason})")
        return
    data = load_images(layout.DATASET)
    net, accuracy = fit(data["images"], read_labels(layout.DEMO_IMAGES, data["files"]), resolve_device(params.device))
    weights = {k: v.cpu() for k, v in net.state_dict().items()}
    checkpoint.save({"available": True, "weights": weights, "accuracy": accuracy}, layout.ATTRIBUTES)
    report = {"available": True, "heldout_accuracy": accuracy, "heldout_accuracy_mean": sum(accuracy.values()) / len(accuracy)}
    write_text(layout.ATTRIBUTES_REPORT, json.dumps(report, indent=1))
    print("attributes: held-out accuracy " + ", ".join(f"{a}={v:.2f}" for a, v in accuracy.items()))
