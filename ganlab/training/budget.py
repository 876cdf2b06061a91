"""``train.minutes``: a run's length as the wall time a person plans ("half an hour on my laptop"),
turned into kimg once, at the start, from the speed of the training step measured on this machine.

Why kimg after all: every cadence (grids log-spaced from 1/500 of the run, evaluations, checkpoints)
needs the run's end before the first step, and a plan in kimg keeps them where they would be in a
run of that length; the same plan is read back on resume (``models/run.json``), so a resumed run
keeps its grids and evaluations. ``train.minutes`` also ends the run at its budget, as
``train.stop.minutes`` does. At each evaluation the plan is made again from the pace the run has
actually kept, evaluations, grids and checkpoints included: a machine that slowed down or sped up
still ends near its minutes, with the evaluations and grids still to come spread over what is left.
"""

from __future__ import annotations

import copy
import dataclasses
import time

from ganlab.training import distributed
from ganlab.training.clock import Clock

MEASURE_S = 3.0  # timed steps after one warm-up step: enough for a steady rate, a few percent of a 5-minute budget
HOOKS_SHARE = 0.12  # of the budget, left for evaluations, grids and checkpoints (measured: 7-13% on 2 CPU cores)


def measured_rate(steps, gan, clock: Clock, streams) -> tuple[float, float]:
    """(images per second of the training step, seconds spent measuring) on a copy of ``gan``: the
    run's own networks and random streams are untouched. ``steps(gan, streams, first, stop)``
    trains one process's steps and returns the per-step log on the device, whose host read waits
    for the device. With several processes each would train its share of a batch in about this
    time, so the rate is one process's times their number."""
    unwrapped = dataclasses.replace(gan, G=distributed.unwrap(gan.G), D=distributed.unwrap(gan.D))
    gan, streams = copy.deepcopy(unwrapped), copy.deepcopy(streams)  # one deepcopy: the optimizers keep their params
    start = time.perf_counter()
    steps(gan, streams, 0, 1).cpu()  # warm-up: allocations, cuDNN's search, oneDNN's kernels
    t0, n = time.perf_counter(), 1
    while True:
        steps(gan, streams, n, n + 1).cpu()
        n += 1
        if (elapsed := time.perf_counter() - t0) >= MEASURE_S and n >= 3:
            break
    return (n - 1) * clock.batch / elapsed, time.perf_counter() - start


def replanned_kimg(minutes: float, images: int, seconds: float) -> float:
    """The kimg a run that has shown ``images`` in ``seconds`` (hooks included) will have shown at
    the end of its minutes if it keeps that pace; 3% of what is left is kept for the end's
    evaluation and checkpoint."""
    left = max(0.0, minutes * 60 - seconds)
    return (images + images / max(seconds, 1e-9) * left * 0.97) / 1000


def planned_kimg(minutes: float, images_per_s: float, spent_s: float) -> float:
    """The kimg that fit in ``minutes`` at that speed, after the measurement, keeping ``HOOKS_SHARE``
    for everything else the run does; at least one image."""
    left = max(0.0, minutes * 60 * (1 - HOOKS_SHARE) - spent_s)
    return max(images_per_s * left, 1.0) / 1000


def out_of_time(progress, t) -> str | None:
    """The wall-time budget spent by ``progress`` (anything with ``seconds``), checked at ticks
    (the history then ends on a full row) and when a finished run might be extended."""
    if t.budget is not None and progress.seconds >= (limit := t.budget)[0] * 60:
        return f"{progress.seconds / 60:.1f} minutes of training ({limit[1]} {limit[0]:g})"
    return None
