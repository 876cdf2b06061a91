"""A static PNG of the training curves, inside the evaluate stage's outputs and its MLflow run
(``gan plots`` renders DVC's interactive page offline; ``dvc plots show``'s own needs the web).

Only what the training computed is drawn (not its speed), so the same run gives the same bytes;
images/s is in MLflow and in ``reports/train/timing.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ganlab.errors import UserError
from ganlab.io.atomic import atomic_path


def plot_curves(history_csv: Path, eval_csv: Path, out_path: Path) -> None:
    """Losses, scores and (if recorded) the in-training metrics over kimg, as one PNG."""
    import matplotlib  # optional heavy dependency: only this plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history_csv.is_file():
        raise UserError(f"{history_csv}: not found (run `gan train` first)")
    panels = [
        (history_csv, ("loss_d", "loss_g"), "losses"),
        (history_csv, ("real_score", "fake_score"), "mean D(x) and D(G(z))"),
        (history_csv, ("augment_p", "r_t"), "augmentation p and D's sign on reals r_t"),
    ]
    if eval_csv.is_file() and list(csv.DictReader(open(eval_csv))):
        panels.append((eval_csv, ("swd_ratio", "fd_ratio"), "swd (pixels) and fd (ImageNet) over their floors"))
        panels.append((eval_csv, ("ndb", "ndb_floor"), "mode coverage: NDB and its floor"))
        panels.append((eval_csv, ("recall", "precision", "attr_tv_mean", "nn_ratio"), "in-training evaluation"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (path, keys, title) in zip(axes, panels):
        rows = list(csv.DictReader(open(path)))
        for k in keys:
            if rows and k in rows[0]:
                ax.plot(
                    [float(r["kimg"]) for r in rows],
                    [float(r[k] or "nan") for r in rows],  # an empty cell: undefined, a gap in the line
                    label=k,
                    marker="." if path == eval_csv else None,
                )
        ax.set_title(title)
        ax.set_xlabel("kimg (thousands of real images shown to D)")
        ax.legend()
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
