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
    """Losses, scores and (if recorded) the in-training metrics over kimg, as one PNG: a row of training
    panels above a row of quality panels."""
    import matplotlib  # optional heavy dependency: only this plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history_csv.is_file():
        raise UserError(f"{history_csv}: not found (run `gan train` first)")
    training = [  # what a person reads first: the losses, then what D says, then how hard it saw the reals
        (history_csv, ("loss_d", "loss_g"), "losses"),
        (history_csv, ("real_score", "fake_score"), "mean D(x) and D(G(z))"),
        (history_csv, ("augment_p", "r_t"), "augmentation p and D's sign on reals r_t"),
    ]
    quality = []
    if eval_csv.is_file() and list(csv.DictReader(open(eval_csv))):
        quality = [
            (eval_csv, ("swd_ratio", "fd_ratio"), "swd (pixels) and fd (ImageNet) over their floors"),
            (eval_csv, ("ndb", "ndb_floor"), "mode coverage: NDB and its floor"),
            (eval_csv, ("recall", "precision", "attr_tv_mean", "nn_ratio"), "in-training evaluation"),
        ]
    rows = [training, quality] if quality else [training]
    # one row of training, one of quality, 500 x 450 px a panel: 1500 x 900 fits a laptop's screen,
    # where one strip of six panels was 2700 px wide
    fig, axes = plt.subplots(len(rows), 3, figsize=(15, 4.5 * len(rows)), squeeze=False)
    for ax, (path, keys, title) in zip(axes.flat, [panel for row in rows for panel in row]):
        table = list(csv.DictReader(open(path)))
        for k in keys:
            if table and k in table[0]:
                ax.plot(
                    [float(r["kimg"]) for r in table],
                    [float(r[k] or "nan") for r in table],  # an empty cell: undefined, a gap in the line
                    label=k,
                    marker="." if path == eval_csv else None,
                )
        ax.set_title(title)
        ax.set_xlabel("kimg (thousands of real images shown to D)")
        ax.legend()
    fig.tight_layout()
    with atomic_path(out_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
