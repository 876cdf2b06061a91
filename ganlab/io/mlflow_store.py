"""The MLflow store: which one (one SQLite file at the project root, or the user's
``MLFLOW_TRACKING_URI``), opening it, its errors as one line, and re-homing a copied project.
Logging runs to it is ``io/tracking.py``; nothing else in the project imports MLflow.

Where the root is: DVC names it in ``DVC_ROOT`` for every stage it runs, and for ``dvc exp run
--temp`` and ``--queue``, which execute in a copy under ``.dvc/tmp/exps/`` that is deleted
afterwards, it names the project they were queued from, so their records land in the store
that the project's ``mlflow ui`` shows. Run by hand (``gan train``), the root is the working
folder. Finding the store (``project_root``, ``tracking_uri``, ``own_store``) is kept apart from
opening it: everything talks to MLflow through an ``MlflowClient`` of an explicit store, opened
by ``open_store`` (no global tracking URI but for the one call that takes no store,
``as_global_store``; no fluent active run).

MLflow stores artifact locations as absolute paths. A project folder that was copied or moved
still points at the old folder's ``mlruns/``, so every later write would land in the original;
the first client of a relocated project's own store rewrites those paths to its own ``mlruns/``
(``_rehome``) and says so. Only its own store (``own_store``): one store for several projects, a
linked ``mlflow.db`` or a shared ``MLFLOW_TRACKING_URI``, is never rewritten, and a project logs to
it in an experiment whose artifacts are in its own ``mlruns/`` (``experiment_id``). MLflow's proxied
artifacts (``mlflow server --artifacts-destination``) keep no path in the store, but every stage
would then need a running server, and ``mlflow ui`` alone would no longer show the images.

``import mlflow`` costs seconds, so it happens inside the functions that need it.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import re
import sqlite3
import stat
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

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
    try:  # the kind opened the experiment on its runs until MLflow's UI got its GenAI / Model training switch
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


@contextmanager
def as_global_store(uri: str) -> Iterator[None]:
    """MLflow's global tracking URI set to ``uri`` for the calls inside, and everything as it was after.

    For ``mlflow.pytorch.log_model`` alone: it takes the run and the model (``run_id=``,
    ``model_id=``) but no store, and opens ``MlflowClient(<global tracking URI>)``. MLflow's public
    ``set_tracking_uri`` has no way back to "never set", so this is the one use of a private MLflow
    API (``_use_tracking_uri``, the scoped setter MLflow's own code uses). On exit it restores
    MLflow's global URI and with it sets or unsets ``MLFLOW_TRACKING_URI`` to match whatever an
    earlier caller made the global, so the environment is put back as it was here, by hand."""
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if saved is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = saved
