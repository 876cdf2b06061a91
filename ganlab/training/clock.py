"""The progress clock: training length and every cadence counted in images shown to D.

With 20 images an epoch is one step, with 1000 it is fifteen; counted in epochs, grids and
checkpoints would come at different points of training for different data sets. Counted in
images seen (kimg, as StyleGAN2-ADA's ticks), a 20-image and a 1000-image run of the same
length get the same grids, evaluations and checkpoints at the same points of training.

A step shows ``batch`` real images (all ranks together). Batches are cut from an endless
sequence of per-epoch permutations, so every image is shown once per epoch, a batch may
straddle two epochs, and nothing happens on the host at an epoch boundary.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ganlab.params import TrainParams


@dataclass(frozen=True)
class Cadence:
    """The steps where ``k x kimg`` thousand images have been shown, k = 1..count, up to ``last``.

    Asked arithmetically, never listed: a listed cadence cost memory in proportion to the run's
    length (``train.kimg: 1e9`` ran out of memory before its first step). The step of each k is
    the formula the listed sets used, and it never decreases with k, so a bisection over k
    answers "is this step due" and "which is next" exactly, in O(log count) time and O(1) memory.
    """

    kimg: float
    batch: int
    count: int
    last: int

    def step(self, k: int) -> int:
        return math.ceil(k * self.kimg * 1000 / self.batch - 1e-9)  # 1e-9: float dust

    def _first_reaching(self, s: int) -> int:
        """The smallest k in 1..count whose step is at least ``s``; count + 1 if none."""
        lo, hi = 1, self.count + 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.step(mid) >= s:
                hi = mid
            else:
                lo = mid + 1
        return lo

    def __contains__(self, s: int) -> bool:
        if s > self.last:
            return False
        k = self._first_reaching(s)
        return k <= self.count and self.step(k) == s

    def after(self, s: int) -> int | None:
        k = self._first_reaching(s + 1)
        return self.step(k) if k <= self.count and self.step(k) <= self.last else None


@dataclass(frozen=True)
class Steps:
    """A set of steps: cadences, and a few single steps (the end, the log-spaced grids). Supports
    ``in``, truth, ordered iteration and ``<=`` like the frozensets it replaces."""

    cadences: tuple[Cadence, ...] = ()
    points: frozenset[int] = frozenset()
    ordered: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ordered", tuple(sorted(self.points)))

    def __contains__(self, s: int) -> bool:
        return s in self.points or any(s in c for c in self.cadences)

    def __bool__(self) -> bool:
        return self.after(-1) is not None

    def after(self, s: int) -> int | None:
        """The smallest step above ``s``, or None."""
        i = bisect.bisect_right(self.ordered, s)
        nexts = [n for n in (c.after(s) for c in self.cadences) if n is not None] + list(self.ordered[i : i + 1])
        return min(nexts, default=None)

    def __iter__(self) -> Iterator[int]:
        s = self.after(-1)
        while s is not None:
            yield s
            s = self.after(s)

    def __le__(self, other: Steps) -> bool:
        return all(s in other for s in self)


@dataclass(frozen=True)
class Clock:
    images: int  # the data set's size
    batch: int  # real images per step, all ranks together
    total: int  # steps of the run
    ticks: Steps  # history rows and MLflow metrics: the one host read of the losses
    grids: frozenset[int]  # fixed-latent grids (and video frames), log-spaced; 0 is the untrained one
    evals: Steps  # in-training evaluations
    checkpoints: Steps  # resumable checkpoints before the end (the end writes the final one)

    @classmethod
    def of(cls, t: TrainParams, images: int, planned_kimg: float | None = None) -> Clock:
        """The clock of ``t``'s length, or of ``planned_kimg`` (what ``train.minutes`` buys on this
        machine): then ticks, evaluations and checkpoints keep the shares of the run that they have
        in a ``train.kimg``-long one (25 of 150 kimg: an evaluation every sixth of the run)."""
        b = min(t.batch_size, images)  # a data set smaller than the batch trains on all of it
        if planned_kimg is not None:
            wanted, scale = round(planned_kimg * 1000), planned_kimg / t.kimg
        else:
            wanted, scale = (t.epochs * images if t.epochs else round(t.kimg * 1000)), 1.0
        total = max(1, math.ceil(wanted / b))

        def every(kimg: float, last: int = total) -> Cadence:  # the steps where k * kimg images have been shown
            kimg *= scale
            count = math.floor(wanted / (kimg * 1000) + 1e-9) if kimg else 0
            return Cadence(kimg, b, count, last)

        checkpoints = every(t.checkpoint_kimg, last=total - 1)
        return cls(
            images,
            b,
            total,
            Steps((every(t.tick_kimg), checkpoints), frozenset({total})),  # a checkpoint holds whole ticks
            frozenset({0, *log_spaced(t.grids, total)}),
            Steps((every(t.eval_kimg),), frozenset({total})) if t.eval_kimg else Steps(),
            Steps((checkpoints,)),
        )

    def stops(self, after: int) -> Iterator[int]:
        """Every step after ``after`` where something is due, in order, each found when it is reached."""
        grids = Steps(points=self.grids)
        s = after
        while True:
            nexts = [
                n for n in (x.after(s) for x in (self.ticks, grids, self.evals, self.checkpoints)) if n is not None
            ]
            s = min(nexts, default=self.total + 1)
            if s > self.total:
                return
            yield s

    def kimg(self, step: int) -> float:
        return step * self.batch / 1000

    def epoch(self, step: int) -> float:
        return step * self.batch / self.images

    def batch_indices(self, first: int, stop: int, perm: torch.Generator, seed: int) -> torch.Tensor:
        """(stop - first, batch) indices into the data set for steps first..stop-1, on ``perm``'s device.

        Epoch e's order is drawn from a generator seeded by (seed, e), so the order of any step
        follows from its number alone: resuming needs no saved order, and no epoch boundary
        needs the host.
        """
        start, end = first * self.batch, stop * self.batch
        orders = []
        for e in range(start // self.images, (end - 1) // self.images + 1):
            perm.manual_seed((seed * 1_000_003 + e) % 2**63)
            orders.append(torch.randperm(self.images, device=perm.device, generator=perm))
        flat = torch.cat(orders)[start - (start // self.images) * self.images :][: end - start]
        return flat.view(stop - first, self.batch)


def log_spaced(count: int, total: int) -> list[int]:
    """``count`` distinct steps in 1..total, geometrically spaced from 1/500 of the run to its end.

    Early training changes fastest, so early frames come densest (a 40-frame video spends 11
    frames on the first 1% of the run and 5 on its second half); where geometric spacing would
    put two frames on one step, they go on consecutive steps instead, which keeps the count the
    same for any batch size as long as the run has that many steps.
    """
    if total <= count:
        return list(range(1, total + 1))
    out: list[int] = []
    for i, point in enumerate(np.geomspace(max(1.0, total / 500), total, count)):
        step = max(round(float(point)), out[-1] + 1 if out else 1)
        out.append(min(step, total - (count - 1 - i)))
    return out
