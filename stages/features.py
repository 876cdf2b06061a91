"""Stage ``features``: the training images in ImageNet features (EfficientNet-Lite1), computed
once for every in-training evaluation and for ``gan evaluate``."""

from __future__ import annotations

from ganlab import layout
from ganlab.data.dataset import dataset_sha, load_images
from ganlab.device import resolve_device
from ganlab.io import checkpoint
from ganlab.metrics.features import INPUT_SIZE, NAME, FeatureNet, features
from ganlab.params import Params


def run(params: Params) -> None:
    net = FeatureNet().to(resolve_device(params.device))
    real = load_images(layout.DATASET)["images"]
    f = features(net, real).float().cpu()
    sha = dataset_sha(layout.MANIFEST)
    checkpoint.save({"features": f, "network": NAME, "input_size": INPUT_SIZE, "dataset_sha256": sha}, layout.FEATURES)
    print(f"features: {len(f)} training images -> {f.shape[1]} {NAME} features each -> {layout.FEATURES}")
