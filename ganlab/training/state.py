"""Resumable state: the progress a run carries, whether a checkpoint may be resumed, and how it is
restored (what a checkpoint file holds is ``io/run_checkpoint.py``; which run a start is,
``session.py``).

A checkpoint resumes only under the same fingerprint (everything that shapes it), so a
changed param or data set starts fresh instead of silently continuing another run.

The checkpoint holds only what the training computes, so the same params and data give the
same bytes (and DVC sees no change where there is none). What differs on every run (the MLflow
run id, the wall time) lives beside it in ``models/run.json`` (``io/run_record.py``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ganlab import layout
from ganlab.errors import UserError
from ganlab.io import checkpoint, run_checkpoint
from ganlab.io.run_checkpoint import RunCheckpoint
from ganlab.params import LENGTH, RUNS, Params, TrainParams
from ganlab.training import distributed


@dataclass
class Streams:
    """The run's random streams: batch order (the same on every rank; reseeded per epoch by the
    clock, so it has no state to keep) and noise (per rank, kept in checkpoints)."""

    seed: int
    perm: torch.Generator
    noise: torch.Generator

    @classmethod
    def seeded(
        cls, seed: int, device: torch.device, rank: int = 0, index_device: torch.device | None = None
    ) -> Streams:
        return cls(
            seed,
            torch.Generator(device=index_device or device),
            torch.Generator(device=device).manual_seed(seed + 1_000_003 * (rank + 1)),
        )


@dataclass
class Progress:
    """What the loop advances. A field named as one of ``RunCheckpoint``'s is saved in every
    checkpoint and restored from it (``snapshot``, ``restore``); the others live for one process."""

    step: int = 0  # D updates so far; the clock turns it into images seen
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None
    evals: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_kimg: float = 0.0
    generator_best: dict[str, torch.Tensor] | None = None  # on the CPU
    checkpoints: list[float] = field(default_factory=list)  # the kimg of every checkpoint written
    seconds: float = 0.0  # wall time of the training so far, across resumes
    continues: str | None = None  # the MLflow run of the finished run this one extends (not in checkpoints)


def fingerprint(params: Params, dataset_sha: str, world: int, length: bool = True) -> str:
    """Identifies everything that shapes the checkpoint; a checkpoint resumes only under the same one.
    ``length=False``: the same but for the run's length, which a finished run may be extended by.
    Which train fields count follows their role in ``params.TrainParams``."""
    shaping = {"model": params.model.model_dump(mode="json"), "data": dataset_sha, "world": world}
    unshaping = TrainParams.fields_of(RUNS) | (set() if length else TrainParams.fields_of(LENGTH))
    shaping["train"] = params.train.model_dump(mode="json", exclude=unshaping)
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def _saved(source: Progress | RunCheckpoint) -> dict[str, Any]:
    """The fields that progress and the checkpoint share, by name, from either."""
    names = {f.name for f in fields(RunCheckpoint)} & {f.name for f in fields(Progress)}
    return {name: getattr(source, name) for name in names}


def snapshot(
    gan, params: Params, image_size: int, progress: Progress, noise_states: list, fp: str, kimg: float
) -> RunCheckpoint:
    """Everything needed to continue exactly, as references to the live tensors (``host_copy``
    it before training goes on)."""
    return RunCheckpoint(
        model={**params.model.model_dump(), "image_size": image_size},
        generator=distributed.unwrap(gan.G).state_dict(),
        discriminator=distributed.unwrap(gan.D).state_dict(),
        ema=gan.ema.state_dict() if gan.ema is not None else None,
        opt_g=gan.opt_g.state_dict(),
        opt_d=gan.opt_d.state_dict(),
        augment_p=gan.augment_p,
        kimg=kimg,
        rng=checkpoint.capture_rng({"noise": noise_states}),
        fingerprint=fp,
        **_saved(progress),
    )


REBUILD = "move it aside, then `gan train` starts fresh"


def read(path: Path, say) -> RunCheckpoint | None:
    """The checkpoint on the CPU; None when there is none or it cannot be read (said). A file of
    another version or with parts missing is one line: it is not overwritten unasked."""
    if not path.is_file():
        return None
    try:
        state = checkpoint.load(path)
    except UserError as e:
        say(f"starting fresh: {e}")
        return None
    return run_checkpoint.read(state, path, REBUILD)


def best_tags(kimg: float, value: float | None, metric: str) -> dict[str, str]:
    """The MLflow tags that say where the best generator is: the same whether the run ended or was closed later."""
    return {"best_kimg": f"{kimg:g}", f"best_{metric}": f"{value:.6g}"} if value is not None else {}


def restore(gan, r: RunCheckpoint, streams: Streams, rank: int) -> Progress:
    """Load a CPU checkpoint into the networks and optimizers (which copy it to their device) and
    the streams. A finished run's has no optimizer moments (``RunCheckpoint.finish``): extending
    it starts Adam afresh, as StyleGAN2-ADA's ``--resume`` does."""
    path = layout.CHECKPOINT
    checkpoint.load_weights(distributed.unwrap(gan.G), r.generator, path, REBUILD)
    checkpoint.load_weights(distributed.unwrap(gan.D), r.discriminator, path, REBUILD)
    if gan.ema is not None:
        checkpoint.load_weights(gan.ema, r.ema, path, REBUILD)
    for opt, moments in ((gan.opt_g, r.opt_g), (gan.opt_d, r.opt_d)):
        if moments is not None:
            checkpoint.load_weights(opt, moments, path, REBUILD)
    if gan.augment_p is not None:
        gan.augment_p.copy_(r.augment_p)
    try:
        streams.noise.set_state(checkpoint.restore_rng(r.rng)["noise"][rank])
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        raise UserError(
            f"{path}: its random-number states do not fit this run ({type(e).__name__}); {REBUILD}"
        ) from None
    return Progress(**_saved(r))  # the MLflow run and wall time are the start's (training/session.py)


def shared_eval_state(G: nn.Module, G_eval: nn.Module) -> dict[str, torch.Tensor]:
    """G_eval's state with G's own parameter tensors (equal values, recalibrated BN buffers
    only differ): ``torch.save`` stores a storage once, so the eval generator costs the file
    its buffers alone."""
    params = dict(G.named_parameters())
    return {k: params[k].detach() if k in params else v for k, v in G_eval.state_dict().items()}


def generator_state(G: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of G's weights, to keep beside a training run that goes on changing them."""
    return {k: v.detach().to("cpu", copy=True) for k, v in G.state_dict().items()}
