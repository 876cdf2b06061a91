"""Which run a `gan train` is, decided once, before anything trains: as StyleGAN2-ADA's
``resume_pkl`` and nanoGPT's ``init_from``, one value (``Start``) says what this start is, and
everything after follows it: the loop restores from its checkpoint or not, and the hooks read it
(``Run.start``) without deciding again.

- **fresh**: no checkpoint, or one this run may not continue (other params or data; a finished
  run of the very same params, which a code change needs retrained; a longer run that
  ``train.extend`` false or ``--fresh`` does not extend);
- **resume**: an interrupted checkpoint of this very run: the same MLflow run (``models/run.json``)
  and clock, bit-identical on CPU to a run never interrupted;
- **extend**: a finished run whose length grew or whose ``train.stop`` no longer ends it there,
  continued in a new MLflow run tagged ``continues_run``;
- **close**: this run's complete checkpoint whose MLflow run a kill left open: it is closed,
  nothing is retrained;
- **done**: a finished run that the params extend by nothing (``train.stop`` still ends it, or
  ``--extend`` asked for the length it has): it is kept, nothing is trained.

The user's line for each is ``Start.why``: docs/robustness.md quotes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ganlab import layout
from ganlab.errors import UserError
from ganlab.io import run_record
from ganlab.io.run_checkpoint import RunCheckpoint
from ganlab.params import TrainParams
from ganlab.training.best import best_key, plateaued
from ganlab.training.budget import out_of_time
from ganlab.training.clock import Clock
from ganlab.training.state import Progress, best_tags

FRESH, RESUME, EXTEND, CLOSE, DONE = "fresh", "resume", "extend", "close", "done"


@dataclass(frozen=True)
class Start:
    kind: str  # FRESH, RESUME, EXTEND, CLOSE or DONE
    why: str | None = None  # the line the user is told, when there is one
    checkpoint: RunCheckpoint | None = None  # what a resume or extension continues; close and done: the finished run
    mlflow_run: str | None = None  # resume: the MLflow run continued; extend: the finished one's; close: the one closed
    seconds: float = 0.0  # resume and extend: the wall time trained so far (run.json)
    stale_run: str | None = (
        None  # run.json's MLflow run when this start does not continue it (a kill may have left it RUNNING)
    )
    tags: dict | None = None  # close: the best generator's tags its end did not set

    @property
    def resumes(self) -> bool:
        """Continues a checkpoint: an interrupted run, or a finished one extended."""
        return self.kind in (RESUME, EXTEND)

    @property
    def extends(self) -> bool:
        return self.kind == EXTEND

    @property
    def trains(self) -> bool:
        return self.kind in (FRESH, RESUME, EXTEND)

    @property
    def result(self) -> dict[str, float] | None:
        """What a start that trains nothing returns: the finished run's last history row."""
        return None if self.trains or self.checkpoint is None else self.checkpoint.history[-1]


def decide(
    existing: RunCheckpoint | None,
    fp: str,
    lineage: str,
    t: TrainParams,
    extend: bool | None,
    clock: Callable[[], Clock],
    left_open: Callable[[str | None], str | None],
) -> Start:
    """What this start is. ``clock``: the run's clock, asked for only when the decision needs the
    length (with ``train.minutes`` it measures the speed first); ``left_open``: the status of an
    MLflow run a kill left open, None when it was closed (called once, on every rank, with None
    when there is no such candidate). ``extend``: `gan train --extend` (True) or ``--fresh``
    (False), over ``train.extend``. A shorter length asked with ``--extend`` is refused: training
    cannot be undone."""
    recorded = run_record.run_id()
    start = _decide(existing, fp, lineage, t, extend, clock, left_open)
    continued = start.mlflow_run if start.kind in (RESUME, CLOSE) else None
    return replace(start, stale_run=recorded) if recorded and recorded != continued else start


def _decide(existing, fp, lineage, t, extend, clock, left_open) -> Start:
    path = layout.CHECKPOINT
    finished = existing is not None and existing.complete
    run_id, seconds = run_record.run(fp)
    candidate = run_id if finished and existing.fingerprint == fp else None
    if (status := left_open(candidate)) is not None:
        return Start(
            CLOSE,
            f"train: {path} is this run's complete result; its MLflow run {run_id} was left {status} "
            "after the checkpoint was written (interrupted): finished it, nothing retrained",
            existing,
            run_id,
            tags=best_tags(existing.best_kimg, existing.best_value, best_key(t.best_metric)),
        )
    if existing is None:
        return Start(FRESH)
    if finished and (extension := _extension(existing, fp, lineage, clock(), t, asked=extend is True)):
        kind, why = extension
        if not (t.extend if extend is None else extend):  # train.extend false, or --fresh
            return Start(
                FRESH,
                f"train: starting fresh: {path} is a finished run of {clock().kimg(existing.step):g} kimg; "
                "train.extend (or `gan train --extend`) would continue it instead",
            )
        old_run, old_seconds = run_record.run(existing.fingerprint)
        return Start(kind, why, existing, old_run, old_seconds)
    if existing.fingerprint != fp:
        return Start(FRESH, f"starting fresh: {path} was made with other params or data")
    if finished:
        return Start(FRESH, f"starting fresh: {path} is a finished run")
    return Start(RESUME, None, existing, run_id, seconds)


def _extension(
    c: RunCheckpoint, fp: str, lineage: str, clock: Clock, t: TrainParams, asked: bool
) -> tuple[str, str] | None:
    """(EXTEND, the line that says so) to continue a finished checkpoint; (DONE, why not) when
    there is nothing to train (its stop still applies and only the length grew; or, ``asked`` by
    `gan train --extend`, it already has the length asked); None when it is not a shorter run of
    this one (a rerun of the very same params then retrains, which a code change needs).

    A run of the same fingerprint continues when train.stop no longer ends it where it ended; one
    that differs only in its length (run.json's lineage) when it is longer."""
    path, same = layout.CHECKPOINT, c.fingerprint == fp
    if not same and run_record.lineage(c.fingerprint) != lineage:
        return None
    if c.step >= clock.total:
        if not asked:
            return None
        if c.step == clock.total:
            return DONE, (
                f"train: nothing to train: {path} is a finished run of {clock.kimg(c.step):g} kimg, the "
                "length asked; it is kept (raise train.kimg, train.minutes or train.epochs to extend it)"
            )
        raise UserError(
            f"train: {path} is a finished run of {clock.kimg(c.step):g} kimg, longer than the "
            f"{clock.kimg(clock.total):g} kimg asked, and training cannot be undone; `gan train --fresh` trains the "
            "shorter run from zero"
        )
    run_id, seconds = run_record.run(c.fingerprint)
    ended = Progress(c.step, evals=c.evals, best_value=c.best_value, best_kimg=c.best_kimg, seconds=seconds)
    why = out_of_time(ended, t) or plateaued(ended, t)
    here, there = clock.kimg(c.step), clock.kimg(clock.total)
    if why:
        if same:
            return None
        return DONE, (
            f"train: {path} stopped at {here:g} kimg and train.stop still ends it there "
            f"({why}); nothing to train: raise train.stop to extend it to {there:g} kimg"
        )
    link = f"a new MLflow run tagged continues_run={run_id}" if run_id else "a new MLflow run"
    return EXTEND, (
        f"train: continuing {path} from {here:g} kimg to {there:g} kimg: a finished run whose length or "
        f"train.stop changed; Adam's moments restart (a finished checkpoint does not keep them), in {link}"
    )
