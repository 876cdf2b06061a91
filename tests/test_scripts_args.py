"""scripts/*.py: a sweep's prepared data follows the set's content and the prepare params, and
every script answers no or bad arguments with its usage, not a traceback."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import yaml

from tests.conftest import ROOT


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fake_gan(monkeypatch, sweep) -> list[str]:
    """``gan prepare`` records what it read (the source's one file and the crop) as the prepared
    data; ``attributes`` and ``train`` do nothing: the test is of which data each run gets."""
    prepared = []

    def run(cmd, cwd, **kwargs):
        cwd = Path(cwd)
        if cmd[:2] == ["gan", "prepare"]:
            p = yaml.safe_load((cwd / "params.yaml").read_text())["prepare"]
            (cwd / "data/prepared").mkdir(parents=True)
            seen = {"image": (Path(p["source"]) / "a.png").read_text(), "crop": p["crop"]}
            (cwd / "data/prepared/manifest.json").write_text(json.dumps(seen))
            prepared.append(seen)
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(sweep.subprocess, "run", run)
    return prepared


def test_sweep_prepares_again_for_another_set_of_the_same_folder_name_or_other_prepare_params(
    tmp_path, monkeypatch, capsys
):
    sweep = _script("sweep")
    prepared = _fake_gan(monkeypatch, sweep)
    sets = {}
    for owner in ("mine", "theirs"):
        sets[owner] = tmp_path / owner / "icons"
        sets[owner].mkdir(parents=True)
        (sets[owner] / "a.png").write_text(f"{owner}'s image")
    out = tmp_path / "out"

    def data_of(name: str) -> dict:
        return json.loads((out / name / "icons/data/prepared/manifest.json").read_text())

    sweep.main(str(out), str(sets["mine"]), "first")
    sweep.main(str(out), str(sets["theirs"]), "second")  # trained on mine's images
    assert data_of("first")["image"] == "mine's image" and data_of("second")["image"] == "theirs's image"
    sweep.main(str(out), str(sets["mine"]), "padded", "prepare.crop=pad")  # the crop was ignored
    assert data_of("padded") == {"image": "mine's image", "crop": "pad"}
    sweep.main(str(out), str(sets["mine"]), "again")
    assert len(prepared) == 3  # the same set and params: prepared once
    (sets["mine"] / "a.png").write_text("mine's new image")
    sweep.main(str(out), str(sets["mine"]), "changed")
    assert data_of("changed")["image"] == "mine's new image"
    assert [json.loads(line)["set"] for line in (out / "results.jsonl").read_text().splitlines()] == ["icons"] * 5
