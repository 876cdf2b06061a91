"""Stage ``features``: the training images in ImageNet features (EfficientNet-Lite1), computed
once for every in-training evaluation and for ``gan evaluate``."""

from __future__ import annotations

import json

from ganlab import layout
from ganlab.data.dataset import load_images
from ganlab.device import resolve_device
from ganlab.io import checkpoint
from ganlab.metrics.features import INPUT_SIZE, NAME, FeatureNet, features
from ganlab.params import Params


def run(params: Params) -> None:
    net = FeatureNet().to(resolve_device(params.device))
    real = load_images(layout.DATASET)["images"]
    f = features(net, real).float().cpu()
    dataset_sha = json.loads(layout.MANIFEST.read_text())["dataset_sha256"]
    checkpoint.save({"features": f, "network": NAME, "input_size": INPUT_SIZE, "dataset_sha256": dataset_sha}, layout.FEATURES)
    print(f"features: {len(f)} training images -> {f.shape[1]} {NAME} features each -> {layout.FEATURES}")
