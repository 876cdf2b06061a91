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

import math
from dataclasses import dataclass

import numpy as np
import torch

from ganlab.params import TrainParams


@dataclass(frozen=True)
class Clock:
    images: int  # the data set's size
    batch: int  # real images per step, all ranks together
    total: int  # steps of the run
    ticks: frozenset[int]  # history rows and MLflow metrics: the one host read of the losses
    grids: frozenset[int]  # fixed-latent grids (and video frames), log-spaced; 0 is the untrained one
    evals: frozenset[int]  # in-training evaluations
    checkpoints: frozenset[int]  # resumable checkpoints before the end (the end writes the final one)

    @classmethod
    def of(cls, t: TrainParams, images: int) -> Clock:
        b = min(t.batch_size, images)  # a data set smaller than the batch trains on all of it
        wanted = t.epochs * images if t.epochs else round(t.kimg * 1000)
        total = max(1, math.ceil(wanted / b))

        def every(kimg: float) -> set[int]:  # the steps where k * kimg images have been shown (1e-9: float dust)
            count = math.floor(wanted / (kimg * 1000) + 1e-9) if kimg else 0
            return {math.ceil(k * kimg * 1000 / b - 1e-9) for k in range(1, count + 1)}

        checkpoints = {s for s in every(t.checkpoint_kimg) if s < total}
        return cls(images, b, total,
                   frozenset(every(t.tick_kimg) | checkpoints | {total}),  # a checkpoint holds whole ticks
                   frozenset({0, *log_spaced(t.grids, total)}),
                   frozenset(every(t.eval_kimg) | {total}) if t.eval_kimg else frozenset(),
                   frozenset(checkpoints))

    def stops(self, after: int) -> list[int]:
        """Every step after ``after`` where something is due, in order."""
        return sorted(s for s in self.ticks | self.grids | self.evals | self.checkpoints if after < s <= self.total)

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
