"""MLflow, and nothing else in the project imports it: one SQLite store at the project root.

Where the root is: DVC names it in ``DVC_ROOT`` for every stage it runs, and for ``dvc exp run
--temp`` and ``--queue``, which execute in a copy under ``.dvc/tmp/exps/`` that is deleted
afterwards, it names the project they were queued from, so their records land in the store
that the project's ``mlflow ui`` shows. Run by hand (``gan train``), the root is the working
folder.

MLflow stores artifact locations as absolute paths. A project folder that was copied or moved
still points at the old folder's ``mlruns/``, so every later write would land in the original;
the first MLflow call in a relocated project rewrites those paths to its own ``mlruns/``
(``_rehome``) and says so.

One training is one MLflow run; each later stage (sample, latent-study, make-video, evaluate)
is a child run of it with its own params, replaced when the stage reruns, so nothing in MLflow
is stale or logged twice. ``import mlflow`` costs seconds, so it happens inside the functions
that need it.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import math
import os
import re
import sqlite3
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
from ganlab.errors import UserError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # the machines we run on are often offline
for _key, _value in (
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10"),
):
    os.environ.setdefault(
        _key, _value
    )  # an unreachable tracking server: a few seconds, not MLflow's 4 minutes of retries


_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


def _store_error(e: BaseException) -> UserError:
    """One line naming the store and the fix, for whatever the store's layers raised."""
    uri = tracking_uri()
    text = " ".join(str(e).split())
    reason = (text[:200] + "...") if len(text) > 200 else text or type(e).__name__
    if m := re.search(r"experiment (\w+) must be in the 'active' state", text):
        fix = (
            f"the experiment was deleted: restore it with `mlflow experiments restore --experiment-id {m.group(1)}` "
            "(MLFLOW_TRACKING_URI set to this store), or set tracking.experiment to a new name"
        )
    elif m := re.search(r"run (\w+) must be in the 'active' state", text):
        fix = (
            f"the MLflow run was deleted while training: restore it with `mlflow runs restore --run-id {m.group(1)}` "
            "(MLFLOW_TRACKING_URI set to this store), then `gan train` resumes from the last checkpoint"
        )
    elif (isinstance(e, OSError) and e.errno in _DISK_ERRNOS) or re.search(
        r"disk I/O error|database or disk is full|No space left|File too large", text
    ):
        fix = "free space on its disk (or raise `ulimit -f`) and check that it is writable, then `gan train` resumes from the last checkpoint"
    elif uri.startswith("sqlite:"):
        fix = "check that the file is writable, or move it aside (a new store is made) or set MLFLOW_TRACKING_URI"
    else:
        fix = "start the tracking server, or unset MLFLOW_TRACKING_URI to use the project's mlflow.db"
    return UserError(f"MLflow store {uri}: {reason} ({fix})")


def store_errors(fn):
    """Turn any failure of the MLflow store (a corrupt, read-only or missing database, a server
    that does not answer) into ``_store_error``'s one line."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        from mlflow.exceptions import MlflowException

        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except (MlflowException, sqlite3.Error, OSError) as e:
            raise _store_error(e) from None
        except Exception as e:  # sqlalchemy's and requests' own errors, without importing them here
            if type(e).__module__.split(".")[0] in ("sqlalchemy", "requests", "urllib3", "alembic"):
                raise _store_error(e) from None
            raise

    return wrapped


def project_root(cwd: Path | None = None) -> Path:
    if cwd is None and os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
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


_ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
)


def _rehome() -> None:
    """Point a copied or moved project's store at its own ``mlruns/`` (see the module's docstring)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return  # the user's own store: not ours to rewrite
    root, db = project_root(), project_root() / "mlflow.db"
    if not db.is_file():
        return
    home = (root / "mlruns").as_uri()
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type = 'table'")}
        if "experiments" not in tables:
            return
        olds = {
            m.group(1)
            for (loc,) in con.execute("select artifact_location from experiments")
            if loc and (m := re.match(r"(file://.*?/mlruns)(/[^/]+)?$", loc)) and m.group(1) != home
        }
        for old in olds:
            for table, column in _ARTIFACT_COLUMNS:
                if table in tables:
                    con.execute(
                        f"update {table} set {column} = ? || substr({column}, ?) where {column} like ? escape '\\'",
                        (home, len(old) + 1, old.replace("%", r"\%").replace("_", r"\_") + "/%"),
                    )
            print(
                f"note: this project's MLflow store pointed at {old}; it now points at {home} (the project was copied or moved)"
            )


@store_errors
def experiment_id(name: str) -> str:
    """Get or create the experiment, with artifacts under the project root's ``mlruns/``."""
    import mlflow
    from mlflow.exceptions import MlflowException

    _rehome()
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


def _params(flat: dict[str, Any]) -> list:
    from mlflow.entities import Param

    return [Param(k, json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for k, v in flat.items()]


LINK_TAGS = ("dvc.experiment", "dvc.baseline_rev", "mlflow.source.git.commit")  # copied onto every stage's child run


def run_name_and_links(dataset: str) -> tuple[str, dict[str, str]]:
    """The DVC experiment's name where there is one (``dvc exp run`` exports it), else the
    data set's; and the tags that link a run to its DVC experiment and git commit."""
    exp = os.environ.get("DVC_EXP_NAME", "")
    tags = {"mlflow.source.git.commit": git_commit()}
    if exp:
        tags.update({"dvc.experiment": exp, "dvc.baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", "")})
    return exp or dataset, tags


class TrainingRun:
    """The MLflow run of one training, continued (not duplicated) when training resumes.

    A resumed run recomputes, bit for bit on CPU, the steps after its checkpoint; steps that
    are already in MLflow are not logged twice. Metrics and images go through a client with the
    run's id, so the training's background writer thread may log them.
    """

    @store_errors
    def __init__(self, experiment: str, run_id: str | None, name: str):
        import mlflow
        from mlflow.tracking import MlflowClient

        self.experiment_id = experiment_id(experiment)
        self.client = MlflowClient(tracking_uri())
        if run_id is not None and not self._exists(run_id):
            print(
                f"note: the checkpoint's MLflow run {run_id} is not in {tracking_uri()} (a new or moved store?); "
                "the training continues from its checkpoint in a new MLflow run"
            )
            run_id = None
        self.resumed = run_id is not None
        active = (
            mlflow.start_run(run_id=run_id)
            if run_id
            else mlflow.start_run(experiment_id=self.experiment_id, run_name=name)
        )
        self.run_id = active.info.run_id
        self.logged_through = (
            last_logged_step(self.run_id, "loss_d") if self.resumed else -1
        )  # a fresh run logs step 0 too

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    @store_errors
    def log_params(self, flat: dict[str, Any], tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(self.run_id, params=_params(flat), tags=[RunTag(k, v) for k, v in tags.items()])

    @store_errors
    def set_tags(self, tags: dict[str, str]) -> None:
        import mlflow

        mlflow.set_tags(tags)

    @store_errors
    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        finite = [Metric(k.replace("/", "."), v, now, step) for k, v in metrics.items() if math.isfinite(v)]
        if step > self.logged_through and finite:
            self.client.log_batch(self.run_id, metrics=finite)

    @store_errors
    def log_image(self, image: Image.Image, key: str, step: int) -> None:
        if step > self.logged_through:
            self.client.log_image(self.run_id, image, key=key, step=step)

    @store_errors
    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)

    @store_errors
    def finish(self, status: str = "FINISHED") -> None:
        import mlflow

        mlflow.end_run(status)


@store_errors
def finish_left_open(run_id: str, artifacts: list[Path], tags: dict[str, str]) -> str | None:
    """Finish a training's MLflow run that its end did not close (a kill or error between the
    final checkpoint and ``end_run``): log what the end logs, mark it FINISHED. Returns the
    status it had, or None when it is finished already or not in this store."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri())
    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    if run.info.status == "FINISHED" or run.info.lifecycle_stage != "active":
        return None
    for path in artifacts:
        if path.is_file():
            client.log_artifact(run_id, str(path))
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    client.set_terminated(run_id, "FINISHED")
    return run.info.status


@store_errors
def _recorded_run():
    """(client, run) of the training run in models/run.json, or (None, reason)."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        run_id = json.loads(layout.RUN_INFO.read_text())["run_id"]
    except (OSError, ValueError, KeyError):
        return None, f"no {layout.RUN_INFO}"
    _rehome()
    client = MlflowClient(tracking_uri())
    try:
        return (client, client.get_run(run_id)), ""
    except MlflowException:
        return None, f"MLflow run {run_id} is not in {tracking_uri()}"


class StageRun:
    """A later stage's child run of the training run: its own params, its outputs, its numbers."""

    def __init__(self, client, run_id: str | None):
        self.client, self.run_id = client, run_id

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
def stage_run(stage: str, params: dict[str, Any]) -> Iterator[StageRun]:
    """The child run of ``stage`` under the training run in ``models/run.json``, replacing the
    one an earlier run of the stage left (deleted runs disappear from the UI; ``mlflow gc``
    frees their files). Marked FINISHED when the stage succeeds, FAILED otherwise.

    Without a training run in this store (outputs restored from another machine's cache) the
    stage still succeeds: its files are on disk, and MLflow is a view of them.
    """
    found, why = _recorded_run()
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
        yield StageRun(client, run_id)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


@store_errors
def log_generator(G: nn.Module, example, tags: dict[str, str]) -> None:
    """The generator as an MLflow model of the training run, replacing any earlier one: an
    ``nn.Module`` (pickle format) that ``mlflow.pytorch.load_model`` returns ready for
    ``.eval()`` and ``.to("cuda")``. ``G`` must be on the CPU, so that loading it needs no GPU."""
    found, why = _recorded_run()
    if not found:
        print(f"note: {why}; generator not logged as an MLflow model")
        return
    client, run = found
    run_id, experiment = run.info.run_id, run.info.experiment_id
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(tracking_uri())
    for old in mlflow.search_logged_models(experiment_ids=[experiment], output_format="list"):
        if old.source_run_id == run_id and old.name == "generator":
            client.delete_logged_model(old.model_id)
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(
            G,
            name="generator",
            input_example=example,
            serialization_format="pickle",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            tags=tags,
        )
        mlflow.set_tags({f"generator.{k}": v for k, v in tags.items()})


def last_logged_step(run_id: str, key: str) -> int:
    from mlflow.tracking import MlflowClient

    return max((m.step for m in MlflowClient(tracking_uri()).get_metric_history(run_id, key)), default=0)
