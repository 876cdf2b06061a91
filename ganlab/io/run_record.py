"""``models/run.json``: the MLflow run and wall time of the training that wrote the checkpoint
beside it. The checkpoint holds only what the training computes, so the same params and data
give the same bytes (and DVC sees no change where there is none); what differs on every run
lives here, in a file no stage declares. The ``Tracking`` hook writes it after each checkpoint;
``training/session.py`` reads it to decide what a start is.
"""

from __future__ import annotations

import json
from typing import Any

from ganlab import layout
from ganlab.io.atomic import write_text


def write(
    run_id: str | None,
    experiment_id: str | None,
    fp: str,
    step: int,
    seconds: float,
    lineage: str | None = None,
    planned_kimg: float | None = None,
) -> None:
    """Written after each checkpoint, so a resume continues the same MLflow run and clock. Its
    ``lineage`` (the fingerprint without the length) lets a longer run extend a finished one:
    here, not in the checkpoint, whose bytes stay what the training computed; so is the kimg that
    ``train.minutes`` was planned as, which a resume reads back instead of measuring again."""
    record = {
        "run_id": run_id,
        "experiment_id": experiment_id,
        "fingerprint": fp,
        "step": step,
        "seconds": round(seconds, 3),
        "lineage": lineage,
        "planned_kimg": planned_kimg,
    }
    write_text(layout.RUN_INFO, json.dumps(record, indent=1))


def _read() -> dict[str, Any]:
    try:
        record = json.loads(layout.RUN_INFO.read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def run_id() -> str | None:
    """The MLflow run of the last training in this folder, whatever its params."""
    found = _read().get("run_id")
    return found if isinstance(found, str) else None


def lineage(fp: str) -> str | None:
    """The lineage of the run with fingerprint ``fp``; None when it is not the one recorded."""
    record = _read()
    return record.get("lineage") if record.get("fingerprint") == fp else None


def plan(fp: str) -> float | None:
    """The kimg that ``train.minutes`` was planned as for the run with fingerprint ``fp``; None when
    run.json is missing, belongs to another run, or has no plan."""
    record = _read()
    kimg = record.get("planned_kimg")
    return float(kimg) if record.get("fingerprint") == fp and isinstance(kimg, (int, float)) and kimg > 0 else None


def run(fp: str) -> tuple[str | None, float]:
    """(MLflow run id, seconds) of the run with this fingerprint; (None, 0) when run.json is
    missing or belongs to another run: a resume then opens a new MLflow run."""
    record = _read()
    if record.get("fingerprint") != fp or not isinstance(record.get("run_id"), str):
        return None, 0.0
    seconds = record.get("seconds")
    return record["run_id"], float(seconds) if isinstance(seconds, (int, float)) else 0.0
