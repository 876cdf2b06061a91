"""A copy of the project in a temp folder, driven through `dvc` and `gan` as a user would."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ROOT, TINY, committed

BIN = str(Path(sys.executable).parent)


def run(cmd: list[str], cwd: Path, check: bool = True, starts_daemons: bool = False) -> subprocess.CompletedProcess:
    """``starts_daemons``: the command leaves processes behind (`dvc queue start`'s workers), which
    inherit its output; read through pipes, the call would wait for them (a worker that lingers
    after its tasks held one open past 600 s), so their output is dropped instead."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if starts_daemons:
        out = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
        out.stdout = out.stderr = ""
    else:
        out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def repro(project: Path) -> list[str]:
    """The stages `dvc repro` ran, in order."""
    return re.findall(r"Running stage '([\w-]+)'", run([sys.executable, "-m", "dvc", "repro"], project).stdout)


def copy_project(src: Path, dst: Path) -> Path:
    """A copy of a project, its DVC cache and MLflow store included, as a user's `cp -r` makes one:
    the copy's first stage points its store at the copy (the store keeps absolute artifact paths)."""
    shutil.copytree(src, dst, symlinks=True)
    return dst


def set_param(project: Path, section: str, key: str, value) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    if key is None:
        params[section] = value
    else:
        params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def new_project(dst: Path, store: Path, **overrides: dict) -> Path:
    """The project's pipeline and code in ``dst`` with TINY params (plus ``overrides``), a git
    repository, DVC and its own MLflow store; nothing run yet."""
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(ROOT / name, dst / name)
    for package in ("stages", "ganlab"):
        shutil.copytree(ROOT / package, dst / package, ignore=shutil.ignore_patterns("__pycache__"))
    (dst / "data" / "raw").mkdir(parents=True)
    shutil.copy(ROOT / "data" / "raw" / "README.md", dst / "data" / "raw" / "README.md")
    params = yaml.safe_load(committed("params.yaml"))
    for section, values in {**TINY, **overrides}.items():
        if isinstance(params.get(section), dict):
            params[section].update({**TINY.get(section, {}), **values})
        else:
            params[section] = values
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(store, dst / "mlflow.db")
    run(["git", "init", "-q"], dst)
    run([sys.executable, "-m", "dvc", "init", "-q"], dst)
    return dst
