"""MLflow, and nothing else in the project imports it: one SQLite store at the project root.

``dvc exp run --temp`` and ``--queue`` execute stages in a copy of the project under
``.dvc/tmp/exps/``, which is deleted afterwards; a relative ``sqlite:///mlflow.db`` would be
deleted with it. The store and the artifacts therefore always resolve to the real root.
``import mlflow`` costs seconds, so it happens inside the functions that need it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganlab import layout
from ganlab.io.atomic import write_text

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


def create_store(path: Path) -> None:
    """An empty SQLite store at ``path`` (its schema migrations take seconds, once)."""
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    MlflowClient(f"sqlite:///{path}").search_experiments()


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


def _params_for_mlflow(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v) if isinstance(v, (list, dict)) else v for k, v in flat.items()}


class TrainingRun:
    """The MLflow run of one training, continued (not duplicated) when training resumes.

    A resumed run recomputes, bit for bit on CPU, the steps after its checkpoint; steps that
    are already in MLflow are not logged twice. Metrics and images go through a client with the
    run's id, so the training's background writer thread may log them.
    """

    def __init__(self, experiment: str, run_id: str | None):
        import mlflow
        from mlflow.tracking import MlflowClient

        exp_id = experiment_id(experiment)
        self.resumed = run_id is not None
        active = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(experiment_id=exp_id)
        self.run_id = active.info.run_id
        self.client = MlflowClient(tracking_uri())
        self.logged_through = last_logged_step(self.run_id, "loss_d") if self.resumed else -1  # a fresh run logs step 0 too
        write_text(layout.RUN_INFO, json.dumps({"run_id": self.run_id, "experiment_id": exp_id}, indent=1))

    def log_params(self, flat: dict[str, Any], tags: dict[str, str]) -> None:
        import mlflow

        mlflow.log_params(_params_for_mlflow(flat))
        mlflow.set_tags(tags)

    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags(tags)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        finite = [Metric(k.replace("/", "."), v, now, step) for k, v in metrics.items() if math.isfinite(v)]
        if step > self.logged_through and finite:
            self.client.log_batch(self.run_id, metrics=finite)

    def log_image(self, image: Image.Image, key: str, step: int) -> None:
        if step > self.logged_through:
            self.client.log_image(self.run_id, image, key=key, step=step)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        import mlflow

        mlflow.end_run(status)


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
    """Add evaluation numbers to the training run, at its last step (images seen)."""
    from mlflow.entities import Metric, RunTag

    found, why = _recorded_run()
    if not found:
        print(f"note: {why}; metrics not logged to MLflow")
        return
    client, run_id = found
    step = last_logged_step(run_id, "loss_d")
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(k.replace("/", "."), v, now, step) for k, v in metrics.items() if math.isfinite(v)],
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


def log_generator(G: nn.Module, example, tags: dict[str, str]) -> None:
    """The generator as an MLflow model of the training run, replacing any earlier one: an
    ``nn.Module`` (pickle format) that ``mlflow.pytorch.load_model`` returns ready for
    ``.eval()`` and ``.to("cuda")``. ``G`` must be on the CPU, so that loading it needs no GPU."""
    found, why = _recorded_run()
    if not found:
        print(f"note: {why}; generator not logged as an MLflow model")
        return
    client, run_id = found
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(tracking_uri())
    experiment = client.get_run(run_id).info.experiment_id
    for old in mlflow.search_logged_models(experiment_ids=[experiment], output_format="list"):
        if old.source_run_id == run_id and old.name == "generator":
            client.delete_logged_model(old.model_id)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(G, name="generator", input_example=example, serialization_format="pickle",
                                 pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"], tags=tags)
        mlflow.set_tags({f"generator.{k}": v for k, v in tags.items()})


def last_logged_step(run_id: str, key: str) -> int:
    from mlflow.tracking import MlflowClient

    return max((m.step for m in MlflowClient(tracking_uri()).get_metric_history(run_id, key)), default=0)
