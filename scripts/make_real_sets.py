"""Real small image sets for choosing defaults (issue 14): never the procedural demo faces.

Built from Debian packages of real artwork, fetched with `apt-get download` (no other network),
so anyone can rebuild the same sets and none is committed:

- icons-N: the 128 x 128 application, device and file-type icons of ``oxygen-icon-theme``
  (hand-drawn artwork on transparent backgrounds; 599 distinct files), a seeded subset of N;
- wallpapers-N: N square crops (1/4 to 1/2 of the short side, seeded) of the largest image of
  every wallpaper in ``plasma-workspace-wallpapers`` and ``gnome-backgrounds`` (photographs
  and rendered art, 46 source images), saved at 256 px.

    python scripts/make_real_sets.py data/benchmarks            # icons-20/200/599, wallpapers-20/200/1000
    gan prepare  # with prepare.source: data/benchmarks/icons-200

Needs apt-get and dpkg-deb (Debian or Ubuntu). The packages' licences (LGPL, CC-BY-SA and
others) allow this use; each set's SOURCES.txt names its package and version.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = {"icons": ["oxygen-icon-theme"], "wallpapers": ["plasma-workspace-wallpapers", "gnome-backgrounds"]}
SIZES = {"icons": (20, 200, 599), "wallpapers": (20, 200, 1000)}


def fetch(packages: list[str], cache: Path) -> dict[str, Path]:
    """Each package's unpacked tree (cached), and its .deb's name (with the version) for SOURCES.txt."""
    cache.mkdir(parents=True, exist_ok=True)
    trees = {}
    for name in packages:
        debs = sorted(cache.glob(f"{name}_*.deb"))
        if not debs:
            subprocess.run(["apt-get", "download", name], cwd=cache, check=True, capture_output=True)
            debs = sorted(cache.glob(f"{name}_*.deb"))
        tree = cache / debs[-1].stem
        if not tree.is_dir():
            subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(tree)], check=True)
        trees[debs[-1].name] = tree
    return trees


def icon_files(trees: dict[str, Path]) -> list[Path]:
    found = {p.name: p for tree in trees.values() for p in sorted(tree.rglob("128x128/*/*.png")) if not p.is_symlink()}
    return [found[k] for k in sorted(found)]  # one per icon name (the same icon in two categories counts once)


def wallpaper_files(trees: dict[str, Path]) -> list[Path]:
    """The largest image of each wallpaper (plasma: one folder per wallpaper; gnome: one file each)."""
    chosen = []
    for tree in trees.values():
        plasma = tree / "usr/share/wallpapers"
        for folder in sorted(p for p in plasma.glob("*") if p.is_dir()) if plasma.is_dir() else []:
            images = [p for p in folder.rglob("*") if re.search(r"\d+x\d+\.(jpg|png)$", p.name)]
            if images:
                chosen.append(max(images, key=lambda p: np.prod([int(v) for v in re.findall(r"\d+", p.stem)[:2]])))
        chosen += sorted(p for p in (tree / "usr/share/backgrounds").rglob("*") if p.suffix in (".jpg", ".png", ".webp"))
    return chosen


def write_icons(files: list[Path], out: Path, count: int, seed: int) -> None:
    pick = np.random.default_rng(seed).permutation(len(files))[:count]
    for i in sorted(pick):
        shutil.copy(files[i], out / files[i].name)


def write_crops(files: list[Path], out: Path, count: int, seed: int, size: int = 256) -> None:
    rng = np.random.default_rng(seed)
    photos = {}
    for i in range(count):
        k = int(rng.integers(len(files)))
        if k not in photos:
            with Image.open(files[k]) as img:
                photos[k] = img.convert("RGB")
        img = photos[k]
        side = int(rng.integers(min(img.size) // 4, min(img.size) // 2 + 1))
        x, y = int(rng.integers(0, img.width - side + 1)), int(rng.integers(0, img.height - side + 1))
        crop = img.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.LANCZOS)
        crop.save(out / f"{files[k].parent.parent.parent.name if 'wallpapers' in str(files[k]) else files[k].stem}_{i:04d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "gan-lab-debs")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    for kind, packages in PACKAGES.items():
        trees = fetch(packages, args.cache)
        files = icon_files(trees) if kind == "icons" else wallpaper_files(trees)
        for count in SIZES[kind]:
            out = args.out / f"{kind}-{count}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            (write_icons if kind == "icons" else write_crops)(files, out, min(count, len(files)) if kind == "icons" else count, args.seed)
            (out / "SOURCES.txt").write_text(f"{kind}-{count}: from {', '.join(trees)}; {len(files)} source images; seed {args.seed}\n")
            print(f"{out}: {len(list(out.glob('*.png')))} images from {len(files)} source images ({', '.join(trees)})")


if __name__ == "__main__":
    main()
