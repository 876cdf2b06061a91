from pathlib import Path

from ganlab.io.mlflow_store import project_root, tracking_uri


def test_dvc_temp_workspaces_resolve_to_the_real_project(tmp_path):
    assert project_root(Path("/home/me/lab/.dvc/tmp/exps/tmpab12cd")) == Path("/home/me/lab")
    assert project_root(Path("/home/me/lab/.dvc/tmp/exps/run/xyz/sub")) == Path("/home/me/lab")
    assert project_root(tmp_path) == tmp_path.resolve()


def test_tracking_uri_is_the_project_sqlite_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    assert tracking_uri() == "sqlite:////elsewhere.db"
