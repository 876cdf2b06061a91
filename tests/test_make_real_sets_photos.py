"""The photos kind of scripts/make_real_sets.py: its hand-kept list of photographs, and --kinds
(no network: the packages' trees are made here)."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from PIL import Image

from tests.conftest import ROOT


def _sets():
    spec = importlib.util.spec_from_file_location("make_real_sets", ROOT / "scripts/make_real_sets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _trees(sets, root):
    trees = {}
    for i, (package, (folder, names)) in enumerate(sets.PHOTOS.items()):
        tree = root / package
        (tree / folder).mkdir(parents=True)
        for name in [*names.split(), "rendered-art.png"]:  # a file not in the list is never taken
            Image.new("RGB", (64, 48), (i * 40, 90, 0)).save(tree / folder / name)
        trees[f"{package}_1_all.deb"] = tree
    return trees


def test_make_real_sets_photos_are_the_listed_files_only(tmp_path):
    sets = _sets()
    assert list(sets.PHOTOS) == sets.PACKAGES["photos"]
    trees = _trees(sets, tmp_path)
    files = sets.photo_files(trees)
    assert len(files) == len({sets.photo_name(p) for p in files}) == 55
    assert "rendered-art" not in {p.stem for p in files}

    (trees["tuxpaint-data_1_all.deb"] / "usr/share/tuxpaint/templates/sheep.jpg").unlink()
    with pytest.raises(SystemExit, match=r"^error: tuxpaint-data_1_all.deb: has no .*sheep.jpg"):
        sets.photo_files(trees)


def test_make_real_sets_kinds_builds_only_the_kinds_named(tmp_path, monkeypatch, capsys):
    sets = _sets()
    trees = _trees(sets, tmp_path / "trees")
    fetched = []

    def fetch(packages, cache, work):
        fetched.extend(packages)
        return trees

    monkeypatch.setattr(sets, "fetch", fetch)
    monkeypatch.setattr(sets, "SIZES", {**sets.SIZES, "photos": (3,)})
    out = tmp_path / "sets"
    monkeypatch.setattr(
        sys, "argv", ["make_real_sets.py", str(out), "--cache", str(tmp_path / "cache"), "--kinds", "photos"]
    )
    sets.main()
    assert fetched == sets.PACKAGES["photos"] and sorted(p.name for p in out.iterdir()) == ["photos-3"]
    crops = sorted((out / "photos-3").glob("*.png"))
    assert len(crops) == 3 and all(Image.open(p).size == (256, 256) for p in crops)
    assert "55 source images" in (out / "photos-3" / "SOURCES.txt").read_text()
