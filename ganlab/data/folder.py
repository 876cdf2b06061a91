"""A folder of hand-collected images -> one uint8 array, with every kept and skipped file accounted for."""

from __future__ import annotations

import hashlib
import io
import os
import stat
from pathlib import Path

import torch

from ganlab.data.dataset import to_tensor
from ganlab.data.images import EXTENSIONS, SkipImage, load_image
from ganlab.errors import printable


def list_files(root: Path) -> list[Path]:
    """Every file below ``root``, sorted; symlinked folders are not followed (no loops)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        found += [Path(dirpath) / f for f in sorted(filenames)]
    return found


def shown(path: Path | str) -> str:
    """A printable file name, even when it is not valid UTF-8 or holds control characters: the
    name goes into the manifest, class names, metric keys and printed lines, none of which may
    break a line."""
    return printable(os.fsencode(path).decode("utf-8", "backslashreplace"))


MIN_CLASS_IMAGES = 4  # fewer in a subfolder and it is no class a classifier can learn (or be checked on)


def find_classes(files: list[str]) -> tuple[dict | None, str]:
    """The class of each kept file: its first subfolder, where every image sits in one of at
    least 2 subfolders of the root with at least ``MIN_CLASS_IMAGES`` each (the homework's
    "Class 1 = 100, Class 2 = 100"). Returns ({"names": sorted subfolder names, "labels": an index
    per file, "counts": images per class}, "") or (None, why there are no classes)."""
    if not files:
        return None, "no images"
    loose = [f for f in files if "/" not in f]
    if loose:
        return None, f"{len(loose)} images directly in the folder (e.g. {loose[0]}), so no class subfolders"
    first = [f.split("/", 1)[0] for f in files]
    names = sorted(set(first))
    if len(names) < 2:
        return None, f"all images in one subfolder ({names[0]}), so one class"
    counts = {n: first.count(n) for n in names}
    small = [n for n in names if counts[n] < MIN_CLASS_IMAGES]
    if small:
        return None, (
            f"subfolder {small[0]} has {counts[small[0]]} images; a class needs at least {MIN_CLASS_IMAGES}, "
            "so the subfolders are not used as classes"
        )
    index = {n: i for i, n in enumerate(names)}
    return {"names": names, "labels": [index[f] for f in first], "counts": [counts[n] for n in names]}, ""


MAX_FILE_BYTES = 256 * 2**20  # larger than any photo a person collects; a link to /dev/zero would be endless


def read_bytes(path: Path) -> bytes:
    """The file's bytes, if it is a regular file (a FIFO would block for ever, a device never
    end) of at most ``MAX_FILE_BYTES``; read once, so what is hashed is what is decoded."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO opens at once, and is refused below
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise SkipImage("not a regular file (a pipe, device or socket)")
            if st.st_size > MAX_FILE_BYTES:
                raise SkipImage(
                    f"{st.st_size / 2**20:.3g} MB: larger than the {MAX_FILE_BYTES / 2**20:.3g} MB an image file may be"
                )
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:  # permissions, link loops, files that vanish or fail mid-read
        raise SkipImage(f"cannot read: {e.strerror or e}") from None
    if len(data) > MAX_FILE_BYTES:
        raise SkipImage(f"grew past {MAX_FILE_BYTES / 2**20:.3g} MB while being read")
    return data


def read_folder(
    root: Path, size: int, crop: str, background: tuple[int, int, int]
) -> tuple[torch.Tensor, list[dict], list[dict], list[str]]:
    """(N, 3, S, S) float16 images in [-1, 1], the kept files (hash, note), the skipped files
    (reason), and the files ignored for not having an image extension (their names, relative to ``root``).

    Each image goes straight into a tensor sized for every candidate file, so memory stays near
    the output's size (a list of arrays, a stack and a float32 copy took 13x the pixel bytes)."""
    files, ignored = [], []
    for path in list_files(root):
        if path.suffix.lower() in EXTENSIONS:
            files.append(path)
        else:
            ignored.append(shown(path.relative_to(root).as_posix()))
    out = torch.empty((len(files), 3, size, size), dtype=torch.float16)
    kept, skipped, seen = [], [], {}
    for path in files:
        rel = shown(path.relative_to(root).as_posix())
        try:
            data = read_bytes(path)
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                raise SkipImage(f"duplicate of {seen[digest]}")
            image, note = load_image(io.BytesIO(data), size, crop, background)
        except SkipImage as e:
            skipped.append({"file": rel, "reason": str(e)})
            continue
        out[len(kept)] = to_tensor(image[None])[0]
        seen[digest] = rel
        kept.append({"file": rel, "sha256": digest, **({"note": note} if note else {})})
    return (out if len(kept) == len(files) else out[: len(kept)].clone()), kept, skipped, ignored
