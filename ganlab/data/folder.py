"""A folder of hand-collected images -> one uint8 array, with every kept and skipped file accounted for."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from ganlab.data.images import EXTENSIONS, SkipImage, load_image


def list_files(root: Path) -> list[Path]:
    """Every file below ``root``, sorted; symlinked folders are not followed (no loops)."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        found += [Path(dirpath) / f for f in sorted(filenames)]
    return found


def shown(path: Path | str) -> str:
    """A printable file name, even when it is not valid UTF-8."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def read_folder(root: Path, size: int, crop: str, background: tuple[int, int, int]) -> tuple[np.ndarray, list[dict], list[dict], int]:
    """(N, S, S, 3) uint8 images, the kept files (hash, note), the skipped files (reason), and
    how many files were ignored for not having an image extension."""
    images, kept, skipped, seen, ignored = [], [], [], {}, 0
    for path in list_files(root):
        rel = shown(path.relative_to(root).as_posix())
        if path.suffix.lower() not in EXTENSIONS:
            ignored += 1
            continue
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if digest in seen:
                raise SkipImage(f"duplicate of {seen[digest]}")
            image, note = load_image(path, size, crop, background)
        except SkipImage as e:
            skipped.append({"file": rel, "reason": str(e)})
            continue
        except OSError as e:  # permissions, symlink loops, vanished files
            skipped.append({"file": rel, "reason": f"cannot read: {e.strerror or e}"})
            continue
        seen[digest] = rel
        images.append(image)
        kept.append({"file": rel, "sha256": digest, **({"note": note} if note else {})})
    empty = np.zeros((0, size, size, 3), np.uint8)
    return (np.stack(images) if images else empty), kept, skipped, ignored
