"""Stage ``evaluate``: how good is this run, in numbers, honestly.

Writes ``reports/metrics.json`` (for ``dvc metrics show/diff``), the same numbers to the
training run in MLflow (``final/...``, also on its logged generator), a picture of the samples
closest to training images, a static plot of the training curves, and a verdict in plain words.
"""

from __future__ import annotations

import json
import math

import torch

from ganlab import layout
from ganlab.data.dataset import dataset_sha, load_images
from ganlab.device import resolve_device
from ganlab.io import tracking
from ganlab.io.atomic import atomic_dir, refuse_link, write_text
from ganlab.metrics import attributes
from ganlab.metrics.evaluator import HEADLINE, Reference, evaluate_generator
from ganlab.metrics.features import FeatureNet, reference_features
from ganlab.metrics.sampler import load_generator
from ganlab.metrics.verdict import verdict
from ganlab.params import Params, flatten
from ganlab.render.annotate import save_captioned
from ganlab.render.grids import to_grid
from ganlab.render.plots import plot_curves


def closest_pairs(closest: torch.Tensor, real: torch.Tensor, nearest: torch.Tensor) -> torch.Tensor:
    """Top row: the samples closest to a training image (``closest``); bottom row: those training
    images (``nearest``: their indices)."""
    return to_grid(torch.cat([closest.cpu(), real[nearest.cpu()].float()]), nrow=len(closest))


def run(params: Params) -> dict[str, float]:
    e = params.evaluate
    refuse_link(layout.EVALUATE)  # before the evaluation's minutes, not after
    device = resolve_device(params.device)
    G, _ = load_generator(layout.CHECKPOINT, device, which=params.generator)
    real = load_images(layout.DATASET)["images"]
    sha = dataset_sha(layout.MANIFEST)
    net, why_not = attributes.load(layout.ATTRIBUTES, device, sha)
    feature_net = FeatureNet().to(device)
    reference = Reference(reference_features(feature_net, layout.FEATURES, real, sha))
    result = evaluate_generator(
        G, real, e.samples, e.seed, feature_net, reference, net, fid_weights=e.inception_weights if e.fid else None
    )
    metrics, notes = result.metrics, result.notes
    if not e.fid:
        notes["fid"] = "evaluate.fid is false"
    if net is None:
        notes["attributes"] = why_not
    else:
        metrics["classifier_heldout_accuracy_mean"] = json.loads(layout.ATTRIBUTES_REPORT.read_text())[
            "heldout_accuracy_mean"
        ]
    for key in ("fid", "inception_kid"):
        if key not in metrics:  # null, so that a table across experiments shows it missing; the reason: notes.json
            metrics[key] = None
    headline = {k: metrics[k] for k in HEADLINE if k in metrics}

    with atomic_dir(layout.EVALUATE) as out:
        caption = (
            f"the {len(result.closest)} of {result.count} samples nearest a training image (pixel RMS), each above it"
        )
        save_captioned(closest_pairs(result.closest, real, result.closest_real), caption, out / "closest_pairs.png")
        plot_curves(layout.HISTORY, layout.EVAL_HISTORY, out / "training_curves.png")
        write_text(out / "notes.json", json.dumps(notes, indent=1))
        write_text(out / "metrics_detail.json", _json(metrics))
    write_text(layout.METRICS, _json(headline))

    # MLflow groups metrics by the prefix before "/": the headline numbers come first, the rest under detail/
    numbers = {k if k in HEADLINE else f"detail/{k}": v for k, v in metrics.items() if isinstance(v, float)}
    with tracking.stage_run("evaluate", flatten(params, ("evaluate", "generator", "device"))) as mlrun:
        mlrun.log_metrics(numbers, {f"note.{k}": v for k, v in notes.items()})
        mlrun.log_final({k: v for k, v in headline.items() if isinstance(v, float)})
        mlrun.attach(layout.EVALUATE, "evaluate")
        mlrun.attach(layout.METRICS)
    for key, reason in notes.items():
        print(f"evaluate: {key}: {reason}")
    shown = {k: v for k, v in headline.items() if isinstance(v, float)}
    print(
        "evaluate: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()) + f" -> {layout.METRICS} "
        f"(everything: {layout.EVALUATE}/metrics_detail.json)"
    )
    side = (  # absent where there are too few images for an fd
        f"; both at {metrics['fd_samples']:.0f} images a side, the samples in {metrics['fd_chunks']:.0f} chunks"
        if "fd_samples" in metrics
        else ""
    )
    print(
        f"evaluate: fd {metrics['fd']:.4g} (floor {metrics['fd_floor']:.4g}, the same distance between two halves of the "
        f"training images{side}), precision {metrics['precision']:.2f}, recall {metrics['recall']:.2f}"
    )
    for line in verdict(metrics):
        print(f"evaluate: {line}")
    return metrics


def _json(metrics: dict[str, float | None]) -> str:
    """Strict JSON of numbers only: an undefined or unavailable one (a set too small to measure,
    FID offline) is null, which `dvc metrics show` leaves out, where a string would sit in a
    column of numbers; why it is missing is in notes.json."""

    def value(v: float | None) -> float | None:
        return round(v, 6) if v is not None and math.isfinite(v) else None

    return json.dumps({k: value(v) for k, v in metrics.items()}, indent=1, allow_nan=False)
