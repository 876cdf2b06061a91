"""The link policy (docs/robustness.md, "Links"): an output is replaced, never written through (DVC's
symlink and hardlink caches stay intact); a folder that holds outputs is followed; a link in
place of a folder a stage replaces whole, or of a file a repository could plant, is refused
before any work."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from ganlab import layout
from ganlab.errors import UserError
from tests.conftest import tiny
from tests.project import copy_project, repro, run, set_param


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _cache_files(project: Path) -> list[Path]:
    return sorted(p for p in (project / ".dvc/cache/files/md5").rglob("*") if p.is_file())


def _kept_objects(project: Path) -> set[str]:
    """The cache objects the workspace's dvc.lock needs: every cached output (``cache: false`` ones
    are plain files in the workspace), and for a folder its .dir listing and every file in it."""
    stages = yaml.safe_load((project / "dvc.yaml").read_text())["stages"]
    uncached = {
        next(iter(out))
        for stage in stages.values()
        for kind in ("outs", "metrics", "plots")
        for out in stage.get(kind, [])
        if isinstance(out, dict) and next(iter(out.values())).get("cache") is False
    }
    kept = set()
    for stage in yaml.safe_load((project / "dvc.lock").read_text())["stages"].values():
        for out in stage.get("outs", []):
            if out["path"] in uncached:
                continue
            kept.add(out["md5"])
            if out["md5"].endswith(".dir"):
                listing = project / ".dvc/cache/files/md5" / out["md5"][:2] / out["md5"][2:]
                kept |= {entry["md5"] for entry in json.loads(listing.read_text())}
    return kept


def _gc_would_remove(project: Path) -> set[str]:
    said = run([sys.executable, "-m", "dvc", "gc", "-w", "--dry", "-f"], project).stdout
    return {line.split("/files/md5/")[1].replace("/", "") for line in said.splitlines() if "/files/md5/" in line}


def _assert_cache_intact(project: Path) -> None:
    files = _cache_files(project)
    assert files
    for path in files:
        name = path.parent.name + path.name
        assert _md5(path) == name.removesuffix(".dir"), f"{path}: its bytes no longer hash to its name"


@pytest.mark.slow
def test_dvc_link_caches_stay_intact_through_reruns_and_direct_runs(pipeline_run, tmp_path):
    """With `dvc config cache.type symlink` (or hardlink) every output is a link into .dvc/cache,
    persistent ones (the checkpoint, the grids) included: writing through one would change the cache
    object under its name. Runs `gan train` and `gan sample` directly too, as a user does after
    `dvc checkout`: `dvc repro` copies persistent outputs before it runs a stage, a direct run does not.
    One project goes through both cache types in turn (`dvc checkout --relink` makes the links), each
    extending the run once more."""
    project = copy_project(pipeline_run, tmp_path / "project")
    dvc = [sys.executable, "-m", "dvc"]
    checkpoint, grid = project / layout.CHECKPOINT, project / layout.grid_file(0)
    for cache_type, kimg in (("symlink", 0.096), ("hardlink", 0.128)):
        run([*dvc, "config", "cache.type", cache_type], project)
        run([*dvc, "checkout", "--relink"], project)
        if cache_type == "symlink":
            assert checkpoint.is_symlink() and grid.is_symlink()
        else:
            assert checkpoint.stat().st_nlink == 2 and grid.stat().st_nlink == 2
        _assert_cache_intact(project)

        set_param(project, "train", "kimg", kimg)  # extends the finished run: reads, then replaces, the linked outputs
        run(["gan", "train"], project)
        run(["gan", "sample"], project)
        _assert_cache_intact(project)
        assert repro(project) == ["train", "sample", "latent-study", "make-video", "evaluate"], cache_type
        assert repro(project) == []
        assert "up to date" in run([*dvc, "status"], project).stdout
        _assert_cache_intact(project)
        kept = _kept_objects(project)
        assert kept <= {p.parent.name + p.name for p in _cache_files(project)}
        removed = _gc_would_remove(project)
        assert removed and not kept & removed  # the last run's checkpoint is garbage now; nothing the workspace uses
        assert len((project / layout.HISTORY).read_text().splitlines()) == 1 + round(kimg / 0.016)  # ticks of 0.016


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_outputs_linked_into_a_cache_are_replaced_when_a_run_extends_them(workdir, kind):
    """The persistent outputs (checkpoint, grids) and the history a resumed or extended run
    appends to, as links into a read-only cache: the run replaces each one, the cache keeps its bytes."""
    from stages import prepare, train

    params = tiny(model={"discriminator": "dcgan"}, train={"eval_kimg": 0})
    prepare.run(params)
    train.run(params)
    cache = workdir / "cache"
    cache.mkdir()
    linked = [layout.CHECKPOINT, layout.HISTORY, layout.TIMING, *sorted(layout.GRIDS.glob("*.png"))]
    kept = {}
    for i, path in enumerate(linked):
        obj = cache / str(i)
        os.replace(path, obj)
        obj.chmod(0o444)
        path.symlink_to(obj) if kind == "symlink" else os.link(obj, path)
        kept[obj] = obj.read_bytes()
    train.run(tiny(model={"discriminator": "dcgan"}, train={"eval_kimg": 0, "kimg": 0.096}))
    assert {obj: obj.read_bytes() for obj in kept} == kept
    assert all(not p.is_symlink() and p.stat().st_nlink == 1 for p in linked[:3])  # kept grids stay links, unread
    assert len(layout.HISTORY.read_text().splitlines()) == 1 + 6


def test_linked_data_models_and_reports_folders_are_followed(workdir):
    """data/prepared, models and reports as links to a larger disk: every stage makes its outputs
    inside the link's target, and each link stays a link."""
    from stages import prepare, sample, train

    disk = workdir / "disk"
    for name in ("prepared", "models", "reports"):
        (disk / name).mkdir(parents=True)
    Path("data").mkdir()
    links = {layout.PREPARED: disk / "prepared", Path("models"): disk / "models", Path("reports"): disk / "reports"}
    for link, target in links.items():
        link.symlink_to(target, target_is_directory=True)
    params = tiny(model={"discriminator": "dcgan"}, train={"eval_kimg": 0}, sample={"count": 2})
    prepare.run(params)
    train.run(params)
    sample.run(params)
    assert all(link.is_symlink() for link in links)
    assert (disk / "prepared/dataset.pt").is_file() and (disk / "prepared/demo/labels.csv").is_file()
    assert (disk / "models/checkpoint.pt").is_file() and (disk / "reports/train/history.csv").is_file()
    assert len(list((disk / "reports/train/grids").glob("images_*.png"))) == 5
    assert sorted(p.name for p in (disk / "reports/samples").iterdir()) == [
        "grid.png",
        "sample_000.png",
        "sample_001.png",
    ]


def test_a_linked_grids_folder_is_refused_before_training(workdir):
    """A fresh run empties reports/train/grids: through a link that would empty the folder it names."""
    from stages import prepare, train

    params = tiny(model={"discriminator": "dcgan"}, train={"eval_kimg": 0})
    prepare.run(params)
    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "images_000000000.png").write_text("precious\n")
    layout.TRAIN_REPORTS.mkdir(parents=True)
    layout.GRIDS.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UserError, match=r"^reports/train/grids: is a symbolic link; "):
        train.run(params)
    assert (elsewhere / "images_000000000.png").read_text() == "precious\n"
    assert not layout.CHECKPOINT.exists() and not layout.HISTORY.exists()


def test_dvc_output_folders_are_the_folders_of_every_cached_output_in_dvc_yaml():
    from tests.conftest import ROOT

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    cached = [
        out if isinstance(out, str) else next(iter(out))
        for stage in stages.values()
        for out in stage.get("outs", [])
        if isinstance(out, str) or next(iter(out.values())).get("cache", True)
    ]
    assert {Path(out).parent for out in cached} == set(layout.DVC_OUTPUT_FOLDERS)


def test_under_dvc_a_linked_models_folder_is_refused_before_the_stage_runs(
    workdir, tmp_path_factory, monkeypatch, capsys
):
    """DVC itself refuses outputs in a folder linked outside a git repository, but only after the
    stage ran (measured: `gan attributes` trained, then "'.../models/attributes.pt' is outside of
    git repository"). Run directly, or in a repository without git, the link is followed."""
    import typer

    from stages import cli

    (workdir / ".dvc").mkdir()
    (workdir / ".dvc/config").write_text("[core]\n    autostage = true\n")
    Path("params.yaml").write_text("{}\n")
    Path("models").symlink_to(tmp_path_factory.mktemp("disk"), target_is_directory=True)
    ran = []
    cli._run(ran.append, Path("params.yaml"))
    assert len(ran) == 1
    monkeypatch.setenv("DVC_ROOT", str(workdir))
    with pytest.raises(typer.Exit):
        cli._run(ran.append, Path("params.yaml"))
    assert len(ran) == 1
    assert capsys.readouterr().err == (
        "error: models: leads outside the repository through a link, where DVC refuses outputs once the stage has run; "
        "to keep outputs on another disk, move DVC's cache there instead (dvc cache dir DIR; dvc config cache.type symlink)\n"
    )
    (workdir / ".dvc/config").write_text("[core]\n    no_scm = True\n")
    cli._run(ran.append, Path("params.yaml"))
    assert len(ran) == 2
