"""MLflow, and nothing else in the project imports it: one SQLite store at the project root.

Where the root is: DVC names it in ``DVC_ROOT`` for every stage it runs, and for ``dvc exp run
--temp`` and ``--queue``, which execute in a copy under ``.dvc/tmp/exps/`` that is deleted
afterwards, it names the project they were queued from, so their records land in the store
that the project's ``mlflow ui`` shows. Run by hand (``gan train``), the root is the working
folder. Finding the store (``project_root``, ``tracking_uri``, ``own_store``) is kept apart from
logging to it: everything else talks to MLflow through an ``MlflowClient`` of an explicit store,
opened by ``open_store`` (no global tracking URI, no fluent active run).

MLflow stores artifact locations as absolute paths. A project folder that was copied or moved
still points at the old folder's ``mlruns/``, so every later write would land in the original;
the first client of a relocated project's own store rewrites those paths to its own ``mlruns/``
(``_rehome``) and says so. Only its own store (``own_store``): one store for several projects, a
linked ``mlflow.db`` or a shared ``MLFLOW_TRACKING_URI``, is never rewritten, and a project logs to
it in an experiment whose artifacts are in its own ``mlruns/`` (``experiment_id``). MLflow's proxied
artifacts (``mlflow server --artifacts-destination``) keep no path in the store, but every stage
would then need a running server, and ``mlflow ui`` alone would no longer show the images.

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
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from ganlab import layout
from ganlab.errors import UserError

# Which store: discovery only, nothing here opens it.


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


def own_store() -> Path | None:
    """The project's ``mlflow.db`` when the store is the project's alone, None when it is shared and so not ours
    to rewrite: named by ``MLFLOW_TRACKING_URI``, or a link (symbolic or hard) to a file other projects use too."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return None
    db = project_root() / "mlflow.db"
    try:
        st = db.lstat()
    except OSError:
        return db  # not made yet: MLflow makes it here, the project's own
    return None if stat.S_ISLNK(st.st_mode) or st.st_nlink > 1 else db


# Opening a store: the one way into MLflow.

_HTTP_DEFAULTS = (  # an unreachable tracking server: a few seconds, not MLflow's 4 minutes of retries
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "10"),
)


def open_store(uri: str):
    """An ``MlflowClient`` of the store at ``uri``.

    Importing this module changes no environment; opening a store sets, where the user has not, the variables
    MLflow reads: ``MLFLOW_DISABLE_TELEMETRY`` (read once, when ``mlflow`` is first imported, which is why it is
    set before the import here: the machines we run on are often offline), and for an HTTP store
    ``_HTTP_DEFAULTS`` (read at every request, from any thread, so they stay set for the rest of the process)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if uri.startswith(("http://", "https://")):
        for key, value in _HTTP_DEFAULTS:
            os.environ.setdefault(key, value)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def project_client():
    """A client of ``tracking_uri()``'s store, re-homed first when it is the project's own."""
    client = open_store(tracking_uri())
    if (db := own_store()) is not None and db.is_file():
        _rehome(client, db)
    return client


def create_store(path: Path) -> None:
    """An empty SQLite store at ``path`` (its schema migrations take seconds, once)."""
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    open_store(f"sqlite:///{path}").search_experiments()


_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}
_STORE_MODULES = ("sqlite3", "sqlalchemy", "requests", "urllib3", "alembic")  # the store's layers, not imported here


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


def _is_store_error(e: BaseException) -> bool:
    exceptions = sys.modules.get("mlflow.exceptions")  # an MlflowException comes only from an imported mlflow
    return (
        isinstance(e, OSError)
        or (exceptions is not None and isinstance(e, exceptions.MlflowException))
        or type(e).__module__.split(".")[0] in _STORE_MODULES
    )


def store_errors(fn):
    """Turn any failure of the MLflow store (a corrupt, read-only or missing database, a server
    that does not answer) into ``_store_error``'s one line."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except UserError:
            raise
        except Exception as e:
            if _is_store_error(e):
                raise _store_error(e) from None
            raise

    return wrapped


# A copied or moved project.

_ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
)


def _rehome(client, db: Path) -> None:
    """Point a copied or moved project's store at its own ``mlruns/`` (see the module's docstring): the
    experiments made as the store's own, not those a project sharing it made (``PROJECT_TAG``), whose
    artifacts are in that project's folder, which did not move."""
    from mlflow.entities import ViewType

    home, moved, token = (db.parent / "mlruns").as_uri(), {}, None
    while True:
        page = client.search_experiments(view_type=ViewType.ALL, page_token=token)
        for exp in page:
            loc = exp.artifact_location
            if PROJECT_TAG in exp.tags:
                continue
            if loc and (m := re.match(r"(file://.*?/mlruns)(/[^/]+)?$", loc)) and m.group(1) != home:
                moved.setdefault(m.group(1), []).append(exp.experiment_id)
        if not (token := page.token):
            break
    if moved:
        _rewrite_artifact_roots(db, moved, home)
    for old in sorted(moved):
        print(
            f"note: this project's MLflow store pointed at {old}; it now points at {home} (the project was copied or moved)"
        )


def _rewrite_artifact_roots(db: Path, moved: dict[str, list[str]], home: str) -> None:
    """In the SQLite store ``db``, replace the prefix ``old`` by ``home`` in the artifact locations of the
    experiments ``moved[old]``, their runs and their logged models."""
    # SQL on MLflow's tables, here only: MLflow has no API that changes an artifact location. It is fixed when an
    # experiment, run or logged model is created (create_experiment, create_run, create_logged_model), and no
    # update call of MlflowClient or of its stores (rename_experiment, update_run / update_run_info,
    # set_logged_model_tags, finalize_logged_model) takes one.
    with closing(sqlite3.connect(db)) as con, con:
        for old, experiments in sorted(moved.items()):
            for table, column in _ARTIFACT_COLUMNS:
                for exp in experiments:
                    con.execute(
                        f"update {table} set {column} = ? || substr({column}, ?) "
                        f"where experiment_id = ? and {column} like ? escape '\\'",
                        (home, len(old) + 1, int(exp), old.replace("%", r"\%").replace("_", r"\_") + "/%"),
                    )


# Logging runs, each through a client of an explicit store.


@store_errors
def experiment_id(client, name: str) -> str:
    """Get or create the experiment, with artifacts under the project root's ``mlruns/``.

    In a store shared by several projects, ``name`` may be another project's, with its artifacts in that
    project's ``mlruns/``: this project's runs then go to ``"name (root)"``, made once with artifacts in its own
    ``mlruns/`` and said so, never silently into another folder. An experiment made in a shared store carries
    ``PROJECT_TAG``: it stays where it is when the store's own project is copied or moved."""
    from mlflow.exceptions import MlflowException

    root, folder = project_root(), re.sub(r"[^\w.-]+", "_", name)
    theirs = client.get_experiment_by_name(name)
    if theirs is not None:
        if not _another_projects(theirs.artifact_location, root):
            return theirs.experiment_id
        name = f"{name} ({root})"
        if (ours := client.get_experiment_by_name(name)) is not None:
            return ours.experiment_id
    tags = {EXPERIMENT_KIND: "custom_model_development"}
    if own_store() is None:
        tags[PROJECT_TAG] = str(root)
    home = (root / "mlruns" / folder).as_uri()
    try:  # the kind makes MLflow 3's UI open the experiment on its runs and models, not on GenAI traces
        made = client.create_experiment(name, artifact_location=home, tags=tags)
    except MlflowException:  # another process created it first
        return client.get_experiment_by_name(name).experiment_id
    if theirs is not None:  # said once, when it is made
        print(
            f"note: MLflow experiment '{theirs.name}' in {client.tracking_uri} keeps its artifacts in another folder "
            f"({theirs.artifact_location}); this project's runs go to experiment '{name}', with artifacts in {home}"
        )
    return made


def _another_projects(location: str | None, root: Path) -> bool:
    """Whether ``location`` is a ``mlruns/`` folder on this machine other than ``root``'s (a server's or a
    bucket's location, or any other folder, is the store's choice, and kept)."""
    if not (location and re.match(r"(file://)?/.*/mlruns(/[^/]+)?$", location)):
        return False
    ours = ((root / "mlruns").as_uri(), str(root / "mlruns"))  # as the project writes it, as MLflow's default does
    return not any(location == mine or location.startswith(f"{mine}/") for mine in ours)


PROJECT_TAG = "gan-lab.project"  # on an experiment made in a shared store: the folder of the project that made it
EXPERIMENT_KIND = "mlflow.experimentKind"  # the tag MLflow 3's UI reads (its values are in its JS bundle only)


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
    try:
        run_id = json.loads(layout.RUN_INFO.read_text())["run_id"]
    except (OSError, ValueError, KeyError):
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
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri
    from mlflow.tracking.context.registry import resolve_tags

    for old in _generators(client, run):
        client.delete_logged_model(old.model_id)
    model = client.create_logged_model(  # as log_model would make it: the run's params, the context's tags
        experiment, name="generator", source_run_id=run_id, tags=resolve_tags(tags), params=run.data.params
    )
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        # mlflow.pytorch.log_model takes the run and the model (run_id=, model_id=: no active run needed) but no
        # store: it opens MlflowClient(<global tracking URI>), so that URI is this client's for this one call.
        with _use_tracking_uri(client.tracking_uri), _quiet("mlflow.pytorch"):
            mlflow.pytorch.log_model(
                G,
                name="generator",
                input_example=example,
                serialization_format="pickle",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
                run_id=run_id,
                model_id=model.model_id,
            )
    finally:  # _use_tracking_uri restores MLflow's global URI, and with it sets or unsets MLFLOW_TRACKING_URI:
        if saved is None:  # leave the environment as it was, whatever an earlier caller made the global
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
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
