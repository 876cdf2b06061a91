"""Checkpoint files: everything a run needs to continue, loaded without unpickling code.

``torch.load(weights_only=True)`` accepts only tensors and plain containers, so a checkpoint
from a stranger cannot execute anything when it is opened. Every file loads to the CPU: the
caller moves what it needs to its device once, and random-number states (which
``torch.Generator.set_state`` accepts only as CPU byte tensors) stay where they must be.
"""

from __future__ import annotations

import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ganlab.errors import UserError
from ganlab.io.atomic import atomic_path


def save(state: dict[str, Any], path: Path) -> None:
    """Written through the open temp file, so that the zip's inner folder is named after the
    final file and the same state gives the same bytes (torch.save names it after the path)."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(state, f)
    except OSError as e:  # a full or read-only disk: the old file stays, and the user gets one line
        raise UserError(f"{path}: cannot write ({e.strerror or e}); the previous file is kept") from None
    except (
        RuntimeError
    ) as e:  # torch's zip writer turns a failed write into "[enforce fail at inline_container.cc] ..."
        if "inline_container" not in str(e) and "PytorchStreamWriter" not in str(e):
            raise
        free = shutil.disk_usage(Path(path).parent).free / 2**20
        raise UserError(
            f"{path}: cannot write (the file writer failed with {free:.0f} MB free on its disk); the previous file is kept"
        ) from None


def load(
    path: Path, mmap: bool = False, missing: str = "checkpoint not found (run `gan train` first)"
) -> dict[str, Any]:
    """``mmap``: tensors stay in the file and are paged in when touched (large data sets)."""
    if not Path(path).is_file():
        raise UserError(f"{path}: {missing}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise UserError(f"{path}: refused to load: not a plain weights file ({_what_it_holds(e)})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise UserError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0]})") from None


def _what_it_holds(e: pickle.UnpicklingError) -> str:
    """What made torch refuse the file, without torch's advice to load it with ``weights_only=False``
    (which would run whatever the file holds: the very thing the refusal protects against)."""
    m = re.search(r"GLOBAL (\S+)", str(e))
    return (
        f"it names {m.group(1)}, which loading would import and could run"
        if m
        else "it holds more than tensors and plain containers"
    )


def require(state: Any, path: Path, keys: tuple[str, ...], rebuild: str) -> dict[str, Any]:
    """``state`` when it holds ``keys``: a file of the right name but another make (truncated by
    hand, from an older version, a stranger's) is one line naming the command that rebuilds it,
    not a KeyError deep in a stage."""
    if not isinstance(state, dict):
        raise UserError(f"{path}: not a file of this project ({type(state).__name__}, not a dict); {rebuild}")
    missing = [k for k in keys if k not in state]
    if missing:
        raise UserError(f"{path}: not a complete file of this project (no {', '.join(map(repr, missing))}); {rebuild}")
    return state


def load_weights(module: torch.nn.Module, weights: Any, path: Path, rebuild: str) -> None:
    """``module.load_state_dict(weights)``, or one line naming the file when they do not fit
    (torch's own message is a multi-line list of every mismatched tensor)."""
    try:
        module.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError, AttributeError) as e:
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        detail = next(
            (line for line in lines if line.startswith(("size mismatch", "Missing key", "Unexpected key"))),
            lines[0] if lines else type(e).__name__,
        )
        raise UserError(
            f"{path}: its weights do not fit the network it describes ({detail[:200]}); {rebuild}"
        ) from None


def capture_rng(streams: dict[str, Any]) -> dict[str, Any]:
    """The run's own streams plus every global random state, as tensors and tuples that
    ``weights_only`` accepts.

    Training draws only from ``streams``; the global states are kept too, so that anything a
    user adds (dropout, a custom augmentation) also resumes exactly.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "streams": streams,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
    }


def restore_rng(state: dict[str, Any]) -> dict[str, Any]:
    """Restore the global random states; return the run's own streams for the caller."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    return state["streams"]
