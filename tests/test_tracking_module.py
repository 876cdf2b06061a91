"""ganlab/io/mlflow_store.py (the store) and ganlab/io/tracking.py (runs) talk to MLflow one way:
clients of an explicit store, no global tracking URI but in one wrapped call, no fluent run, no
environment changed by importing them, and SQL on MLflow's tables in one function only (the
artifact-location rewrite of a copied project, which MLflow has no API for)."""

import ast
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STORE, RUNS = ROOT / "ganlab/io/mlflow_store.py", ROOT / "ganlab/io/tracking.py"
HTTP_KEYS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "MLFLOW_HTTP_REQUEST_TIMEOUT")


def clean_python(code: str, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter whose environment holds nothing but ``PYTHONPATH`` and ``env``."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={"PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_importing_the_module_changes_no_environment_and_imports_no_mlflow(tmp_path):
    code = (
        "import json, os, sys\n"
        "before = dict(os.environ)\n"
        "import ganlab.io.mlflow_store, ganlab.io.tracking\n"
        "print(json.dumps([before, dict(os.environ), 'mlflow' in sys.modules]))\n"
    )
    before, after, mlflow_imported = json.loads(clean_python(code, tmp_path).stdout.splitlines()[-1])
    assert after == before and not mlflow_imported


def test_opening_a_store_sets_telemetry_off_before_mlflow_loads_and_http_limits_for_http_stores_only(
    tmp_path, empty_store
):
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    code = (
        "import json, os, sys\n"
        "from ganlab.io import mlflow_store, tracking\n"
        "keys = ['MLFLOW_DISABLE_TELEMETRY', *sys.argv[2:]]\n"
        "mlflow_store.open_store(sys.argv[1]).search_experiments()\n"
        "from mlflow.telemetry import get_telemetry_client\n"
        "sqlite = {k: os.environ.get(k) for k in keys}\n"
        "mlflow_store.open_store('http://127.0.0.1:9')\n"
        "http = {k: os.environ.get(k) for k in keys}\n"
        "print(json.dumps([get_telemetry_client() is None, sqlite, http]))\n"
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = clean_python(code, tmp_path, uri, *HTTP_KEYS, HOME=str(tmp_path), MLFLOW_HTTP_REQUEST_TIMEOUT="30")
    no_telemetry, sqlite, http = json.loads(out.stdout.splitlines()[-1])
    assert no_telemetry
    assert sqlite == {
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": None,
        "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": None,
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",  # the user's own, kept
    }
    assert http == {**sqlite, "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def _functions(tree: ast.Module) -> dict[ast.AST, str]:
    """Each node of the module -> the name of the top-level function or class it is in ('' at module level)."""
    owner = {}
    for top in tree.body:
        name = top.name if isinstance(top, (ast.FunctionDef, ast.ClassDef)) else ""
        for node in ast.walk(top):
            owner[node] = name
    return owner


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _uses(path: Path) -> dict[str, set[str]]:
    """Where a module calls MLflow's API, the global URI, SQL and the environment: function names."""
    text = path.read_text()
    tree = ast.parse(text)
    owner = _functions(tree)
    for forbidden in ("mlflow.set_tracking_uri(", "mlflow.start_run(", "mlflow.end_run(", "mlflow.set_tags("):
        assert forbidden not in text
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    return {
        "fluent": {_dotted(c.func) for c in calls if _dotted(c.func).startswith("mlflow.")},
        "private": {owner[n] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and "._" in (n.module or "")},
        "global_uri": {owner[c] for c in calls if _dotted(c.func) == "_use_tracking_uri"},
        "sqlite": {owner[n] for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "sqlite3"},
        "executes": {
            owner[c] for c in calls if isinstance(c.func, ast.Attribute) and c.func.attr in ("execute", "executemany")
        },
        "env_writes": {
            owner[c]
            for c in calls
            if _dotted(c.func) in ("os.environ.setdefault", "os.environ.update", "os.environ.pop", "os.putenv")
        }
        | {
            owner[t]
            for n in ast.walk(tree)
            if isinstance(n, (ast.Assign, ast.AugAssign, ast.Delete))
            for t in (n.targets if isinstance(n, (ast.Assign, ast.Delete)) else [n.target])
            if isinstance(t, ast.Subscript) and _dotted(t.value) == "os.environ"
        },
    }


def test_the_modules_use_the_client_api_and_sql_and_a_private_api_in_one_justified_function_each():
    store, runs = _uses(STORE), _uses(RUNS)
    assert runs["fluent"] <= {"mlflow.pytorch.log_model"}, runs["fluent"]  # the rest through MlflowClient
    assert not store["fluent"] and not (runs["private"] | runs["global_uri"] | runs["sqlite"] | runs["env_writes"])
    # log_model takes no store: the one private API, scoped to its call, with the environment put back
    assert store["private"] == store["global_uri"] == {"as_global_store"}
    assert store["sqlite"] == store["executes"] == {"_rewrite_artifact_roots"}
    assert store["env_writes"] == {"open_store", "as_global_store"}  # the defaults, and the URI put back
    text = STORE.read_text()
    tree = ast.parse(text)
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import) and any(a.name == "sqlite3" for a in n.names)]
    assert len(imports) == 1 and _functions(tree)[imports[0]] == ""  # at the top (tests/test_structure.py)
    for name, why in (
        ("_rewrite_artifact_roots", "MLflow has no API that changes an artifact location"),
        ("as_global_store", "the one use of a private MLflow"),
    ):
        node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
        assert why in " ".join(ast.get_source_segment(text, node).split())


@pytest.fixture
def store(tmp_path, monkeypatch, empty_store) -> Path:
    """A project root (cwd) with a copy of the empty store."""
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(empty_store, root / "mlflow.db")
    monkeypatch.chdir(root)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    return root


def test_a_training_run_is_logged_through_the_client_with_what_start_run_gave_it(store):
    from ganlab.io import mlflow_store, tracking

    run = tracking.TrainingRun("exp", None, "demo-32px", client=mlflow_store.project_client())
    run.log_params({"train.lr": 0.002, "model.widths": [1, 2]}, {"dataset_size": "40"})
    run.log_metrics({"train/loss_d": 1.5, "train/loss_g": float("nan")}, step=16)
    run.set_tags({"best_kimg": 0.016})
    run.finish()
    run.finish("FAILED")  # the failure path after a finished end: changes nothing, as end_run did
    client = mlflow_store.open_store(mlflow_store.tracking_uri())
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.info.run_name == "demo-32px"
    assert got.info.artifact_uri.startswith((store / "mlruns" / "exp").as_uri())
    assert got.data.params == {"train.lr": "0.002", "model.widths": "[1, 2]"} and got.data.metrics == {
        "train/loss_d": 1.5
    }
    tags = got.data.tags
    assert tags["dataset_size"] == "40" and tags["best_kimg"] == "0.016"
    assert {"mlflow.user", "mlflow.source.name", "mlflow.source.type", "mlflow.runName"} <= set(tags)

    resumed = tracking.TrainingRun("exp", run.run_id, "ignored")
    assert resumed.resumed and resumed.run_id == run.run_id and resumed.logged_through == 16
    assert client.get_run(run.run_id).info.status == "RUNNING"
    resumed.finish("KILLED")
    assert client.get_run(run.run_id).info.status == "KILLED"
    assert "MLFLOW_TRACKING_URI" not in os.environ  # nothing set MLflow's global store


def test_a_copied_store_is_rehomed_once_by_its_first_client(store, tmp_path, monkeypatch, capsys):
    from ganlab.io import mlflow_store, tracking

    run = tracking.TrainingRun("exp", None, "first")
    run.finish()
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    monkeypatch.chdir(copy)
    capsys.readouterr()
    client = mlflow_store.project_client()
    assert f"it now points at {(copy / 'mlruns').as_uri()}" in capsys.readouterr().out
    assert client.get_run(run.run_id).info.artifact_uri.startswith((copy / "mlruns" / "exp").as_uri())
    assert client.get_experiment_by_name("exp").artifact_location == (copy / "mlruns" / "exp").as_uri()
    mlflow_store.project_client()
    assert "now points at" not in capsys.readouterr().out  # said once
    original = mlflow_store.open_store(f"sqlite:///{store / 'mlflow.db'}")
    assert original.get_run(run.run_id).info.artifact_uri.startswith((store / "mlruns").as_uri())

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    mlflow_store.project_client()  # the user's own store: not ours to rewrite
    assert "now points at" not in capsys.readouterr().out


def _artifact_rows(db: Path) -> set[tuple]:
    with closing(sqlite3.connect(db)) as con:
        return {
            (table, *row)
            for table, column in (("experiments", "artifact_location"), ("runs", "artifact_uri"))
            for row in con.execute(f"select experiment_id, {column} from {table}")
        }


@pytest.mark.parametrize("shared_by", ["a symbolic link", "a hard link", "MLFLOW_TRACKING_URI"])
def test_two_projects_on_one_store_keep_their_runs_and_artifacts_in_their_own_folders(
    store, tmp_path, monkeypatch, capsys, shared_by
):
    """A second project on a linked store used to re-home every run of the first to its own mlruns/ (the
    first's UI lost every image and model); on a shared MLFLOW_TRACKING_URI, its artifacts landed in the
    first project's mlruns/."""
    from ganlab.io import mlflow_store, tracking

    first = tracking.TrainingRun("gan-lab", None, "first")
    first.finish()
    before = _artifact_rows(store / "mlflow.db")
    second = tmp_path / "second"
    second.mkdir()
    if shared_by == "a symbolic link":
        (second / "mlflow.db").symlink_to(store / "mlflow.db")
    elif shared_by == "a hard link":
        (second / "mlflow.db").hardlink_to(store / "mlflow.db")
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.chdir(second)
    capsys.readouterr()
    run = tracking.TrainingRun("gan-lab", None, "second")
    (second / "history.csv").write_text("kimg\n")
    run.log_artifact(second / "history.csv")
    run.finish()
    out = capsys.readouterr().out
    assert "now points at" not in out
    assert before <= _artifact_rows(store / "mlflow.db")  # the first project's rows, as they were
    client = mlflow_store.open_store(f"sqlite:///{store / 'mlflow.db'}")
    own = client.get_experiment(run.experiment_id)
    assert own.name == f"gan-lab ({second})" and own.artifact_location == (second / "mlruns" / "gan-lab").as_uri()
    assert f"this project's runs go to experiment 'gan-lab ({second})'" in out
    assert list(second.glob("mlruns/gan-lab/*/artifacts/history.csv")) and not list(store.rglob("history.csv"))
    assert tracking.TrainingRun("gan-lab", None, "again").experiment_id == run.experiment_id
    assert "note:" not in capsys.readouterr().out  # said once, when it was made

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(store)  # the first project again, on its own store
    assert tracking.TrainingRun("gan-lab", None, "third").experiment_id == first.experiment_id
    assert client.get_run(run.run_id).info.artifact_uri.startswith((second / "mlruns").as_uri())
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    monkeypatch.chdir(copy)  # a copy of it re-homes its own runs, not the second project's
    mlflow_store.project_client()
    copied = mlflow_store.open_store(f"sqlite:///{copy / 'mlflow.db'}")
    assert copied.get_run(first.run_id).info.artifact_uri.startswith((copy / "mlruns").as_uri())
    assert copied.get_run(run.run_id).info.artifact_uri.startswith((second / "mlruns").as_uri())


def test_the_generator_is_logged_to_the_training_run_without_a_fluent_run_or_a_global_store(store, monkeypatch):
    import mlflow
    import mlflow.pytorch
    import numpy as np
    import torch

    from ganlab import layout
    from ganlab.io import mlflow_store, tracking

    run = tracking.TrainingRun("exp", None, "first")
    run.finish()
    layout.RUN_INFO.parent.mkdir(parents=True)
    layout.RUN_INFO.write_text(json.dumps({"run_id": run.run_id}))
    G = torch.nn.Linear(4, 3)
    example = np.zeros((2, 4), dtype=np.float32)
    user_uri = f"sqlite:///{store / 'mlflow.db'}"  # the same store, named by the user
    monkeypatch.setenv("MLFLOW_TRACKING_URI", user_uri)
    for kimg in ("1", "2"):  # the second replaces the first
        tracking.log_generator(G, example, {"which": "best", "kimg": kimg})
    assert os.environ["MLFLOW_TRACKING_URI"] == user_uri and mlflow.active_run() is None
    client = mlflow_store.open_store(user_uri)
    exp = client.get_run(run.run_id).info.experiment_id
    models = [m for m in client.search_logged_models([exp]) if m.name == "generator"]
    assert len(models) == 1 and models[0].source_run_id == run.run_id
    assert models[0].tags["kimg"] == "2" and "mlflow.user" in models[0].tags
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED" and got.data.tags["generator.kimg"] == "2"
    assert models[0].model_id in {o.model_id for o in got.outputs.model_outputs}  # MLflow keeps no order among them
    # from its artifact location: a models:/ URI would go through the global store, which earlier tests may have set
    loaded = mlflow.pytorch.load_model(client.get_logged_model(models[0].model_id).artifact_location)
    x = torch.randn(2, 4)
    torch.testing.assert_close(loaded(x), G(x))


def test_final_numbers_go_on_the_training_run_and_its_logged_generator_whichever_stage_runs_first(store):
    """evaluate's headline numbers land on the training run as final/... and on its generator
    model; a generator logged after them (sample rerun) carries them too."""
    import json

    import numpy as np
    import torch

    from ganlab import layout
    from ganlab.io import mlflow_store, tracking

    run = tracking.TrainingRun("exp", None, "demo-32px-dcgan-1kimg")
    run.finish()
    layout.RUN_INFO.parent.mkdir(parents=True, exist_ok=True)
    layout.RUN_INFO.write_text(json.dumps({"run_id": run.run_id}))
    client = mlflow_store.project_client()
    G = torch.nn.Linear(4, 3)
    tracking.log_generator(G, np.zeros((2, 4), dtype=np.float32), {"which": "last"})
    with tracking.stage_run("evaluate", {}) as mlrun:
        mlrun.log_final({"fd_ratio": 4.5, "recall": float("nan")})
    assert client.get_run(run.run_id).data.metrics == {"final/fd_ratio": 4.5}

    def model_metrics():
        (model,) = tracking._generators(client, client.get_run(run.run_id))
        return {m.key: m.value for m in client.get_logged_model(model.model_id).metrics}, model

    assert model_metrics()[0] == {"final/fd_ratio": 4.5}
    tracking.log_generator(G, np.zeros((2, 4), dtype=np.float32), {"which": "last"})  # sample reruns later
    metrics, model = model_metrics()
    assert metrics == {"final/fd_ratio": 4.5}
    from urllib.parse import unquote, urlparse

    from mlflow.models import Model

    # read from its artifact location: a models:/ URI goes through MLflow's global store, which a test before may set
    where = unquote(urlparse(client.get_logged_model(model.model_id).artifact_location).path)
    assert Model.load(where).signature is not None  # from the input example


def test_mark_killed_touches_only_a_running_run(store):
    from ganlab.io import mlflow_store, tracking

    client = mlflow_store.project_client()
    running = tracking.TrainingRun("exp", None, "a")
    done = tracking.TrainingRun("exp", None, "b")
    done.finish()
    assert tracking.mark_killed(running.run_id) and not tracking.mark_killed(done.run_id)
    assert not tracking.mark_killed("0" * 32)
    assert client.get_run(running.run_id).info.status == "KILLED"
    assert client.get_run(done.run_id).info.status == "FINISHED"


def test_logging_the_generator_leaves_the_environment_as_it_was_whatever_mlflows_global_uri(store, tmp_path):
    """A caller before (a test, a notebook) may have set MLflow's global URI elsewhere: logging the
    generator must not leave MLFLOW_TRACKING_URI pointing there (the next stage would log to it)."""
    import json

    import mlflow
    import numpy as np
    import torch

    from ganlab import layout
    from ganlab.io import tracking

    run = tracking.TrainingRun("exp", None, "a")
    run.finish()
    layout.RUN_INFO.parent.mkdir(parents=True, exist_ok=True)
    layout.RUN_INFO.write_text(json.dumps({"run_id": run.run_id}))
    elsewhere = f"sqlite:///{tmp_path / 'elsewhere.db'}"
    mlflow.set_tracking_uri(elsewhere)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        tracking.log_generator(torch.nn.Linear(4, 3), np.zeros((2, 4), dtype=np.float32), {"which": "last"})
        assert "MLFLOW_TRACKING_URI" not in os.environ
    finally:
        mlflow.set_tracking_uri("")
        os.environ.pop("MLFLOW_TRACKING_URI", None)
