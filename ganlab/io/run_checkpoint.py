"""The training checkpoint (``models/checkpoint.pt``): what it holds, how it is read, and what
"complete" means. Training writes it, resumes and extends from it, and the later stages take
their generator from it; each asks this module, and no other module knows its keys.

A checkpoint is a plain dict of tensors and containers (``io/checkpoint.py`` saves and loads it
without unpickling code). During training it holds everything needed to continue exactly; the
final one (``complete``) drops the optimizers' moments and adds the eval-mode generator that
the later stages use (and the best one, when in-training evaluation chose one).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ganlab.errors import UserError
from ganlab.io import checkpoint

FORMAT = 2  # raise it when a field changes meaning or goes away: an older file then says so in one line
MODEL_KEYS = ("latent_size", "image_size", "g_width")


def _final() -> Any:
    """A field only the final file holds (a resumable file has no such key, so its bytes stay as they were)."""
    return field(default=None, metadata={"final": True})


@dataclass
class RunCheckpoint:
    """The whole schema: a field added here is written, read back and checked with no other edit
    (the training's ``Progress`` carries the fields whose names it shares with this one). The
    field order is the file's key order, part of its bytes: add new fields at the end."""

    model: dict  # the generator's description (params.model and the image size): what the stages rebuild
    generator: dict
    discriminator: dict
    ema: dict | None
    opt_g: dict | None  # None in the final file
    opt_d: dict | None
    augment_p: Any  # ADA's strength, or None
    step: int  # D updates
    kimg: float
    history: list
    rng: dict  # every random state (io/checkpoint.capture_rng), the noise streams of every rank inside
    fingerprint: str  # the params and data it was made with (training/state.fingerprint)
    evals: list
    best_value: float | None
    best_kimg: float
    generator_best: dict | None
    checkpoints: list  # the kimg of every resumable checkpoint written before
    complete: bool = False
    generator_eval: dict | None = _final()  # the generator with BN statistics for eval-mode sampling
    replica_digests: list | None = _final()

    def finish(self, generator_eval: dict, replica_digests: list, best_is_last: bool) -> RunCheckpoint:
        """The final checkpoint: never resumed, so no optimizer moments (2/3 of a resumable file),
        and the eval generator, stored once with the best when the last is the best."""
        return replace(
            self,
            opt_g=None,
            opt_d=None,
            complete=True,
            generator_eval=generator_eval,
            replica_digests=replica_digests,
            generator_best=generator_eval if best_is_last else self.generator_best,
        )


def save(c: RunCheckpoint, path: Path) -> None:
    """The one writer: a plain dict (``weights_only`` loads it without unpickling code), in field order."""
    keep = [f.name for f in fields(c) if c.complete or not f.metadata.get("final")]
    checkpoint.save({"format": FORMAT, **{k: getattr(c, k) for k in keep}}, path)


def read(state: Any, path: Path, rebuild: str) -> RunCheckpoint:
    """The one reader of a loaded file: another version's or a damaged one is one line naming
    ``path`` and ``rebuild``."""
    state = checkpoint.require(state, path, (), rebuild)
    if state.get("format") != FORMAT:
        raise UserError(
            f"{path}: a checkpoint of another version of gan-lab (format {state.get('format')!r}, "
            f"this one reads {FORMAT}); {rebuild}"
        )
    required = tuple(f.name for f in fields(RunCheckpoint) if f.default is MISSING)
    state = checkpoint.require(state, path, required, rebuild)
    if not isinstance(state["step"], int):
        raise UserError(f"{path}: not a complete file of this project (its step is {state['step']!r}); {rebuild}")
    return RunCheckpoint(**{f.name: state[f.name] for f in fields(RunCheckpoint) if f.name in state})


def load(path: Path, rebuild: str) -> RunCheckpoint:
    return read(checkpoint.load(path), path, rebuild)


def for_stages(state: Any, path: Path, which: str, rebuild: str) -> tuple[dict, dict, float]:
    """(the model's description, the generator's weights, the kimg they are from) for ``which``
    (best or last) of a finished run; one line naming the fix for anything else."""
    c = read(state, path, rebuild)
    if not c.complete:
        raise UserError(f"{path}: training has not finished ({c.kimg} kimg so far); run `gan train` to resume it")
    if c.generator_eval is None:
        raise UserError(f"{path}: not a complete file of this project (no 'generator_eval'); {rebuild}")
    model = checkpoint.require(c.model, path, MODEL_KEYS, rebuild)
    if which == "best" and c.generator_best is not None:
        return model, c.generator_best, c.best_kimg
    return model, c.generator_eval, c.kimg
