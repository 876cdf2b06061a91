"""The suite passes in a workspace a user has worked in, and leaves it as it found it.

The tests of the shipped files (params.yaml, dvc.yaml) read them as committed: a user's own
`dvc exp run -S`, `dvc repro` and a killed `gan train` change params.yaml, dvc.lock, the reports
and leave files behind in models/, and none of that may fail a test or be touched by one.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# The tests that read files from the project's root; each runs in the used clone below.
READ_THE_ROOT = [
    "tests/test_dvc_params_form.py",
    "tests/test_structure.py",
    "tests/test_offline_plots.py",
    "tests/test_params.py",
    "tests/test_hostile_params.py::test_the_shipped_params_file_loads_through_the_hardened_loader",
    "tests/test_train.py::test_the_resume_fingerprint_follows_the_roles_of_the_train_fields",
]


def _git(args: list[str], cwd: Path) -> str:
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci", "-c", "commit.gpgsign=false"]
    return subprocess.run([*git, *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def _snapshot(root: Path) -> dict:
    skip = ("__pycache__", ".pytest_cache", ".git")
    return {
        p.relative_to(root): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if p.is_file() and not any(part in skip for part in p.relative_to(root).parts)
    }


def _use(clone: Path, store: Path) -> None:
    """What a user's runs leave in the workspace, none of it committed."""
    from dvc.utils.hydra import apply_overrides
    from mlflow.tracking import MlflowClient

    # `dvc exp run -S ...` rewrites params.yaml in place (tests/test_dvc_params_form.py)
    apply_overrides(clone / "params.yaml", ["train.lr=0.002", "prepare.source=data/raw", "train.kimg=3"])
    # `dvc repro`: other curves, other metrics, other hashes in dvc.lock
    train = clone / "reports/train"
    (train / "history.csv").write_text(
        "kimg,epoch,loss_d,loss_g,real_score,fake_score,augment_p,r_t\n1,0,9,9,0,0,0,0\n"
    )
    (train / "eval_history.csv").write_text("kimg,fd\n1,123.0\n")
    (train / "timing.csv").write_text("kimg,images_per_s,seconds\n1,5.0,200.0\n")
    (clone / "reports/metrics.json").write_text('{"swd": 1.5, "fd": null}\n')
    lock = clone / "dvc.lock"
    lock.write_text(re.sub(r"md5: [0-9a-f]{32}", "md5: " + "0" * 32, lock.read_text()))
    (clone / "reports/plots").mkdir(exist_ok=True)
    (clone / "reports/plots/index.html").write_text("<html>an old page</html>\n")
    # a `gan train` killed mid-write: a torn checkpoint, its lock, its run record
    (clone / "models/checkpoint.pt").write_bytes(b"PK\x03\x04 torn")
    (clone / "models/.train.lock").write_text("4242\n")
    (clone / "models/run.json").write_text('{"run_id": "0123", "experiment_id": "1"}\n')
    # and the MLflow store those runs wrote to
    shutil.copy(store, clone / "mlflow.db")
    client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
    client.create_run(client.create_experiment("gan-lab", artifact_location=(clone / "mlruns").as_uri()))


@pytest.mark.slow  # a second pytest process: 30-60 s of CPU
def test_the_tests_of_shipped_files_pass_in_a_used_workspace_and_leave_it_untouched(tmp_path, empty_store):
    clone = tmp_path / "clone"
    _git(["clone", "-q", str(ROOT), str(clone)], tmp_path)
    # the code and tests as they are here, committed in the clone (the shipped files stay as committed)
    for name in _git(["ls-files", "-co", "--exclude-standard", "tests", "ganlab", "stages"], ROOT).split():
        if (ROOT / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, clone / name)
    _git(["add", "-A"], clone)
    _git(["commit", "-q", "--allow-empty", "--no-verify", "-m", "the code under test"], clone)
    _use(clone, empty_store)
    changed = _git(["status", "--porcelain"], clone)
    assert {"params.yaml", "dvc.lock", "reports/metrics.json", "reports/train/history.csv"} <= {
        line[3:] for line in changed.splitlines()
    }, changed
    before = _snapshot(clone)

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider", "-o", "addopts=-ra"]
        + ["--basetemp", str(tmp_path / "inner"), *READ_THE_ROOT],
        cwd=clone,
        env={**env, "PYTHONPATH": str(clone)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout and " skipped" not in done.stdout, done.stdout[-2000:]
    assert _snapshot(clone) == before, "a test wrote into the workspace"
    assert _git(["status", "--porcelain"], clone) == changed
