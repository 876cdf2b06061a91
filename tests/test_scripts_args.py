"""scripts/*.py: a sweep's prepared data follows the set's content and the prepare params, and
every script answers no or bad arguments with its usage, not a traceback."""

from __future__ import annotations

import importlib.util
import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
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


def _main(monkeypatch, capsys, script: str, *args: str) -> str:
    """The script run as `python scripts/SCRIPT.py ARGS` (its __main__ block, in this process):
    what it said on leaving, which must be its usage (exit code 2) or one error line."""
    monkeypatch.setattr(sys, "argv", [script, *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")
    if e.value.code == 2:
        err = capsys.readouterr().err
        assert err.startswith("usage:\n    python scripts/" + script), err
        return "usage"
    assert isinstance(e.value.code, str) and "\n" not in e.value.code, e.value.code
    return e.value.code


def test_scripts_answer_no_or_bad_arguments_with_usage_or_one_line(tmp_path, monkeypatch, capsys):
    """They were IndexError, KeyError, FileNotFoundError, TypeError, an uncaught UserError, or
    (panel_table.py with no run) two empty tables."""
    run = tmp_path / "set"
    run.mkdir()
    (tmp_path / "scores.jsonl").write_text("not json\n")
    said = {
        args: _main(monkeypatch, capsys, *args)
        for args in [
            ("sweep.py",),
            ("sweep.py", "--plot"),
            ("sweep.py", str(tmp_path), str(run)),
            ("sweep.py", "--plot", str(tmp_path), "curves.png"),
            ("sweep.py", str(tmp_path / "out"), str(run), "n", "train"),
            ("sweep.py", str(tmp_path / "out"), str(run), "n", "trian.lr=1"),
            ("sweep.py", str(tmp_path / "out"), str(tmp_path / "missing"), "n"),
            ("panel_table.py",),
            ("panel_table.py", "--scores"),
            ("panel_table.py", str(run)),
            ("panel_table.py", "--scores", str(tmp_path / "scores.jsonl"), str(run)),
            ("contact_sheet.py",),
            ("contact_sheet.py", "sheet.png"),
            ("contact_sheet.py", "sheet.png", str(run)),
            ("contact_sheet.py", "sheet.png", str(run), "no caption"),
        ]
    }
    assert list(said.values()) == [
        "usage",
        "usage",
        "usage",
        f"error: {tmp_path}/results.jsonl: No such file or directory",
        "error: override 'train': not key=value (e.g. train.lr=0.0005)",
        "error: override 'trian.lr=1': params.yaml has no section trian",
        f"error: SET '{tmp_path}/missing': no such folder (a folder of images, or demo)",
        "usage",
        "usage",
        f"error: {run}: no params.yaml: not a run folder scripts/sweep.py made (OUT/NAME/SET)",
        f'error: --scores {tmp_path}/scores.jsonl: line 1 is not {{"run": ..., "rows": [...]}}',
        "usage",
        "usage",
        f"error: {run}/data/prepared/dataset.pt: dataset not found (run `gan prepare` first)",
        "error: 'no caption': not caption=RUN (or caption=RUN:last, caption=RUN@MINUTES)",
    ]
    assert not (tmp_path / "out").exists()  # refused before any run folder was made
