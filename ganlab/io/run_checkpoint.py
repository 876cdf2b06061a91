"""The training checkpoint (``models/checkpoint.pt``): what it holds, how it is read, and what
"complete" means. Training writes it, resumes and extends from it, and the later stages take
their generator from it; each asks this module, and no other module knows its keys.

A checkpoint is a plain dict of tensors and containers (``io/checkpoint.py`` saves and loads it
without unpickling code). During training it holds everything needed to continue exactly; the
final one (``complete``) drops the optimizers' moments and adds the eval-mode generator that
the later stages use (and the best one, when in-training evaluation chose one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ganlab.errors import UserError
from ganlab.io import checkpoint

FORMAT = 2
RESUME_KEYS = (
    "generator",
    "discriminator",
    "ema",
    "opt_g",
    "opt_d",
    "augment_p",
    "step",
    "history",
    "rng",
    "fingerprint",
    "evals",
    "best_value",
    "best_kimg",
    "generator_best",
    "checkpoints",
)
MODEL_KEYS = ("latent_size", "image_size", "g_width")


def make(
    *,
    model: dict,
    generator: dict,
    discriminator: dict,
    ema: dict | None,
    opt_g: dict,
    opt_d: dict,
    augment_p: Any,
    step: int,
    kimg: float,
    history: list,
    rng: dict,
    fingerprint: str,
    evals: list,
    best_value: float | None,
    best_kimg: float,
    generator_best: dict | None,
    checkpoints: list,
) -> dict[str, Any]:
    """A checkpoint to resume from; the key order is part of the file's bytes, so it stays fixed."""
    return {
        "format": FORMAT,
        "model": model,
        "generator": generator,
        "discriminator": discriminator,
        "ema": ema,
        "opt_g": opt_g,
        "opt_d": opt_d,
        "augment_p": augment_p,
        "step": step,
        "kimg": kimg,
        "history": history,
        "rng": rng,
        "fingerprint": fingerprint,
        "evals": evals,
        "best_value": best_value,
        "best_kimg": best_kimg,
        "generator_best": generator_best,
        "checkpoints": checkpoints,
        "complete": False,
    }


def finish(state: dict[str, Any], generator_eval: dict, replica_digests: list, best_is_last: bool) -> dict[str, Any]:
    """The final checkpoint: never resumed (``resumable``), so no optimizer moments (2/3 of a
    resumable file), and the eval generator, stored once with the best when the last is the best."""
    state.update(generator_eval=generator_eval, opt_g=None, opt_d=None, complete=True, replica_digests=replica_digests)
    if best_is_last:
        state["generator_best"] = state["generator_eval"]
    return state


def is_complete(state: dict[str, Any] | None) -> bool:
    return state is not None and bool(state.get("complete"))


def fingerprint(state: dict[str, Any] | None) -> str | None:
    return None if state is None else state.get("fingerprint")


def step(state: dict[str, Any]) -> int | None:
    """The steps trained, or None when the file does not say (another make)."""
    s = state.get("step")
    return s if isinstance(s, int) else None


def last_row(state: dict[str, Any]) -> dict[str, float]:
    """The last history row: what a finished run returns when nothing is trained."""
    return state["history"][-1]


def checkpoint_count(state: dict[str, Any]) -> int:
    """How many resumable checkpoints the run wrote before the final one."""
    return len(state["checkpoints"])


@dataclass
class Ended:
    """Where a finished run stopped, and what its evaluations chose."""

    step: int
    evals: list
    best_value: float | None
    best_kimg: float


def ended(state: dict[str, Any]) -> Ended:
    return Ended(state["step"], state.get("evals") or [], state.get("best_value"), state.get("best_kimg") or 0.0)


@dataclass
class Resume:
    """What a run continues from, checked to be all there."""

    generator: dict
    discriminator: dict
    ema: dict | None
    opt_g: dict | None
    opt_d: dict | None
    augment_p: Any
    rng: dict
    fingerprint: str
    step: int
    history: list
    evals: list
    best_value: float | None
    best_kimg: float
    generator_best: dict | None
    checkpoints: list


def resume(state: Any, path: Path, rebuild: str) -> Resume:
    state = checkpoint.require(state, path, RESUME_KEYS, rebuild)
    return Resume(**{k: state[k] for k in Resume.__dataclass_fields__})


def for_stages(state: Any, path: Path, which: str, rebuild: str) -> tuple[dict, dict, float]:
    """(the model's description, the generator's weights, the kimg they are from) for ``which``
    (best or last) of a finished run; one line naming the fix for anything else."""
    state = checkpoint.require(state, path, (), rebuild)
    if not state.get("complete"):
        raise UserError(
            f"{path}: training has not finished ({state.get('kimg')} kimg so far); run `gan train` to resume it"
        )
    state = checkpoint.require(state, path, ("model", "generator_eval", "kimg", "best_kimg"), rebuild)
    model = checkpoint.require(state["model"], path, MODEL_KEYS, rebuild)
    if which == "best" and state.get("generator_best") is not None:
        return model, state["generator_best"], state["best_kimg"]
    return model, state["generator_eval"], state["kimg"]
