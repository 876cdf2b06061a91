"""Checkpoint files: everything a run needs to continue, loaded without unpickling code.

``torch.load(weights_only=True)`` accepts only tensors and plain containers, so a checkpoint
from a stranger cannot execute anything when it is opened.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from stages.atomic import atomic_path
from stages.networks import Generator
from stages.params import ParamsError


def save(state: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: Path, device: str | torch.device = "cpu", mmap: bool = False,
         missing: str = "checkpoint not found (run `gan train` first)") -> dict[str, Any]:
    """``mmap``: tensors stay in the file and are paged in when touched (large data sets)."""
    if not Path(path).is_file():
        raise ParamsError(f"{path}: {missing}")
    try:
        return torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise ParamsError(f"{path}: refused to load: not a plain weights file ({str(e).splitlines()[0]})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise ParamsError(f"{path}: not a readable checkpoint ({str(e).splitlines()[0]})") from None


def load_generator(path: Path, device: str | torch.device = "cpu", which: str = "last") -> Generator:
    """The generator for inference (``which``: best or last), in eval mode, with the BN
    statistics made for sampling. Without in-training evaluation, best is last."""
    state = load(path, device)
    if not state.get("complete"):
        raise ParamsError(f"{path}: training has not finished (epoch {state.get('epoch')}); run `gan train` to resume it")
    m = state["model"]
    g = Generator(m["latent_size"], m["image_size"], m["g_width"]).to(device)
    g.load_state_dict(state["generator_best"] if which == "best" and state.get("generator_best") else state["generator_eval"])
    return g.eval().requires_grad_(False)


def capture_rng(streams: dict[str, Any]) -> dict[str, Any]:
    """The run's own streams plus every global random state, as tensors and tuples that
    ``weights_only`` accepts.

    Training draws only from ``streams``; the global states are kept too, so that anything a
    user adds (dropout, a custom augmentation) also resumes exactly.
    """
    import random

    import numpy as np

    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "streams": streams,
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss, "cached": cached},
    }


def restore_rng(state: dict[str, Any]) -> dict[str, Any]:
    """Restore the global random states; return the run's own streams for the caller."""
    import random

    import numpy as np

    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    return state["streams"]
