import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ganlab.params import Params, parse_params

ROOT = Path(__file__).resolve().parents[1]
# The pipeline's stages in dvc.yaml's order (the order `dvc repro` runs them from scratch); each is
# also the `gan` command it runs and, with `_` for `-`, its module in stages/.
STAGES: list[str] = list(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])


def committed(name: str) -> str:
    """``name`` as the checkout's HEAD holds it, not as the working tree has it: a user's own runs
    change params.yaml (`dvc exp run -S`), dvc.lock and the reports (`dvc repro`), and a test of
    the shipped files must pass in that workspace too. Outside a git checkout (an unpacked sdist)
    the file itself is all there is."""
    if not (ROOT / ".git").exists():
        return (ROOT / name).read_text(encoding="utf-8")
    show = ["git", "show", f"HEAD:{name}"]
    return subprocess.run(show, cwd=ROOT, capture_output=True, encoding="utf-8", check=True).stdout


def committed_copy(name: str, folder: Path) -> Path:
    """The committed ``name`` written into ``folder``, for what reads a file by path."""
    path = folder / Path(name).name
    path.write_text(committed(name), encoding="utf-8")
    return path


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one worker per core this process may use (a container's
    cpuset, not the host's count), at most 8: each worker holds torch and MLflow (~0.5 GB), and
    past 8 the one long pipeline test, not the spread, sets the wall time."""
    return min(_cores(), 8)


_WORKERS = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
USER_THREADS = os.environ.get("OMP_NUM_THREADS")
if _WORKERS and USER_THREADS is None:
    # Workers share the cores: each at the default thread count (all cores) spins against the others
    # (measured on 2 cores, fast lane: 171 CPU s at 2 threads a worker, 85 CPU s at 1). Set before the
    # tests import torch, and exported, so the `gan`/`dvc` subprocesses a test starts inherit it.
    # A thread count the user exports (OMP_NUM_THREADS=2 python -m pytest) is kept.
    os.environ["OMP_NUM_THREADS"] = str(max(1, _cores() // int(_WORKERS)))


@pytest.fixture(autouse=True)
def no_inherited_store(monkeypatch):
    """mlflow.set_tracking_uri() also exports MLFLOW_TRACKING_URI; without this, one test's
    store would leak into the subprocesses of the next."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """One MLflow SQLite store built once: several processes creating one at the same moment
    race on its migrations, and building one costs seconds; copying it costs milliseconds."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, empty_store, pytestconfig) -> Path:
    """The project with TINY params after one full `dvc repro`: built once a session (about a
    minute), shared by every test that starts from a finished pipeline. Read it, never change it:
    a test that runs anything there works in its own copy (``tests.project.copy_project``, about a
    second). Under pytest-xdist the first worker to take the lock builds it for all of them."""
    from filelock import FileLock

    from tests.project import new_project, repro

    shared = tmp_path_factory.getbasetemp()
    if hasattr(pytestconfig, "workerinput"):  # an xdist worker (not a pytest a worker's test started)
        shared = shared.parent  # the session's folder, above each worker's own
    base, done = shared / "pipeline-run", shared / "pipeline-run.done"
    with FileLock(str(shared / "pipeline-run.lock")):
        if not done.exists():
            shutil.rmtree(base, ignore_errors=True)  # a worker that failed building it left this
            base.mkdir()
            ran = repro(new_project(base, empty_store))
            assert ran == STAGES, ran
            done.touch()
    return base


@pytest.fixture
def workdir(tmp_path, monkeypatch, empty_store) -> Path:
    """An empty project root (cwd) with its own MLflow store."""
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return tmp_path


TINY = {
    "prepare": {"image_size": 32, "demo": {"count": 40, "seed": 0}},
    "model": {"latent_size": 16, "g_width": 8, "d_width": 8},
    "train": {
        "kimg": 0.064,
        "batch_size": 16,
        "tick_kimg": 0.016,
        "grids": 4,
        "checkpoint_kimg": 0.016,  # 4 steps, each a tick
        "eval_samples": 16,  # the evaluation at the end: 256 (the default) cost 2 of a run's 3.5 CPU seconds
        "stop": {"patience": 0},
    },  # the full length: a few steps' fd is noise
    "sample": {"count": 3},
    "latent_study": {"one_hot_dims": [0, 5], "features": {3: 50.0, 12: -50.0}, "sweep": {"dim": 3, "steps": 4}},
    "evaluate": {"samples": 64},
}


def straight_then_killed(params: Params, monkeypatch, tick: int = 3):
    """Train ``params`` straight through, then again from scratch killed at ``tick``: the straight
    run's final checkpoint (what a resume must reproduce), and the real history writer to restore."""
    from ganlab import layout
    from ganlab.io import checkpoint
    from stages import train

    train.run(params)
    straight = checkpoint.load(layout.CHECKPOINT)
    layout.CHECKPOINT.unlink()
    real_append = interrupt_at_tick(monkeypatch, tick)
    with pytest.raises(KeyboardInterrupt):
        train.run(params)
    return straight, real_append


def interrupt_at_tick(monkeypatch, tick: int, after_writing: bool = False):
    """Make the next run stop with KeyboardInterrupt at its ``tick``-th history row, as a kill
    there would (before the row is written, or just after); returns the real writer, to restore."""
    from ganlab import hooks

    real, calls = hooks.append_history, {"n": 0}

    def append(row, timing):
        calls["n"] += 1
        if after_writing:
            real(row, timing)
        if calls["n"] == tick:
            raise KeyboardInterrupt("simulated kill")
        if not after_writing:
            real(row, timing)

    monkeypatch.setattr(hooks, "append_history", append)
    return real


def run_id(root: Path = Path(".")) -> str:
    """The MLflow run of the training in ``root`` (models/run.json, beside the checkpoint)."""
    return json.loads((root / "models/run.json").read_text())["run_id"]


def tiny(**sections) -> Params:
    """Small enough to train in about a second: 32 px, widths 8, 40 demo faces, 4 steps of 16."""
    raw = {k: dict(v) for k, v in TINY.items()}
    for name, values in sections.items():
        raw[name] = (
            {**raw.get(name, {}), **values} if isinstance(values, dict) else values
        )  # top-level keys: device, generator
    return parse_params(raw)
