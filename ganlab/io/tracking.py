"""MLflow runs: one training is one MLflow run, continued (not duplicated) when it resumes; each
later stage (sample, latent-study, make-video, evaluate) is a child run of it with its own params,
replaced when the stage reruns, so nothing in MLflow is stale or logged twice. Which store and how
it is opened is ``io/mlflow_store.py``; every call here goes through a client of it. ``import
mlflow`` costs seconds, so it happens inside the functions that need it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganlab import layout
from ganlab.io import run_record
from ganlab.io.mlflow_store import as_global_store, experiment_id, project_client, store_errors, tracking_uri

__all__ = ["tracking_uri"]  # where the store is, for callers that read runs back with their own client


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def committed_text(path: str) -> str | None:
    """A file as the checked-out commit holds it (``git show HEAD:./path``), None outside git or where
    it is not committed: what a DVC experiment's ``-S`` changed is what differs from it."""
    try:
        out = subprocess.run(["git", "show", f"HEAD:./{path}"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def _params(flat: dict[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in flat.items()]


def _tags(tags: dict[str, Any]) -> list:
    from mlflow.entities import RunTag

    return [RunTag(k, str(v)) for k, v in tags.items()]


LINK_TAGS = ("dvc.experiment", "dvc.baseline_rev", "mlflow.source.git.commit")  # copied onto every stage's child run


def run_name_and_links(what: str) -> tuple[str, dict[str, str]]:
    """The run's name: what it is (data set, size, discriminator, length), after the DVC
    experiment's name where there is one (``dvc exp run`` exports it); and the tags that link
    a run to its DVC experiment and git commit."""
    exp = os.environ.get("DVC_EXP_NAME", "")
    tags = {"mlflow.source.git.commit": git_commit()}
    if exp:
        tags.update({"dvc.experiment": exp, "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", "")})
    return f"{exp} {what}" if exp else what, tags


@store_errors
def mark_killed(run_id: str, client=None) -> bool:
    """Mark a training run that a kill left RUNNING as KILLED; True when it was. Called only
    under the project's training lock, so no process is still writing to it."""
    from mlflow.exceptions import MlflowException

    client = client or project_client()
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return False
    if run.info.status != "RUNNING" or run.info.lifecycle_stage != "active":
        return False
    client.set_terminated(run_id, "KILLED")
    return True


class TrainingRun:
    """The MLflow run of one training, continued (not duplicated) when training resumes.

    A resumed run recomputes, bit for bit on CPU, the steps after its checkpoint; steps that
    are already in MLflow are not logged twice. Everything goes through ``client`` (the project's
    store unless given) with the run's id, so the training's background writer thread may log too.
    """

    @store_errors
    def __init__(self, experiment: str, run_id: str | None, name: str, client=None):
        self.client = client or project_client()  # first: it sets what MLflow reads when imported
        from mlflow.tracking.context.registry import resolve_tags
        from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

        self.experiment_id = experiment_id(self.client, experiment)
        if run_id is not None and not self._exists(run_id):
            print(
                f"note: the checkpoint's MLflow run {run_id} is not in {self.client.tracking_uri} (a new or moved store?); "
                "the training continues from its checkpoint in a new MLflow run"
            )
            run_id = None
        self.resumed = run_id is not None
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.run_id = run_id
        else:  # with the tags mlflow.start_run gives a new run (user, source, git)
            tags = resolve_tags({MLFLOW_RUN_NAME: name})
            self.run_id = self.client.create_run(self.experiment_id, tags=tags, run_name=name).info.run_id
        self._open = True
        self.logged_through = (
            last_logged_step(self.run_id, "train/loss_d", self.client) if self.resumed else -1
        )  # a fresh run logs step 0 too

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    @store_errors
    def log_params(self, flat: dict[str, Any], tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, params=_params(flat), tags=_tags(tags))

    @store_errors
    def set_tags(self, tags: dict[str, str]) -> None:
        self.client.log_batch(self.run_id, tags=_tags(tags))

    @store_errors
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        finite = [Metric(k, v, now, step) for k, v in metrics.items() if math.isfinite(v)]
        if step > self.logged_through and finite:
            self.client.log_batch(self.run_id, metrics=finite)

    @store_errors
    def log_image(self, image: Image.Image, key: str, step: int) -> None:
        if step > self.logged_through:
            self.client.log_image(self.run_id, image, key=key, step=step)

    @store_errors
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    @store_errors
    def finish(self, status: str = "FINISHED") -> None:
        """Once: a later call (the failure path after a finished end) changes nothing."""
        if self._open:
            self._open = False
            self.client.set_terminated(self.run_id, status)


@store_errors
def open_status(run_id: str, client=None) -> str | None:
    """The status of a training's MLflow run that its end did not close (a kill or error between
    the final checkpoint and ``finish``); None when it is finished, deleted or not in this store."""
    client = client or project_client()
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return None if run.info.status == "FINISHED" or run.info.lifecycle_stage != "active" else run.info.status


@store_errors
def finish_left_open(run_id: str, artifacts: list[Path], tags: dict[str, str], client=None) -> None:
    """Finish a run that ``open_status`` found open: log what its end logs, mark it FINISHED."""
    client = client or project_client()
    for path in artifacts:
        if path.is_file():
            client.log_artifact(run_id, str(path))
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, "FINISHED")


@store_errors
def _recorded_run(client=None):
    """(client, run) of the training run in models/run.json, or (None, reason)."""
    if (run_id := run_record.run_id()) is None:
        return None, f"no {layout.RUN_INFO}"
    client = client or project_client()
    from mlflow.exceptions import MlflowException

    try:
        return (client, client.get_run(run_id)), ""
    except MlflowException:
        return None, f"MLflow run {run_id} is not in {client.tracking_uri}"


class StageRun:
    """A later stage's child run of the training run: its own params, its outputs, its numbers."""

    def __init__(self, client, run_id: str | None, parent_id: str | None = None):
        self.client, self.run_id, self.parent_id = client, run_id, parent_id

    def log_final(self, metrics: dict[str, float]) -> None:
        """The headline numbers also on the training run (``final/...``: runs are sorted and
        compared by them in the runs table) and on its logged generator, when there is one."""
        if self.parent_id is not None:
            log_final(self.client, self.parent_id, metrics)

    def attach(self, local_path: Path, artifact_path: str | None = None) -> None:
        if self.run_id is None:
            return
        if local_path.is_dir():
            self.client.log_artifacts(self.run_id, str(local_path), artifact_path)
        else:
            self.client.log_artifact(self.run_id, str(local_path), artifact_path)

    def log_metrics(self, metrics: dict[str, float], tags: dict[str, str] | None = None) -> None:
        from mlflow.entities import Metric, RunTag

        if self.run_id is None:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(
            self.run_id,
            metrics=[Metric(k, v, now, 0) for k, v in metrics.items() if math.isfinite(v)],
            tags=[RunTag(k, v[:5000]) for k, v in (tags or {}).items()],
        )


@contextmanager
def stage_run(stage: str, params: dict[str, Any], client=None) -> Iterator[StageRun]:
    """The child run of ``stage`` under the training run in ``models/run.json``, replacing the
    one an earlier run of the stage left (deleted runs disappear from the UI; ``mlflow gc``
    frees their files). Marked FINISHED when the stage succeeds, FAILED otherwise.

    Without a training run in this store (outputs restored from another machine's cache) the
    stage still succeeds: its files are on disk, and MLflow is a view of them.
    """
    found, why = _recorded_run(client)
    if not found:
        print(f"note: {why}; {stage} is not recorded in MLflow")
        yield StageRun(None, None)
        return
    client, parent = found
    exp = parent.info.experiment_id
    query = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}' and tags.stage = '{stage}'"
    for old in client.search_runs([exp], filter_string=query):
        client.delete_run(old.info.run_id)
    child = client.create_run(
        exp,
        run_name=stage,
        tags={
            "mlflow.parentRunId": parent.info.run_id,
            "stage": stage,
            **{k: v for k, v in parent.data.tags.items() if k in LINK_TAGS},
        },
    )
    run_id = child.info.run_id
    client.log_batch(run_id, params=_params(params))
    try:
        yield StageRun(client, run_id, parent.info.run_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


FINAL = "final/"


def _generators(client, run) -> list:
    """The training run's logged generator models."""
    found, token = [], None
    while True:
        page = client.search_logged_models(experiment_ids=[run.info.experiment_id], page_token=token)
        found += [m for m in page if m.source_run_id == run.info.run_id and m.name == "generator"]
        if not (token := page.token):
            return found


def log_final(client, run_id: str, metrics: dict[str, float]) -> None:
    """``metrics`` as the training run's final numbers, linked to its generator model(s) too."""
    from mlflow.entities import Metric

    now, run = int(time.time() * 1000), client.get_run(run_id)
    finite = {f"{FINAL}{k}": v for k, v in metrics.items() if math.isfinite(v)}
    batch = [Metric(k, v, now, 0) for k, v in finite.items()]
    batch += [Metric(k, v, now, 0, model_id=m.model_id) for m in _generators(client, run) for k, v in finite.items()]
    if batch:
        client.log_batch(run_id, metrics=batch)


@store_errors
def log_generator(G: nn.Module, example, tags: dict[str, str], client=None) -> None:
    """The generator as an MLflow model of the training run, replacing any earlier one: an
    ``nn.Module`` (pickle format) that ``mlflow.pytorch.load_model`` returns ready for
    ``.eval()`` and ``.to("cuda")``. ``G`` must be on the CPU, so that loading it needs no GPU.

    Pickle, not MLflow's safer ``pt2`` (torch.export): an exported program is a fixed graph that
    loads as a ``GraphModule``, not the project's ``Generator`` (its ``latent_size``, its BatchNorm
    modes, ``.to()`` of its constants); the model is loaded only from one's own store. Its input
    example (two latents) gives it a signature; evaluate's headline numbers are its metrics."""
    found, why = _recorded_run(client)
    if not found:
        print(f"note: {why}; generator not logged as an MLflow model")
        return
    client, run = found
    run_id, experiment = run.info.run_id, run.info.experiment_id
    import mlflow.pytorch
    from mlflow.tracking.context.registry import resolve_tags

    for old in _generators(client, run):
        client.delete_logged_model(old.model_id)
    model = client.create_logged_model(  # as log_model would make it: the run's params, the context's tags
        experiment, name="generator", source_run_id=run_id, tags=resolve_tags(tags), params=run.data.params
    )
    with as_global_store(client.tracking_uri), _quiet("mlflow.pytorch"):
        mlflow.pytorch.log_model(
            G,
            name="generator",
            input_example=example,
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            run_id=run_id,
            model_id=model.model_id,
        )
    client.log_batch(run_id, tags=_tags({f"generator.{k}": v for k, v in tags.items()}))
    final = {k.removeprefix(FINAL): v for k, v in run.data.metrics.items() if k.startswith(FINAL)}
    if final:  # evaluate ran first: the new model carries the numbers of the same checkpoint
        log_final(client, run_id, final)


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """MLflow warns on every pickle-format save; the format is chosen on purpose (log_generator's
    docstring), and the README says so once."""
    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def last_logged_step(run_id: str, key: str, client=None) -> int:
    client = client or project_client()
    return max((m.step for m in client.get_metric_history(run_id, key)), default=0)
