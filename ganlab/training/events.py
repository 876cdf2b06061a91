"""The contract between the training loop and everything that is not a D or G step.

- The loop decides once per stop what is due (``Due``: a tick with its rows, a grid, an
  evaluation, a checkpoint with the noise states it keeps, the end) and hands it to every hook.
  No hook asks the clock again.
- Hooks see the run (``Run``) read-only: it is frozen, and its ``progress`` is written by the loop
  alone (a structure test checks that no hook assigns to it).
- What a hook produces goes back by one of two explicit ways:
  - a return value, which the loop applies to the progress before the next hook runs
    (``Evaluated``: a row of the evaluation history, and the generator when it is the best so far);
  - ``Run.reports``, a channel any hook reports to and record keepers subscribe to (as
    stylegan2's ``training_stats``: report anywhere, one collector writes). MLflow and
    ``models/run.json`` are the ``Tracking`` hook's alone: nothing here imports either.
- What the start is (fresh, resumed, extended) is ``Run.start``, decided once by
  ``session.decide``; a hook reads it and never decides again.

The hooks themselves live outside ``training/`` (``ganlab/hooks.py``); the loop takes them as an
argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import torch

from ganlab.io.background import Writer
from ganlab.params import Params
from ganlab.training import state
from ganlab.training.clock import Clock

if TYPE_CHECKING:  # the type alone: the session reads run.json, which is the Tracking hook's concern
    from ganlab.training.session import Start


@dataclass(frozen=True)
class Due:
    """What is due at one stop of the clock, decided by the loop."""

    step: int
    kimg: float
    images: int  # real images shown to D so far: the MLflow step of everything logged
    row: dict[str, float] | None = None  # at a tick: the history row just added (what the training computed)
    timing: dict[str, float] | None = None  # at a tick: its speed and wall time (reports/train/timing.csv)
    grid: bool = False  # a fixed-latent grid (video frame)
    evaluate: bool = False  # the in-training evaluation
    noise_states: tuple = ()  # where a checkpoint is due: every rank's noise stream, which it keeps
    end: bool = False  # the last step: the run's length, or train.stop

    @property
    def tick(self) -> bool:
        return self.row is not None

    @property
    def checkpoint(self) -> bool:
        return bool(self.noise_states)


@dataclass(frozen=True)
class Ended:
    """What the loop hands the hooks at the end: every rank's parameter hash and noise stream."""

    digests: tuple
    noise_states: tuple


@dataclass(frozen=True)
class Evaluated:
    """An evaluation's result, returned by the hook that evaluates."""

    row: dict[str, float]  # kimg and every score (reports/train/eval_history.csv)
    best: tuple[float, dict[str, torch.Tensor]] | None = None  # (value, generator state) when best so far


class Recorder(Protocol):
    """A record keeper (MLflow, run.json): what ``Reports`` forwards to."""

    def metrics(self, values: dict[str, float], step: int) -> None: ...
    def image(self, grid: torch.Tensor, key: str, step: int) -> None: ...
    def tags(self, tags: dict[str, str]) -> None: ...
    def params(self, params: dict[str, Any]) -> None: ...
    def checkpoint(self, step: int, seconds: float) -> None: ...


@dataclass
class Reports:
    """The one channel from the hooks to the record keepers. Every report runs on the run's
    writer, in submission order, so a checkpoint's record follows the checkpoint file."""

    writer: Writer
    recorders: list[Recorder] = field(default_factory=list)

    def subscribe(self, recorder: Recorder) -> None:
        self.recorders.append(recorder)

    def metrics(self, values: dict[str, float], step: int) -> None:
        for r in self.recorders:
            self.writer.submit(r.metrics, values, step)

    def image(self, grid: torch.Tensor, key: str, step: int) -> None:
        for r in self.recorders:
            self.writer.submit(r.image, grid, key, step)

    def tags(self, tags: dict[str, str]) -> None:
        for r in self.recorders:
            self.writer.submit(r.tags, tags)

    def params(self, params: dict[str, Any]) -> None:
        """Constants of the run (the same value every time they are reported)."""
        for r in self.recorders:
            self.writer.submit(r.params, params)

    def checkpoint(self, step: int, seconds: float) -> None:
        """A checkpoint of ``step`` has been written (or is queued before this on the writer)."""
        for r in self.recorders:
            self.writer.submit(r.checkpoint, step, seconds)


@dataclass(frozen=True, eq=False)
class Run:
    """What the hooks see of a training run: its parts, its clock and progress, and the background
    writer that keeps file and MLflow work off the hot path."""

    params: Params
    gan: Any  # loop.GAN
    data: Any  # DeviceData | StreamedData
    clock: Clock
    streams: state.Streams
    progress: state.Progress  # written by the loop only
    fp: str
    dataset_sha: str
    device: torch.device
    world: int
    start: Start  # what this start is (fresh, resumed, extended): decided before the run, read here
    lineage: str | None = None  # the fingerprint without the length (run.json): a longer run may extend this one
    planned_kimg: float | None = None  # what train.minutes buys on this machine (run.json keeps it for resumes)
    writer: Writer = field(init=False)
    reports: Reports = field(init=False)

    def __post_init__(self) -> None:
        writer = Writer(background=self.device.type == "cuda")  # on a CPU every core already trains (io/background.py)
        object.__setattr__(self, "writer", writer)
        object.__setattr__(self, "reports", Reports(writer))

    @property
    def resumed(self) -> bool:
        """Continues a checkpoint: an interrupted run, or a finished one extended."""
        return self.start.resumes

    @property
    def extended(self) -> bool:
        return self.start.extends

    @property
    def image_size(self) -> int:
        return self.data.images.shape[-1]

    @property
    def images(self) -> int:
        """Real images shown to D so far: the MLflow step of everything logged."""
        return self.progress.step * self.clock.batch

    @property
    def kimg(self) -> float:
        return self.clock.kimg(self.progress.step)

    def replan(self, clock: Clock, planned_kimg: float) -> Clock:
        """A ``train.minutes`` run's new plan (loop._replan): the one change a run's parts take while it
        trains, so that the hooks (the progress bar, run.json) see the clock the loop follows."""
        object.__setattr__(self, "clock", clock)
        object.__setattr__(self, "planned_kimg", planned_kimg)
        return clock

    def snapshot(self, noise_states) -> state.RunCheckpoint:
        return state.snapshot(
            self.gan, self.params, self.image_size, self.progress, list(noise_states), self.fp, self.kimg
        )


class Hook:
    def check(self, run: Run) -> None:
        """Load and check what the hook needs, before any hook starts: a bad input then stops the
        run before its MLflow run is opened, not with an MLflow run marked FAILED."""

    def on_start(self, run: Run) -> None: ...
    def on_step(self, run: Run, due: Due) -> Evaluated | None: ...
    def on_end(self, run: Run, end: Ended) -> None: ...
    def on_failure(self, run: Run, error: BaseException) -> None: ...


class Hooks:
    """Calls the hooks in list order (start, steps) and in reverse at the end (the MLflow run is
    opened first and closed last), and applies what they return to the loop's progress."""

    def __init__(self, hooks: list[Hook]):
        self.hooks = hooks

    def on_start(self, run: Run) -> None:
        for h in self.hooks:
            h.check(run)
        for h in self.hooks:
            h.on_start(run)

    def on_step(self, run: Run, due: Due) -> None:
        for h in self.hooks:
            out = h.on_step(run, due)
            if isinstance(out, Evaluated):
                take(run.progress, out)

    def on_end(self, run: Run, end: Ended) -> None:
        for h in reversed(self.hooks):
            h.on_end(run, end)

    def on_failure(self, run: Run, error: BaseException) -> None:
        for h in reversed(self.hooks):
            h.on_failure(run, error)


def take(progress: state.Progress, e: Evaluated) -> None:
    progress.evals.append(e.row)
    if e.best is not None:
        progress.best_value, progress.generator_best = e.best
        progress.best_kimg = e.row["kimg"]
