"""Stage ``prepare``: a folder of images (or the demo faces) -> one tensor file in [-1, 1]."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from stages import layout
from stages.atomic import atomic_path, write_text
from stages.demo_faces import write_demo_faces
from stages.images import EXTENSIONS, SkipImage, load_image
from stages.params import Params, ParamsError, PrepareParams


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


def read_folder(root: Path, p: PrepareParams) -> tuple[np.ndarray, list[dict], list[dict], int]:
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
            image, note = load_image(path, p.image_size, p.crop, p.background)
        except SkipImage as e:
            skipped.append({"file": rel, "reason": str(e)})
            continue
        except OSError as e:  # permissions, symlink loops, vanished files
            skipped.append({"file": rel, "reason": f"cannot read: {e.strerror or e}"})
            continue
        seen[digest] = rel
        images.append(image)
        kept.append({"file": rel, "sha256": digest, **({"note": note} if note else {})})
    empty = np.zeros((0, p.image_size, p.image_size, 3), np.uint8)
    return (np.stack(images) if images else empty), kept, skipped, ignored


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float16 NCHW in [-1, 1]; float16 holds every 8-bit level to within 3e-4."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1.0).to(torch.float16).contiguous()


def run(params: Params) -> dict:
    p = params.prepare
    if p.source == "demo":
        root = layout.DEMO_IMAGES
        write_demo_faces(root, p.demo.count, p.demo.seed, size=max(128, p.image_size))
    else:
        root = Path(p.source)
        if not root.is_dir():
            raise ParamsError(f"prepare.source: folder '{root}' does not exist" if not root.exists() else f"prepare.source: '{root}' is not a folder")
        if not root.resolve().is_relative_to(layout.RAW.resolve()):
            print(f"note: {root} is outside {layout.RAW}/, so DVC will not notice when its images change")

    images, kept, skipped, ignored = read_folder(root, p)
    for s in skipped:
        print(f"skipped {shown(root)}/{s['file']}: {s['reason']}")
    for k in kept:
        if "note" in k:
            print(f"note: {shown(root)}/{k['file']}: {k['note']}")
    if not kept and not skipped:
        raise ParamsError(f"prepare.source: no image files in '{shown(root)}' ({ignored} other files; extensions read: {' '.join(sorted(EXTENSIONS))})")
    if not kept:
        first = skipped[0]
        raise ParamsError(f"prepare.source: no usable image in '{shown(root)}': all {len(skipped)} image files were skipped (first: {first['file']}: {first['reason']})")

    data = to_tensor(images)
    with atomic_path(layout.DATASET) as tmp:
        torch.save({"images": data, "files": [k["file"] for k in kept]}, tmp)
    manifest = {
        "source": p.source,
        "root": root.as_posix(),
        "image_size": p.image_size,
        "count": len(kept),
        "dataset_sha256": hashlib.sha256(data.numpy().tobytes()).hexdigest(),
        "images": kept,
        "skipped": skipped,
        "ignored_other_files": ignored,
    }
    write_text(layout.MANIFEST, json.dumps(manifest, indent=1))
    with atomic_path(layout.PREVIEW) as tmp:
        save_image(data[:64].float(), tmp, nrow=8, normalize=True, value_range=(-1, 1))
    print(f"prepare: {len(kept)} images at {p.image_size} px from {root}, {len(skipped)} skipped -> {layout.DATASET}")
    return manifest
