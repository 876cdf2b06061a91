"""Stage ``evaluate``: how good is this run, in numbers, honestly.

Writes ``reports/metrics.json`` (for ``dvc metrics show/diff``), the same numbers to the
training run in MLflow, a picture of the samples closest to training images, and a static
plot of the training curves (``dvc plots show`` needs the internet to render).
"""

from __future__ import annotations

import csv
import json
import shutil

import torch

from stages import attributes, checkpoint, layout, tracking
from stages.atomic import atomic_path, write_text
from stages.metrics import attribute_fidelity, fid_kid, memorisation
from stages.params import Params
from stages.sampling import fixed_latents, save_png, to_grid


@torch.inference_mode()
def generate(G, count: int, seed: int, batch: int = 250) -> torch.Tensor:
    z = fixed_latents(seed, G.latent_size, count)
    return torch.cat([G(chunk) for chunk in z.split(batch)])


def evaluate_generator(G, real: torch.Tensor, params: Params, net) -> tuple[dict[str, float], dict[str, str], torch.Tensor, torch.Tensor]:
    """The metrics, notes on the ones that are unavailable, the samples and their nearest-neighbour table."""
    e = params.evaluate
    fake = generate(G, e.samples, e.seed)
    metrics, notes = {}, {}
    if net is not None:
        metrics.update(attribute_fidelity(net, fake, real))
    mem, table = memorisation(fake, real)
    metrics.update(mem)
    if e.fid:
        scores, reason = fid_kid(fake, real, e.inception_weights)
        metrics.update(scores)
        if reason:
            notes["fid"] = reason
    else:
        notes["fid"] = "evaluate.fid is false"
    return metrics, notes, fake, table


def closest_pairs(fake: torch.Tensor, real: torch.Tensor, table: torch.Tensor, n: int = 8) -> torch.Tensor:
    """Top row: the n samples closest to a training image; bottom row: those training images."""
    order = table[:, 0].argsort()[:n]
    top, bottom = fake[order], real[table[order, 1].long()]
    return to_grid(torch.cat([top, bottom.float()]), nrow=len(order))


def plot_curves(history_csv, eval_csv, out_path) -> None:
    """Losses, scores, speed and (if recorded) the in-training metrics over epochs, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(history_csv, ("loss_d", "loss_g"), "losses"), (history_csv, ("real_score", "fake_score"), "mean D(x) and D(G(z))"),
              (history_csv, ("images_per_s",), "training images/s")]
    if eval_csv.is_file() and list(csv.DictReader(open(eval_csv))):
        panels.append((eval_csv, ("attr_tv_mean", "nn_ratio", "copy_share"), "in-training evaluation"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (path, keys, title) in zip(axes, panels):
        rows = list(csv.DictReader(open(path)))
        for k in keys:
            if rows and k in rows[0]:
                ax.plot([int(r["epoch"]) for r in rows], [float(r[k]) for r in rows], label=k, marker="." if path == eval_csv else None)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def run(params: Params) -> dict[str, float]:
    G = checkpoint.load_generator(layout.CHECKPOINT, which=params.generator)
    real = checkpoint.load(layout.DATASET)["images"]
    net, why_not = attributes.load()
    metrics, notes, fake, table = evaluate_generator(G, real, params, net)
    if net is None:
        notes["attributes"] = why_not
    else:
        metrics["classifier_heldout_accuracy_mean"] = json.loads(layout.ATTRIBUTES_REPORT.read_text())["heldout_accuracy_mean"]

    shutil.rmtree(layout.EVALUATE, ignore_errors=True)
    save_png(closest_pairs(fake, real, table), layout.EVALUATE / "closest_pairs.png")
    plot_curves(layout.HISTORY, layout.EVAL_HISTORY, layout.EVALUATE / "training_curves.png")
    write_text(layout.EVALUATE / "notes.json", json.dumps(notes, indent=1))
    write_text(layout.METRICS, json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=1))

    tracking.log_to_run({k.replace("/", "."): v for k, v in metrics.items()}, {f"unavailable.{k}": v for k, v in notes.items()})
    tracking.attach(layout.EVALUATE, "evaluate")
    tracking.attach(layout.METRICS)
    for key, reason in notes.items():
        print(f"evaluate: {key} unavailable: {reason}")
    shown = {k: v for k, v in metrics.items() if "/" not in k}
    print("evaluate: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items()) + f" -> {layout.METRICS}")
    return metrics
