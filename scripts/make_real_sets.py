"""Real small image sets for choosing defaults: never the procedural demo faces.

Built from Debian packages of real artwork, fetched with `apt-get download` (no other network),
so anyone can rebuild the same sets and none is committed:

- icons-N: the 128 x 128 application, device and file-type icons of ``oxygen-icon-theme``
  (hand-drawn artwork on transparent backgrounds; 599 distinct files), a seeded subset of N;
- wallpapers-N: N square crops (1/4 to 1/2 of the short side, seeded) of the largest image of
  every wallpaper in ``plasma-workspace-wallpapers`` and ``gnome-backgrounds`` (photographs
  and rendered art, 46 source images), saved at 256 px;
- photos-N: the same kind of crops, but of photographs only (landscapes, plants, animals,
  water, rock, things; 55 source images): the hand-kept list ``PHOTOS`` of files in
  ``mate-backgrounds``, ``lomiri-wallpapers-16.04``, ``lomiri-wallpapers-20.04``,
  ``lxqt-themes`` and ``tuxpaint-data`` (its drawing templates).

    python scripts/make_real_sets.py data/benchmarks            # icons-20/200/599, wallpapers-, photos-20/200/1000
    python scripts/make_real_sets.py data/benchmarks --kinds photos   # only photos-20/200/1000
    gan prepare  # with prepare.source: data/benchmarks/icons-200

Needs apt-get and dpkg-deb (Debian or Ubuntu). The .debs are kept in a private per-user cache
(``--cache``) and used only while their SHA256 is the one apt's signed index gives; each is
unpacked into a fresh private temp folder. An existing set folder is replaced only if it holds
the SOURCES.txt this script writes. The packages' licences (LGPL, GPL, CC-BY-SA and
others) allow this use; each set's SOURCES.txt names its package and version.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

PACKAGES = {
    "icons": ["oxygen-icon-theme"],
    "wallpapers": ["plasma-workspace-wallpapers", "gnome-backgrounds"],
    "photos": [
        "mate-backgrounds",
        "lomiri-wallpapers-16.04",
        "lomiri-wallpapers-20.04",
        "lxqt-themes",
        "tuxpaint-data",
    ],
}
SIZES = {"icons": (20, 200, 599), "wallpapers": (20, 200, 1000), "photos": (20, 200, 1000)}

# The photographs, chosen by eye from contact sheets of every image in these packages (bookworm:
# mate-backgrounds 1.26.0-1, lomiri-wallpapers-16.04/-20.04 20.04.0-2, lxqt-themes 1.2.0-1,
# tuxpaint-data 1:0.9.28-sdl2-1). Kept: camera photographs of real scenes and things, one file each.
# Dropped: rendered, abstract, vector and painted art, logos, gradients and blurred light
# (mate's abstract/ and desktop/ folders with Elephants and the Ubuntu-Mate bokeh, lomiri's
# umang, Fossa, Infinite-Sea, Painting-Colors and default backgrounds, lxqt's origami, plasma,
# triangles and waves), and tuxpaint's mossy_bark (black bars across it). Listed by name, not
# found by a rule, so that a new package version cannot slip art in: a missing name stops the run.
# Not used: ukui-wallpapers, sway-backgrounds, desktop-base, xfdesktop4-data, lxde-common (no photographs).
PHOTOS = {
    "mate-backgrounds": (
        "usr/share/backgrounds/mate/nature",
        "Aqua.jpg Blinds.jpg Dune.jpg FreshFlower.jpg Garden.jpg GreenMeadow.jpg LadyBird.jpg RainDrops.jpg"
        " Storm.jpg TwoWings.jpg Wood.jpg YellowFlower.jpg",
    ),
    "lomiri-wallpapers-16.04": (
        "usr/share/backgrounds",
        "Bridge_by_Sander_Klootwijk.jpg Dragonfly_by_Bolly.jpg Picture_0B_by_freespace.jpg"
        " Picture_1A_by_freespace.jpg Wine_by_Jakkub_Mede.jpg aitzgorri_by_Aitzol_Berasategi.jpg"
        " analogpattern_by_Peter_Nerlich.jpg free_by_Peter_Nerlich.jpg friends_by_Aitzol_Berasategi.jpg"
        " greentock_by_Peter_Nerlich.jpg life_by_Aitzol_Berasategi.jpg picosdeeuropa_by_Aitzol_Berasategi.jpg"
        " seeding_by_Clements_Engelhardt.jpg sunset_by_Aitzol_Berasategi.jpg",
    ),
    "lomiri-wallpapers-20.04": ("usr/share/backgrounds", "Kleiber_by_Lukas_Baubkus.jpg"),
    "lxqt-themes": (
        "usr/share/lxqt/wallpapers",
        "Valendas.png after-the-rain.jpg appleflower.png beam.png butterfly.png cloud.png drop.png flowers.png"
        " fog.jpg this-is-not-windows.jpg",
    ),
    "tuxpaint-data": (
        "usr/share/tuxpaint/templates",
        "burnt_bark.jpg cliff.jpg corn_maze.jpg jellyfish.jpg lighthouse.jpg mossy_log.jpg mudstone.jpg"
        " ocean_splash.jpg ocean_waves.jpg redwoods_above.jpg rocks.jpg sheep.jpg spiders_web.jpg"
        " sun_behind_clouds.jpg sun_behind_leaves.jpg trees_above.jpg trees_at_dusk.jpg wool_mill_machine.jpg",
    ),
}


def _fail(message: str) -> None:
    raise SystemExit(f"error: {message}")


def private_cache(path: Path | None) -> Path:
    """The .deb cache: per user (``$XDG_CACHE_HOME`` or ``~/.cache``), 0700, refused when another
    user owns it or may write to it. A fixed name in the shared temp folder let anyone plant the
    files that became the benchmark sets."""
    path = path or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gan-lab" / "debs"
    if not path.exists() and not path.is_symlink():
        path.mkdir(parents=True, mode=0o700)
        path.chmod(0o700)
    st = path.lstat()
    if not stat.S_ISDIR(st.st_mode):
        _fail(f"{path}: not a folder (a link or a file); the .deb cache must be a private folder (--cache DIR)")
    if st.st_uid != os.getuid():
        _fail(f"{path}: owned by another user; use a cache of your own (--cache DIR)")
    if st.st_mode & 0o022:
        _fail(f"{path}: writable by other users; use a private cache (--cache DIR, or chmod 700 {path})")
    return path


def archive_sha256(name: str) -> tuple[str, str]:
    """The candidate version of ``name`` and its .deb's SHA256, from apt's signed index."""
    shown = subprocess.run(
        ["apt-cache", "show", "--no-all-versions", name], check=False, capture_output=True, text=True
    )
    fields = dict(re.findall(r"^(Version|SHA256): (\S+)$", shown.stdout, flags=re.M))
    if shown.returncode or "SHA256" not in fields:
        _fail(f"{name}: apt-cache show gives no SHA256 for it; run apt-get update, or check the package name")
    return fields["Version"], fields["SHA256"]


def apt_download(name: str, folder: Path) -> None:
    subprocess.run(["apt-get", "download", name], cwd=folder, check=True, capture_output=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_deb(name: str, cache: Path) -> Path:
    """The cached .deb of ``name`` if its SHA256 is the archive's, else a fresh download (apt
    checks its signature) that is checked the same way before it enters the cache."""
    version, sha = archive_sha256(name)
    for deb in sorted(cache.glob(f"{name}_*.deb")):
        if deb.is_file() and not deb.is_symlink() and _sha256(deb) == sha:
            print(f"{name} {version}: {deb} (cached, SHA256 matches apt's)", flush=True)
            return deb
    print(f"{name} {version}: downloading", flush=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        apt_download(name, Path(tmp))
        debs = sorted(Path(tmp).glob(f"{name}_*.deb"))
        if len(debs) != 1 or _sha256(debs[0]) != sha:
            _fail(f"{name}: the downloaded .deb's SHA256 is not apt's ({sha}); run apt-get update, then again")
        deb = cache / debs[0].name
        os.replace(debs[0], deb)
    print(f"{name} {version}: fetched {deb}, SHA256 matches apt's", flush=True)
    return deb


def fetch(packages: list[str], cache: Path, work: Path) -> dict[str, Path]:
    """Each package's tree, unpacked from its checked .deb into a fresh folder under ``work`` (a
    private temp folder: an unpacked tree left in a cache could have been edited), keyed by the
    .deb's name (with the version) for SOURCES.txt."""
    trees = {}
    for name in packages:
        deb = verified_deb(name, cache)
        tree = Path(tempfile.mkdtemp(dir=work, prefix=f"{name}."))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
        print(f"{name}: unpacked into {tree}", flush=True)
        trees[deb.name] = tree
    return trees


def refuse_unless_ours(out: Path) -> None:
    """A set folder that exists is replaced only if this script made it (it holds SOURCES.txt);
    anything else there is the user's, and the run stops instead of deleting it."""
    if out.is_symlink() or (out.exists() and not (out.is_dir() and (out / "SOURCES.txt").is_file())):
        _fail(
            f"{out}: exists and was not made by this script (no SOURCES.txt in it); move it away, or choose another output folder"
        )


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
        chosen += sorted(
            p for p in (tree / "usr/share/backgrounds").rglob("*") if p.suffix in (".jpg", ".png", ".webp")
        )
    return chosen


def photo_files(trees: dict[str, Path]) -> list[Path]:
    """The files ``PHOTOS`` names, in each package's tree (keyed by its .deb's name); a name that
    is missing or not a plain file stops the run rather than shrink the set unseen."""
    chosen = []
    for deb, tree in trees.items():
        folder, names = PHOTOS[deb.split("_")[0]]
        for name in names.split():
            path = tree / folder / name
            if path.is_symlink() or not path.is_file():
                _fail(f"{deb}: has no {folder}/{name}; the photographs in PHOTOS need checking for this version")
            chosen.append(path)
    return chosen


def wallpaper_name(path: Path) -> str:
    return path.parent.parent.parent.name if "wallpapers" in str(path) else path.stem


def photo_name(path: Path) -> str:
    return path.stem


def write_icons(files: list[Path], out: Path, count: int, seed: int) -> None:
    pick = np.random.default_rng(seed).permutation(len(files))[:count]
    for i in sorted(pick):
        shutil.copy(files[i], out / files[i].name)


def write_crops(
    files: list[Path], out: Path, count: int, seed: int, size: int = 256, name: Callable[[Path], str] = wallpaper_name
) -> None:
    """A line every 100 crops: a thousand LANCZOS crops of large photographs take minutes. Each
    crop is saved as ``{name(source)}_{i:04d}.png``."""
    rng = np.random.default_rng(seed)
    photos = {}
    for i in range(count):
        if i and i % 100 == 0:
            print(f"{out}: {i} of {count} crops", flush=True)
        k = int(rng.integers(len(files)))
        if k not in photos:
            with Image.open(files[k]) as img:
                photos[k] = img.convert("RGB")
        img = photos[k]
        side = int(rng.integers(min(img.size) // 4, min(img.size) // 2 + 1))
        x, y = int(rng.integers(0, img.width - side + 1)), int(rng.integers(0, img.height - side + 1))
        crop = img.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.LANCZOS)
        crop.save(out / f"{name(files[k])}_{i:04d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="the .deb cache (default: $XDG_CACHE_HOME/gan-lab/debs or ~/.cache/gan-lab/debs)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--kinds", nargs="+", choices=list(PACKAGES), default=None, help="build only these kinds (default: all)"
    )
    args = ap.parse_args()
    kinds = [kind for kind in SIZES if kind in (args.kinds or SIZES)]
    for kind in kinds:  # all of them before anything is fetched: a refusal costs no download
        for count in SIZES[kind]:
            refuse_unless_ours(args.out / f"{kind}-{count}")
    cache = private_cache(args.cache)
    with tempfile.TemporaryDirectory(prefix="gan-lab-sets.") as work:
        for kind in kinds:
            trees = fetch(PACKAGES[kind], cache, Path(work))
            files = {"icons": icon_files, "wallpapers": wallpaper_files, "photos": photo_files}[kind](trees)
            print(f"{kind}: {len(files)} source images", flush=True)
            for count in SIZES[kind]:
                out = args.out / f"{kind}-{count}"
                refuse_unless_ours(out)  # again: it may have appeared during the downloads
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir(parents=True)
                n = min(count, len(files)) if kind == "icons" else count
                what = "icons, copied" if kind == "icons" else f"crops of {len(files)} images, at 256 px"
                print(f"{out}: {n} {what} ...", flush=True)
                if kind == "icons":
                    write_icons(files, out, n, args.seed)
                else:
                    write_crops(files, out, n, args.seed, name=wallpaper_name if kind == "wallpapers" else photo_name)
                (out / "SOURCES.txt").write_text(
                    f"{kind}-{count}: from {', '.join(trees)}; {len(files)} source images; seed {args.seed}\n"
                )
                print(
                    f"{out}: done, {len(list(out.glob('*.png')))} images from {len(files)} source images ({', '.join(trees)})",
                    flush=True,
                )


if __name__ == "__main__":
    main()
