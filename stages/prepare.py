"""Stage ``prepare``: a folder of images (or the demo faces) -> one tensor file in [-1, 1]."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torchvision.utils import save_image

from ganlab import layout
from ganlab.data.dataset import CLASS
from ganlab.data.demo_faces import write_demo_faces
from ganlab.data.folder import find_classes, read_folder, shown
from ganlab.data.images import EXTENSIONS
from ganlab.errors import UserError
from ganlab.io import checkpoint
from ganlab.io.atomic import atomic_dir, atomic_path, write_text
from ganlab.names import metric_keys
from ganlab.params import Params, excerpt

IGNORED_SHOWN, IGNORED_NAMED = 5, 100  # files without an image extension: named in prepare's note, in the manifest


def run(params: Params) -> dict:
    p = params.prepare
    if p.source == "demo":
        root = layout.DEMO_IMAGES
        with atomic_dir(root) as fresh:  # replaced whole: a smaller demo.count leaves no old faces behind
            write_demo_faces(fresh, p.demo.count, p.demo.seed, size=max(128, p.image_size))
    else:
        root = Path(p.source)
        try:
            is_dir, exists = root.is_dir(), root.exists()
        except OSError as e:  # a name too long for the file system, a folder on the way that may not be read
            raise UserError(f"prepare.source: cannot open {excerpt(p.source)}: {e.strerror}") from None
        if not is_dir:
            raise UserError(
                f"prepare.source: folder '{shown(root)}' does not exist"
                if not exists
                else f"prepare.source: '{shown(root)}' is not a folder"
            )
        _not_an_output(root)
        if not root.resolve().is_relative_to(layout.RAW.resolve()):
            print(f"note: {shown(root)} is outside {layout.RAW}/, so DVC will not notice when its images change")

    data, kept, skipped, ignored = read_folder(root, p.image_size, p.crop, p.background)
    for s in skipped:
        print(f"skipped {shown(root)}/{s['file']}: {s['reason']}")
    for k in kept:
        if "note" in k:
            print(f"note: {shown(root)}/{k['file']}: {k['note']}")
    if ignored and p.source != "demo":  # the demo's one is its labels.csv
        more = f" and {len(ignored) - IGNORED_SHOWN} more" if len(ignored) > IGNORED_SHOWN else ""
        print(
            f"note: {shown(root)}: ignored {len(ignored)} file{'s' * (len(ignored) != 1)} without an image extension: "
            f"{', '.join(ignored[:IGNORED_SHOWN])}{more} (in {layout.MANIFEST})"
        )
    if not kept and not skipped:
        raise UserError(
            f"prepare.source: no image files in '{shown(root)}' ({len(ignored)} other files; extensions read: {' '.join(sorted(EXTENSIONS))})"
        )
    if not kept:
        first = skipped[0]
        raise UserError(
            f"prepare.source: no usable image in '{shown(root)}': all {len(skipped)} image files were skipped (first: {first['file']}: {first['reason']})"
        )

    files = [k["file"] for k in kept]
    dataset = {"images": data, "files": files}
    classes, no_classes = (None, "") if p.source == "demo" else find_classes(files)
    if classes is not None:  # labels for the attributes stage: {attribute: class index per image}, and the names
        dataset["labels"] = {CLASS: torch.tensor(classes["labels"], dtype=torch.int64)}
        dataset["label_names"] = {CLASS: classes["names"]}
    # The manifest goes first and comes back last: a kill between the two renames leaves no
    # manifest naming the old data beside the new dataset.pt (the next stage says to rerun prepare).
    layout.MANIFEST.unlink(missing_ok=True)
    checkpoint.save(dataset, layout.DATASET)
    manifest = {
        "source": p.source,
        "root": shown(root.as_posix()),
        "image_size": p.image_size,
        "count": len(kept),
        "dataset_sha256": hashlib.sha256(data.numpy().view(np.uint8)).hexdigest(),  # the bytes, not a copy
        "images": kept,
        "skipped": skipped,
        "ignored_other_files": len(ignored),
    }
    if ignored:  # named, so that a count of 1 says which file; bounded for a folder of a million stray files
        manifest["ignored_other_file_names"] = ignored[:IGNORED_NAMED]
    if p.source != "demo":  # the demo's manifest stays as it was; its labels are in its labels.csv
        manifest["classes"] = (
            None
            if classes is None
            else {
                "attribute": CLASS,
                "names": classes["names"],
                "counts": classes["counts"],
                "metric_keys": metric_keys(classes["names"]),  # MLflow keys and CSV columns: class_share/<key>
            }
        )
        if classes is None:
            manifest["classes_note"] = no_classes
    write_text(layout.MANIFEST, json.dumps(manifest, indent=1))
    with atomic_path(layout.PREVIEW) as tmp:
        save_image(data[:64].float(), tmp, nrow=8, normalize=True, value_range=(-1, 1))
    if classes is not None:
        mix = ", ".join(f"{n} {c}" for n, c in zip(classes["names"], classes["counts"]))
        print(f"prepare: {len(classes['names'])} classes (the first subfolder of each image): {mix}")
    print(
        f"prepare: {len(kept)} images at {p.image_size} px from {shown(root)}, {len(skipped)} skipped -> {layout.DATASET}"
    )
    return manifest


def _not_an_output(root: Path) -> None:
    """A source inside the project's outputs (or holding them) reads the last run's results as
    training images, and prepare would then replace the very folder it reads."""
    source = root.resolve()
    for out in (layout.PREPARED, layout.CHECKPOINT.parent, layout.METRICS.parent):
        if source.is_relative_to(out.resolve()) or out.resolve().is_relative_to(source):
            raise UserError(
                f"prepare.source: '{shown(root)}' overlaps the project's outputs ({out}/), which prepare "
                f"would read as images; put your images under {layout.RAW}/"
            )
