"""The plain-language end of ``gan evaluate``: the questions a user asks of a run (how far from my
images, do the samples look like them, does it copy them, does it cover my set), each answered
from the panel with the numbers it rests on, so that the sentence can be checked against
``reports/metrics.json``.

Three failures read alike on ndb and recall, and are told apart by precision:

- fidelity (blur, blotches, artifacts): the samples lie off your images' manifold (precision near
  0). Such samples fill the k-means bins wrongly and reach no real image's neighbourhood however
  varied they are, so a high ndb and a low recall then say nothing about collapse;
- coverage (mode collapse): the samples look like your images (precision fine) but miss parts of
  the set (recall low, or ndb above its floor);
- memorisation: samples nearer a training image than training images are to each other
  (copy_share).

Distances are said as multiples of their floor (your own images against each other), which means
the same on any set; the other questions use fixed cut-offs, written here once.
"""

from __future__ import annotations

import math

# precision (k = 3 nearest neighbours in ImageNet features) of your own images, one random half
# against the other, 5 splits: demo faces 0.92 (200 images) and 0.90 (1000), icons 0.79,
# wallpapers 0.86, photos 0.78 (200 each); the lowest split 0.74. Said with every fidelity line.
# Unlike recall, precision hardly moves with the number of samples (the balls are the real images'),
# so fixed cut-offs mean the same in training's evaluation and in gan evaluate.
OWN_PRECISION = "about 0.8-0.9"
# Below a third of that, at most about one sample in four lies where a real image would: most are
# unlike your images. 4x-blurred or noised demo faces score 0.00, 2x-blurred 0.16-0.20, the
# default run 0.00; held-out faces, or a tenth of them repeated (collapse), 0.85-0.92.
LOW_PRECISION = 0.25
# Below two thirds of your own images' lowest split (0.74), more samples fall off than the split-to-split
# spread (+-0.03) explains: a large part of them is unlike your images.
FAIR_PRECISION = 0.5
COPY_SHARE = 0.05  # more than 1 sample in 20 nearer a training image than half its usual neighbour distance
LOW_RECALL = 0.05  # below this, the samples reach almost none of the real images' neighbourhoods
NDB_MARGIN = 2.0  # an ndb above this many times its floor is more than sampling noise
NDB_LEAST_FLOOR = 0.01  # a floor of 0 (few bins, halves alike) would make any wrong bin "more than noise"


def _ok(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def _how_far(m: dict) -> str:
    swd, fd = m.get("swd_ratio"), m.get("fd_ratio")
    if not (_ok(swd) or _ok(fd)):
        return "how far: not measurable (too few images for a floor)"
    parts = [f"{swd:.2g}x on the pixels (swd_ratio)"] if _ok(swd) else []
    parts += [f"{fd:.3g}x in ImageNet features (fd_ratio)"] if _ok(fd) else []
    return (
        "how far: the samples are "
        + " and ".join(parts)
        + " as far from your images as your images are from each other (1 = as close as your own images)"
    )


def _fidelity(m: dict) -> str:
    precision = m.get("precision")
    if not _ok(precision):
        return "fidelity: not measurable (too few images for precision)"
    numbers = (
        f"precision {precision:.2f}, the share of samples inside your images' neighbourhoods in ImageNet "
        f"features; your own images score {OWN_PRECISION}"
    )
    if precision < LOW_PRECISION:
        return f"fidelity: the samples are unlike your images (blur, blotches or artifacts): {numbers}"
    if precision < FAIR_PRECISION:
        return f"fidelity: many samples are unlike your images (blur, blotches or artifacts in part of them): {numbers}"
    return f"fidelity: the samples lie among your images: {numbers}"


def _copies(m: dict) -> str:
    share, nn = m.get("copy_share"), m.get("nn_ratio")
    if not _ok(share, nn):
        return "copies: not measurable (fewer than two training images)"
    if share > COPY_SHARE:
        return (
            f"copies: {share:.0%} of the samples sit nearer a training image than half the usual distance "
            f"between two training images: near-copies, memorisation (nn_ratio {nn:.2f}, below 1 = nearer "
            f"than a fresh draw; reports/evaluate/closest_pairs.png shows them)"
        )
    return f"copies: none found ({share:.0%} near-copies; nn_ratio {nn:.2f}, about 1 = as novel as a fresh draw)"


def _coverage(m: dict) -> str:
    ndb, floor, recall, precision = m.get("ndb"), m.get("ndb_floor"), m.get("recall"), m.get("precision")
    if not _ok(ndb, floor, recall):
        return "coverage: not measurable"
    numbers = f"ndb {ndb:.2f} of k-means bins filled wrongly, floor {floor:.2f}; recall {recall:.2f}"
    uneven = ndb > NDB_MARGIN * max(floor, NDB_LEAST_FLOOR)
    sparse = recall < LOW_RECALL
    if (uneven or sparse) and _ok(precision) and precision < LOW_PRECISION:
        what = (
            "not judged: samples unlike your images fill the bins wrongly and reach none of your images "
            "however varied they are, so these numbers say fidelity, not mode collapse"
        )
    elif uneven and sparse:
        what = "they miss most of your set (mode collapse, or an early generator)"
    elif uneven:
        what = "they miss or over-draw parts of your set (some kinds drawn too rarely or too often)"
    elif sparse:
        what = (
            "they miss parts of your set: few of your images have a sample near them, though the mix of kinds matches"
        )
    else:
        what = "they cover your set about as evenly as your own images do"
    return f"coverage: {what} ({numbers})"


def verdict(m: dict[str, float | str | None]) -> list[str]:
    """One line per question; a question whose numbers are missing (a set too small) says so."""
    return [_how_far(m), _fidelity(m), _copies(m), _coverage(m)]
