"""Which evaluated generator a run keeps as its best, and when evaluations stop gaining.

A rule over rows of evaluation results (dicts of metric values), not a measurement: the metrics
compute the rows, this decides between them, so the loop's plateau stop and the evaluation hook
share one rule without the training code depending on the metrics.
"""

from __future__ import annotations

import math

# Metrics a best checkpoint can be chosen by, and whether lower (min) or higher (max) is better.
DIRECTIONS = {
    "panel": "min",
    "swd": "min",
    "ndb": "min",
    "fd": "min",
    "kid": "min",
    "recall": "max",
    "attr_tv_mean": "min",
    "attr_confident_mean": "max",
    "attr_confident_all": "max",
}


PANEL = "panel"  # the best-generator rule over swd and fd (``pick_best``)


def best_key(metric: str) -> str:
    """The number a best generator is recorded by: the panel's own distance is swd."""
    return "swd" if metric == PANEL else metric


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def pick_best(evals: list[dict[str, float]], metric: str) -> int | None:
    """The index of the evaluation whose generator later stages should use, or None.

    ``panel`` (the default): never a choice by fd alone, which a discriminator on ImageNet
    features can lower without better images. An evaluation qualifies when its swd (no network)
    is within its spread of the lowest swd of the generators kept so far and its fd, the guard,
    within its spread of their lowest fd; of those that qualify, the latest wins, since a
    generator is better only by more than the noise of the measure. The lows are the kept
    generators' own: taken over every evaluation, a low swd on one that failed the fd guard and a
    low fd on another held the first kept one for the rest of the run (resize on 1000 photos kept
    9 kimg, swd 324, while its last scored swd 79 and a lower fd), and the lows of kept ones
    never rise, so the kept generator cannot drift worse one spread at a time. Any other metric: the strictly best value,
    the earliest on ties. A missing or non-finite value is never picked.
    """
    best, lows = None, {}
    for i, e in enumerate(evals):
        if metric != PANEL:
            value = e.get(metric)
            if _finite(value) and (
                best is None or (value < lows[metric] if DIRECTIONS[metric] == "min" else value > lows[metric])
            ):
                best, lows[metric] = i, value
            continue
        if not _finite(e.get("swd"), e.get("fd")):
            continue
        if all(e[k] <= lows.get(k, math.inf) + (e.get(f"{k}_std") or 0.0) for k in ("swd", "fd")):
            best = i
            lows = {k: min(lows.get(k, math.inf), e[k]) for k in ("swd", "fd")}
    return best


def last_gain(evals: list[dict[str, float]], metric: str) -> int | None:
    """The index of the last evaluation that improved on every earlier one by more than its
    spread (``panel``: swd by more than swd_std), or the metric's best: what ``train.stop.patience``
    counts from, so that a plateau inside the noise ends the run."""
    if metric != PANEL:
        return pick_best(evals, metric)
    gain, low = None, math.inf
    for i, e in enumerate(evals):
        if _finite(e.get("swd")):
            if e["swd"] < low - (e.get("swd_std") or 0.0):
                gain = i
            low = min(low, e["swd"])
    return gain


def plateaued(progress, t) -> str | None:
    """No gain beyond the noise in the last ``train.stop.patience`` evaluations of ``progress``
    (anything with ``evals``: a running or a finished run); a metric that is unavailable (attributes
    without a classifier) never stops a run."""
    gain = last_gain(progress.evals, t.best_metric)
    if not t.stop.patience or gain is None:
        return None
    since = len(progress.evals) - 1 - gain
    if since < t.stop.patience:
        return None
    what, which = (
        ("swd gain beyond its spread", "the last")
        if t.best_metric == PANEL
        else (f"better {t.best_metric}", "the best")
    )
    return (
        f"no {what} in {since} evaluations ({which} at {progress.evals[gain]['kimg']:g} kimg; "
        f"train.stop.patience {t.stop.patience})"
    )
