"""Quality against CPU minutes, per set and model, from sweep runs: the table and plots of
docs/quality_minutes.md.

    python scripts/minutes_panel.py table OUT/NAME/SET ...          # Markdown: the panel at each mark
    python scripts/minutes_panel.py plot PNG_PREFIX OUT/NAME/SET ...  # one PNG per set

A run is a folder ``scripts/sweep.py`` made, trained with ``train.minutes`` (one thread per run, so
wall time is CPU time) and in-training evaluations every few minutes. Each evaluation is placed at
the wall time training had reached there (``timing.csv``: seconds at every tick, interpolated in
kimg), evaluations and grids included, as a user's budget counts them.

At each mark (5, 10, 30 and 60 minutes) a run contributes what a run of that budget keeps: the
generator that ``ganlab.training.best.pick_best`` picks among its evaluations up to the mark, the
rule training keeps its best generator by. A mark past a run's last evaluation takes nothing from
it. The plots show every evaluation of every seed (thin) and the mean over seeds (thick) at each
run's evaluation times interpolated onto a common grid of minutes.
"""

from __future__ import annotations

import csv
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml

from ganlab.training.best import PANEL, pick_best

MARKS = (5, 10, 30, 60)
COLUMNS = ("swd", "ndb", "precision", "recall", "fd_ratio")
DIGITS = {"swd": 1, "ndb": 2, "precision": 2, "recall": 3, "fd_ratio": 2, "kimg": 0}
NEAR = (0.6, 1.15)  # a mark takes the evaluations up to 15% past it, and none if the last is 40% short of it


def _floats(row: dict) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def read_run(run: Path) -> dict:
    """A run's identity and its evaluations, each with the minutes of wall time it was reached at."""
    params = yaml.safe_load((run / "params.yaml").read_text())
    rows = [_floats(r) for r in csv.DictReader((run / "reports/train/eval_history.csv").open())]
    timing = [_floats(r) for r in csv.DictReader((run / "reports/train/timing.csv").open())]
    kimg = [0.0] + [t["kimg"] for t in timing]
    seconds = [0.0] + [t["seconds"] for t in timing]
    for r in rows:
        r["minutes"] = float(np.interp(r["kimg"], kimg, seconds)) / 60
    source = params["prepare"]["source"]
    model = params["model"].get("arch", "dcgan")
    if params["model"]["discriminator"] != "dcgan":
        model += "+" + params["model"]["discriminator"]
    return {
        "set": Path(source).name if source != "demo" else "demo",
        "model": model,
        "seed": params["train"]["seed"],
        "rows": rows,
    }


def at_mark(run: dict, minutes: float) -> dict[str, float] | None:
    """The evaluation a run of ``minutes`` keeps: the training's pick among those up to the mark."""
    rows = [r for r in run["rows"] if r["minutes"] <= minutes * NEAR[1]]
    if not rows or rows[-1]["minutes"] < minutes * NEAR[0]:
        return None  # the run did not reach the mark
    pick = pick_best(rows, PANEL)
    return None if pick is None else {**rows[pick], "reached": rows[-1]["minutes"]}


def _spread(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def table(runs: list[dict]) -> str:
    head = "| set | model | minutes (last evaluation) | seeds | kimg kept | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["set"], r["model"]), []).append(r)
    for (name, model), rs in groups.items():
        for mark in MARKS:
            picks = [p for p in (at_mark(r, mark) for r in rs) if p is not None]
            if not picks:
                continue
            cells = [_spread([p[k] for p in picks], DIGITS[k]) for k in ("kimg", *COLUMNS)]
            reached = statistics.fmean(p["reached"] for p in picks)
            lines.append(f"| {name} | {model} | {mark} ({reached:.1f}) | {len(picks)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(prefix: str, runs: list[dict]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in runs))
    colours = {m: f"C{i}" for i, m in enumerate(models)}
    written = []
    for name in dict.fromkeys(r["set"] for r in runs):
        fig, axes = plt.subplots(1, len(COLUMNS), figsize=(4 * len(COLUMNS), 3.4))
        for ax, key in zip(axes, COLUMNS):
            for model in models:
                rs = [r for r in runs if r["set"] == name and r["model"] == model]
                if not rs:
                    continue
                for r in rs:
                    ax.plot(
                        [x["minutes"] for x in r["rows"]],
                        [x[key] for x in r["rows"]],
                        color=colours[model],
                        lw=0.6,
                        alpha=0.5,
                    )
                end = min(r["rows"][-1]["minutes"] for r in rs)
                grid = np.linspace(min(r["rows"][0]["minutes"] for r in rs), end, 40)
                mean = np.mean(
                    [np.interp(grid, [x["minutes"] for x in r["rows"]], [x[key] for x in r["rows"]]) for r in rs],
                    axis=0,
                )
                ax.plot(grid, mean, color=colours[model], lw=2, label=f"{model}, {len(rs)} seeds")
            ax.set(
                title=key + (" (lower is better)" if key in ("swd", "ndb", "fd_ratio") else " (higher is better)"),
                xlabel="CPU minutes (one thread)",
            )
            ax.set_xscale("log")
            ax.set_xticks([1, 2, 5, 10, 30, 60], ["1", "2", "5", "10", "30", "60"])
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{name}: quality against CPU minutes", fontsize=11)
        fig.tight_layout()
        path = f"{prefix}{name}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def main(argv: list[str]) -> None:
    what, rest = argv[0], argv[1:]
    if what == "table":
        print(table([read_run(Path(a)) for a in rest]))
    elif what == "plot":
        for path in plot(rest[0], [read_run(Path(a)) for a in rest[1:]]):
            print(path)
    else:
        sys.exit("usage: minutes_panel.py table RUN ... | plot PNG_PREFIX RUN ...")


if __name__ == "__main__":
    main(sys.argv[1:])
