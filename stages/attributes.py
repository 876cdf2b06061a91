"""Stage ``attributes``: a small classifier, trained from scratch on the real images, for evaluation:
of the demo faces' attributes (their labels), or of the classes of a folder of class subfolders
(the attribute ``class``, recorded by ``gan prepare``); other data sets skip it, saying why."""

from __future__ import annotations

import json

from ganlab import layout
from ganlab.data.dataset import dataset_sha, load_images
from ganlab.data.demo_faces import read_labels
from ganlab.device import resolve_device
from ganlab.io import checkpoint
from ganlab.io.atomic import write_text
from ganlab.metrics.attributes import demo_names, fit
from ganlab.params import Params

# a folder of a few hundred images is a few batches an epoch; the demo's 12 epochs are too few steps

CLASS_MIN_STEPS = 100


def _no_classes_note() -> str:
    try:
        return json.loads(layout.MANIFEST.read_text()).get("classes_note") or "no class subfolders"
    except (OSError, ValueError, AttributeError):
        return "no class subfolders"


def run(params: Params) -> None:
    data = load_images(layout.DATASET)
    sha = dataset_sha(layout.MANIFEST)  # the file says which data it is of: a stale one is never used
    if params.prepare.source == "demo":
        labels, names, min_steps = read_labels(layout.DEMO_IMAGES, data["files"]), demo_names(), 0
    elif data.get("labels"):
        labels = {a: v.numpy() for a, v in data["labels"].items()}
        names, min_steps = data["label_names"], CLASS_MIN_STEPS
    else:
        reason = f"attribute metrics need the demo's labels or class subfolders; prepare.source is a folder: {_no_classes_note()}"
        checkpoint.save({"available": False, "reason": reason, "dataset_sha256": sha}, layout.ATTRIBUTES)
        write_text(layout.ATTRIBUTES_REPORT, json.dumps({"available": False, "reason": reason}, indent=1))
        print(f"attributes: skipped ({reason})")
        return
    net, accuracy = fit(data["images"], labels, resolve_device(params.device), names=names, min_steps=min_steps)
    weights = {k: v.cpu() for k, v in net.state_dict().items()}
    checkpoint.save(
        {"available": True, "weights": weights, "accuracy": accuracy, "names": net.names, "dataset_sha256": sha},
        layout.ATTRIBUTES,
    )
    report = {
        "available": True,
        "heldout_accuracy": accuracy,
        "heldout_accuracy_mean": sum(accuracy.values()) / len(accuracy),
    }
    write_text(layout.ATTRIBUTES_REPORT, json.dumps(report, indent=1))
    print("attributes: held-out accuracy " + ", ".join(f"{a}={v:.2f}" for a, v in accuracy.items()))
