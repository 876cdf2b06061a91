"""MLflow plumbing: one SQLite store at the project root, whatever folder DVC runs us in.

``dvc exp run --temp`` and ``--queue`` execute stages in a copy of the project under
``.dvc/tmp/exps/``, which is deleted afterwards; a relative ``sqlite:///mlflow.db`` would be
deleted with it. The store and the artifacts therefore always resolve to the real root.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from stages import layout
from stages.atomic import write_text

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # the machines we run on are often offline


def project_root(cwd: Path | None = None) -> Path:
    cwd = (cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def experiment_id(name: str) -> str:
    """Get or create the experiment, with artifacts under the project root's ``mlruns/``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    folder = re.sub(r"[^\w.-]+", "_", name)
    try:
        return mlflow.create_experiment(name, artifact_location=(project_root() / "mlruns" / folder).as_uri())
    except MlflowException:  # another process created it first
        return mlflow.get_experiment_by_name(name).experiment_id


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_run_info(run_id: str, experiment_id: str) -> None:
    write_text(layout.RUN_INFO, json.dumps({"run_id": run_id, "experiment_id": experiment_id}, indent=1))


def _recorded_run():
    """(client, run id) of the training run in models/run.json, or (None, reason)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run_id = json.loads(layout.RUN_INFO.read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return None, f"no {layout.RUN_INFO}"
    client = MlflowClient(tracking_uri())
    try:
        client.get_run(run_id)
    except MlflowException:
        return None, f"MLflow run {run_id} is not in {tracking_uri()}"
    return (client, run_id), ""


def log_to_run(metrics: dict[str, float], tags: dict[str, str]) -> None:
    """Add evaluation numbers to the training run, at its last epoch's step."""
    from mlflow.entities import Metric, RunTag

    found, why = _recorded_run()
    if not found:
        print(f"note: {why}; metrics not logged to MLflow")
        return
    client, run_id = found
    import time

    step = last_logged_step(run_id, "loss_d")
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()],
                     tags=[RunTag(k, v[:5000]) for k, v in tags.items()])


def attach(local_path: Path, artifact_path: str | None = None) -> None:
    """Add a stage's outputs to the training run recorded in ``models/run.json``.

    If that run is not in this store (outputs restored from another machine's cache), the
    stage still succeeds: its files are on disk, and MLflow is a view of them.
    """
    found, why = _recorded_run()
    if not found:
        print(f"note: {why}; outputs not attached to an MLflow run")
        return
    client, run_id = found
    if local_path.is_dir():
        client.log_artifacts(run_id, str(local_path), artifact_path)
    else:
        client.log_artifact(run_id, str(local_path), artifact_path)


def last_logged_step(run_id: str, key: str) -> int:
    from mlflow.tracking import MlflowClient

    return max((m.step for m in MlflowClient(tracking_uri()).get_metric_history(run_id, key)), default=0)


def log_params(flat: dict[str, Any]) -> None:
    import mlflow

    mlflow.log_params({k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flat.items()})
