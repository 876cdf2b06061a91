"""Class names as metric keys: a folder's name becomes part of an MLflow key and a CSV column."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

KEY_CHARS, KEY_BYTES = 64, 128  # a class's part of a metric key, however long its folder's name


def metric_names(names: Sequence[str]) -> list[str]:
    """Class names as MLflow metric-key parts: letters, digits (any script), ``_`` and ``-`` (anything else,
    dots included, becomes ``_``), never empty, never two alike. A name longer than ``KEY_CHARS``
    (or ``KEY_BYTES`` in UTF-8) is cut and given 8 hex digits of its hash: a folder name may have
    255 bytes, and MLflow refuses a key over 250 characters (``eval_detail/class_share_real/``
    comes first), at every evaluation of the run and again at every resume. The manifest maps
    each key to its full name (``classes.metric_keys``)."""
    out: list[str] = []
    for i, name in enumerate(names):
        key = re.sub(r"[^\w-]", "_", name).strip("_") or f"class{i}"
        if len(key) > KEY_CHARS or len(key.encode()) > KEY_BYTES:
            digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
            cut = key[: KEY_CHARS - 9]
            while len(cut.encode()) > KEY_BYTES - 9:
                cut = cut[:-1]
            key = f"{cut.rstrip('_')}_{digest}"
        base, n = key, 2
        while key in out:
            key, n = f"{base}_{n}", n + 1
        out.append(key)
    return out


def metric_keys(names: Sequence[str]) -> dict[str, str]:
    """{metric-key part: the full class name}, for the manifest."""
    return dict(zip(metric_names(names), names))
