"""What the training loop tells everything that is not a D or G step: the run as the hooks see it,
and the order in which hooks are called. The hooks themselves (MLflow, files, grids, evaluation,
checkpoints) live outside ``training/`` (``ganlab/hooks.py``), and the loop takes them as an argument.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ganlab.io.background import Writer
from ganlab.params import Params
from ganlab.training import state
from ganlab.training.clock import Clock

if TYPE_CHECKING:
    from ganlab.io.tracking import TrainingRun


class Run:
    """What the hooks see of a training run: its parts, its clock and progress, the MLflow run,
    and the background writer that keeps file and MLflow work off the hot path."""

    def __init__(
        self,
        params: Params,
        gan,
        data,
        clock: Clock,
        streams: state.Streams,
        progress: state.Progress,
        fp: str,
        dataset_sha: str,
        device: torch.device,
        world: int,
        resumed: bool,
        lineage: str | None = None,
        extended: bool = False,
    ):
        self.params, self.gan, self.data, self.clock, self.streams = params, gan, data, clock, streams
        self.progress, self.fp, self.dataset_sha, self.device, self.world, self.resumed = (
            progress,
            fp,
            dataset_sha,
            device,
            world,
            resumed,
        )
        self.lineage = (
            lineage  # the fingerprint without the length (run.json), so that a longer run may extend this one
        )
        self.extended = extended  # a finished run continued to a new length or train.stop
        self.image_size = data.images.shape[-1]
        self.noise_states: list = []  # every rank's noise stream, gathered where a checkpoint is due
        self.digests: list = []  # every rank's parameter hash, gathered at the end
        self.ending = False  # this step is the last: the run's length, or train.stop
        self.tracker: TrainingRun | None = None
        self.timing: dict[str, float] = {}  # the last tick's speed and wall time (reports/train/timing.csv)
        self.writer = Writer(background=device.type == "cuda")  # on a CPU every core already trains (io/background.py)

    @property
    def images(self) -> int:
        """Real images shown to D so far: the MLflow step of everything logged."""
        return self.progress.step * self.clock.batch

    @property
    def kimg(self) -> float:
        return self.clock.kimg(self.progress.step)

    def snapshot(self) -> dict:
        return state.snapshot(
            self.gan, self.params, self.image_size, self.progress, self.noise_states, self.fp, self.kimg
        )


class Hook:
    def check(self, run: Run) -> None:
        """Load and check what the hook needs, before any hook starts: a bad input then stops the
        run before its MLflow run is opened, not with an MLflow run marked FAILED."""

    def on_start(self, run: Run) -> None: ...
    def on_step(self, run: Run, ticked: bool) -> None: ...
    def on_end(self, run: Run) -> None: ...
    def on_failure(self, run: Run, error: BaseException) -> None: ...


class Hooks:
    def __init__(self, hooks: list[Hook]):
        self.hooks = hooks

    def on_start(self, run: Run) -> None:
        for h in self.hooks:
            h.check(run)
        for h in self.hooks:
            h.on_start(run)

    def on_step(self, run: Run, ticked: bool) -> None:
        for h in self.hooks:
            h.on_step(run, ticked)

    def on_end(self, run: Run) -> None:
        for h in reversed(self.hooks):
            h.on_end(run)

    def on_failure(self, run: Run, error: BaseException) -> None:
        for h in reversed(self.hooks):
            h.on_failure(run, error)
