"""The plain-language end of ``gan evaluate``: the three questions a user asks of a run (how far
from my images, does it copy them, did it collapse), each answered from the panel with the
number it rests on, so that the sentence can be checked against ``reports/metrics.json``.

Distances are said as multiples of their floor (your own images against each other), which means
the same on any set; only the coverage question uses fixed cut-offs, written here once.
"""

from __future__ import annotations

import math

COPY_SHARE = 0.05  # more than 1 sample in 20 nearer a training image than half its usual neighbour distance
LOW_RECALL = 0.05  # below this, the samples reach almost none of the real images' neighbourhoods
NDB_MARGIN = 2.0  # an ndb above this many times its floor is more than sampling noise


def _ok(*values) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def verdict(m: dict[str, float | str]) -> list[str]:
    """One line per question; a question whose numbers are missing (a set too small) says so."""
    lines = []
    swd, fd = m.get("swd_ratio"), m.get("fd_ratio")
    if _ok(swd) or _ok(fd):
        parts = [f"{swd:.2g}x on the pixels (swd_ratio)"] if _ok(swd) else []
        parts += [f"{fd:.3g}x in ImageNet features (fd_ratio)"] if _ok(fd) else []
        lines.append(
            "how far: the samples are "
            + " and ".join(parts)
            + " as far from your images as your images are from each other (1 = as close as your own images)"
        )
    else:
        lines.append("how far: not measurable (too few images for a floor)")
    share, nn = m.get("copy_share"), m.get("nn_ratio")
    if _ok(share, nn):
        if share > COPY_SHARE:
            lines.append(
                f"copies: {share:.0%} of the samples sit nearer a training image than half the usual distance "
                f"between two training images: near-copies (reports/evaluate/closest_pairs.png shows them)"
            )
        else:
            lines.append(
                f"copies: none found ({share:.0%} near-copies; nn_ratio {nn:.2f}, about 1 = as novel as a fresh draw)"
            )
    else:
        lines.append("copies: not measurable (fewer than two training images)")
    ndb, floor, recall = m.get("ndb"), m.get("ndb_floor"), m.get("recall")
    if _ok(ndb, floor, recall):
        narrow = ndb > NDB_MARGIN * max(floor, 0.01)
        if narrow and recall < LOW_RECALL:
            what = "they cover a small part of your set (mode collapse, or an early generator)"
        elif narrow:
            what = "they over- or under-fill parts of your set"
        elif recall < LOW_RECALL:
            what = "their mix of kinds matches your set, but few reach the neighbourhood of a real image"
        else:
            what = "they cover your set about as evenly as your own images do"
        lines.append(
            f"collapse: {what} (ndb {ndb:.2f} of k-means bins filled wrongly, floor {floor:.2f}; recall {recall:.2f})"
        )
    else:
        lines.append("collapse: not measurable")
    return lines
