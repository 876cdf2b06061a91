"""The quality table of docs/quality_panel.md from sweep runs: each run's pick by the training's own
rule, then the mean and spread over seeds per set and discriminator.

    python scripts/panel_table.py OUT/NAME/SET ...                    # runs from scripts/sweep.py
    python scripts/panel_table.py --scores scores.jsonl OUT/NAME/SET ...

A run is a folder ``scripts/sweep.py`` made: its ``params.yaml`` (set, D, seed), its
``reports/train/eval_history.csv`` (the panel at every in-training evaluation) and ``timing.csv``
(training seconds). Runs trained before the panel was in every evaluation were scored afterwards;
``--scores`` takes those rows (JSON lines ``{"run": ".../NAME/SET", "rows": [...]}``), used where a
run's own history has no ``swd``. The pick is ``ganlab.training.best.pick_best`` over the rows, the
rule training keeps its best generator by, so the table shows what a user's run would have kept.

Prints two Markdown tables: one row per run (swd with its spread over random halves), then one per
(set, D) with mean +- standard deviation over its seeds. "CPU min" is training wall time: the sweeps run one thread per run, so it is CPU time.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import sys
from pathlib import Path

import yaml

from ganlab.training.best import PANEL, pick_best

COLUMNS = ("fd_ratio", "swd", "swd_ratio", "swd_16px", "ndb", "precision", "recall", "copy_share")


def _floats(row: dict) -> dict[str, float]:
    out = {}
    for k, v in row.items():
        try:
            out[k] = float(v)
        except (TypeError, ValueError):
            continue
    return out


USAGE = "usage:\n" + "\n".join(line for line in __doc__.splitlines() if line.lstrip().startswith("python scripts/"))


def run_row(run: Path, scored: dict[str, list[dict]]) -> dict:
    """One run: its identity, CPU minutes and the panel at the generator the rule picks."""
    for needed in ("params.yaml", "reports/train/timing.csv"):
        if not (run / needed).is_file():
            sys.exit(f"error: {run}: no {needed}: not a run folder scripts/sweep.py made (OUT/NAME/SET)")
    params = yaml.safe_load((run / "params.yaml").read_text())
    history = run / "reports/train/eval_history.csv"
    rows = [_floats(r) for r in csv.DictReader(history.open())] if history.is_file() else []
    if not rows or "swd" not in rows[0]:
        key = next((k for k in scored if Path(k).parts[-2:] == run.parts[-2:]), None)
        if key is None:
            sys.exit(f"error: {run}: its eval_history.csv has no swd and --scores has no rows for it")
        rows = [_floats(r) for r in scored[key]]
    pick = pick_best(rows, PANEL)
    if pick is None:
        sys.exit(f"error: {run}: no evaluation with a finite swd and fd")
    timing = list(csv.DictReader((run / "reports/train/timing.csv").open()))
    if not timing:
        sys.exit(f"error: {run}/reports/train/timing.csv: no rows (did its training start?)")
    source = params["prepare"]["source"]
    return {
        "set": Path(source).name if source != "demo" else "demo",
        "D": params["model"]["discriminator"],
        "seed": params["train"]["seed"],
        "kimg": round(float(timing[-1]["kimg"])),
        "cpu_min": float(timing[-1]["seconds"]) / 60,
        "pick": rows[pick]["kimg"],
        "last": rows[pick] is rows[-1],
        "swd_floor": rows[pick]["swd_floor"],
        "ndb_floor": rows[pick]["ndb_floor"],
        "swd_std": rows[pick]["swd_std"],
        **{k: rows[pick][k] for k in COLUMNS},
        "attr_tv_mean": rows[pick].get("attr_tv_mean", math.nan),  # the demo's attribute mix (labelled sets)
    }


def _spread(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


DIGITS = {
    "fd_ratio": 2,
    "swd": 1,
    "swd_ratio": 2,
    "swd_16px": 0,
    "ndb": 2,
    "precision": 2,
    "recall": 2,
    "copy_share": 2,
    "attr_tv_mean": 3,
}


def tables(runs: list[dict]) -> str:
    columns = COLUMNS + (("attr_tv_mean",) if any(math.isfinite(r["attr_tv_mean"]) for r in runs) else ())
    head = "| set | D | seed | kimg | CPU min | pick (kimg) | " + " | ".join(columns) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in runs:
        pick = f"{r['pick']:.1f}".removesuffix(".0") + (" (last)" if r["last"] else "")
        cells = [f"{r[k]:.{DIGITS[k]}f}" + (f" ({r['swd_std']:.1f})" if k == "swd" else "") for k in columns]
        lines.append(
            f"| {r['set']} | {r['D']} | {r['seed']} | {r['kimg']} | {r['cpu_min']:.1f} | {pick} | "
            + " | ".join(cells)
            + " |"
        )
    lines.append("")
    head = "| set | D | seeds | kimg | CPU min | " + " | ".join(columns) + " | swd floor | ndb floor |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in runs:
        groups.setdefault((r["set"], r["D"]), []).append(r)
    for (name, d), rs in groups.items():
        cells = [_spread([r[k] for r in rs], DIGITS[k]) for k in columns]
        lines.append(
            f"| {name} | {d} | {len(rs)} | {rs[0]['kimg']} | {_spread([r['cpu_min'] for r in rs], 0)} | "
            + " | ".join(cells)
            + f" | {statistics.fmean(r['swd_floor'] for r in rs):.1f} | {statistics.fmean(r['ndb_floor'] for r in rs):.2f} |"
        )
    return "\n".join(lines)


def read_scores(path: Path) -> dict[str, list[dict]]:
    """--scores: {run: its rows}, or one line naming the file and the line that is not one."""
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        sys.exit(f"error: --scores {path}: {e.strerror}")
    scored = {}
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
            scored[entry["run"]] = list(entry["rows"])
        except (ValueError, KeyError, TypeError):
            sys.exit(f'error: --scores {path}: line {n} is not {{"run": ..., "rows": [...]}}')
    return scored


def main(argv: list[str]) -> None:
    """No run folder: the usage, exit code 2 (it printed two empty tables; a bare --scores was an IndexError)."""
    if argv[:1] in (["-h"], ["--help"]):
        print(USAGE)
        return
    scored: dict[str, list[dict]] = {}
    if argv[:1] == ["--scores"] and len(argv) >= 2:
        scored = read_scores(Path(argv[1]))
        argv = argv[2:]
    if not argv or argv[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    runs = sorted(
        (run_row(Path(a), scored) for a in argv),
        key=lambda r: (r["set"].rsplit("-", 1)[0], len(r["set"]), r["set"], r["D"], r["seed"]),
    )
    print(tables(runs))


if __name__ == "__main__":
    main(sys.argv[1:])
