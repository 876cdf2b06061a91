"""A folder of class subfolders (the homework's "Class 1 = 100, Class 2 = 100"): ``prepare``
records each image's class, ``attributes`` trains a classifier of them from scratch, and the
evaluation reports the class mix of the samples (``attr_tv/class``, ``class_share/<name>``)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from ganlab import layout
from ganlab.data.dataset import to_tensor
from ganlab.data.folder import find_classes
from ganlab.io import checkpoint
from ganlab.metrics import attributes as classifier
from ganlab.metrics.attributes import metric_names
from ganlab.metrics.scores import attribute_fidelity
from stages import attributes, prepare
from tests.conftest import tiny

COLOURS = {"Class 1": (200, 40, 40), "Class 2": (40, 40, 200)}  # red and blue squares under noise


def squares(colour, n, seed, size=32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 30, (n, size, size, 3))
    return np.clip(np.array(colour)[None, None, None] + noise, 0, 255).astype(np.uint8)


def class_folder(root, per_class=20, loose=False):
    for i, (name, colour) in enumerate(COLOURS.items()):
        (root / name).mkdir(parents=True)
        for j, image in enumerate(squares(colour, per_class, seed=i)):
            Image.fromarray(image).save(root / name / f"{j:03d}.png")
    if loose:
        Image.fromarray(squares((0, 200, 0), 1, seed=9)[0]).save(root / "loose.png")
    return root


def test_classes_are_the_first_subfolders_of_every_image_or_none():
    files = [f"b/{i}.png" for i in range(4)] + [f"a/deeper/{i}.png" for i in range(5)]
    classes, why = find_classes(files)
    assert why == "" and classes == {"names": ["a", "b"], "labels": [1] * 4 + [0] * 5, "counts": [5, 4]}
    assert find_classes([f"{i}.png" for i in range(8)])[0] is None  # the demo's layout: images in the root
    assert find_classes(files + ["loose.png"])[0] is None
    assert "one subfolder" in find_classes([f"a/{i}.png" for i in range(8)])[1]
    none, why = find_classes(files + ["c/0.png"])  # a subfolder of one image is no class
    assert none is None and "c has 1 images" in why


def test_class_names_become_metric_keys():
    assert metric_names(["Class 1", "Class_1", "..", "chats.jpg", "été"]) == [
        "Class_1",
        "Class_1_2",
        "class2",
        "chats_jpg",
        "été",
    ]


@pytest.mark.slow
def test_a_folder_of_classes_gives_a_classifier_and_the_class_mix_of_the_samples(workdir, monkeypatch):
    monkeypatch.setattr(
        attributes, "CLASS_MIN_STEPS", 12
    )  # red against blue needs few; the shipped 100 steps cost 7 s on 2 cores
    params = tiny(prepare={"source": str(class_folder(workdir / "raw")), "image_size": 32})
    manifest = prepare.run(params)
    assert manifest["classes"] == {
        "attribute": "class",
        "names": ["Class 1", "Class 2"],
        "counts": [20, 20],
        "metric_keys": {"Class_1": "Class 1", "Class_2": "Class 2"},
    }
    data = checkpoint.load(layout.DATASET)
    assert data["label_names"] == {"class": ["Class 1", "Class 2"]}
    assert data["labels"]["class"].tolist() == [0 if f.startswith("Class 1/") else 1 for f in data["files"]]

    attributes.run(params)
    report = json.loads(layout.ATTRIBUTES_REPORT.read_text())
    assert report["available"] and report["heldout_accuracy"]["class"] >= 0.9, report
    net, why = classifier.load(layout.ATTRIBUTES, torch.device("cpu"))
    assert why == "" and net.names == {"class": ["Class 1", "Class 2"]}

    real = data["images"].float()
    held_out = to_tensor(np.concatenate([squares(c, 20, seed=10 + i) for i, c in enumerate(COLOURS.values())])).float()
    only_red = to_tensor(squares(COLOURS["Class 1"], 40, seed=20)).float()
    collapsed = attribute_fidelity(net, only_red, real)
    assert abs(collapsed["attr_tv/class"] - 0.5) < 0.1 and collapsed["attr_tv_mean"] == collapsed["attr_tv/class"]
    assert collapsed["class_share/Class_1"] > 0.9 and collapsed["class_share/Class_2"] < 0.1
    assert abs(collapsed["class_share_real/Class_1"] - 0.5) < 0.1
    fresh = attribute_fidelity(net, held_out, real)
    assert fresh["attr_tv/class"] < 0.1 and abs(fresh["class_share/Class_1"] - 0.5) < 0.1


def test_a_folder_without_classes_skips_the_classifier_saying_why(workdir):
    params = tiny(prepare={"source": str(class_folder(workdir / "raw", per_class=4, loose=True)), "image_size": 32})
    manifest = prepare.run(params)
    assert manifest["classes"] is None and "directly in the folder" in manifest["classes_note"]
    assert "labels" not in checkpoint.load(layout.DATASET)
    attributes.run(params)
    report = json.loads(layout.ATTRIBUTES_REPORT.read_text())
    assert not report["available"] and "directly in the folder" in report["reason"]
    assert classifier.load(layout.ATTRIBUTES, torch.device("cpu"))[0] is None
