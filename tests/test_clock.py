"""The progress clock: cadences in images seen, batch order, bounded grids."""

import pytest
import torch

from ganlab.params import TrainParams
from ganlab.training.clock import Clock, log_spaced


def clock(images: int, **train) -> Clock:
    return Clock.of(TrainParams(**train), images)


def test_every_epoch_is_a_permutation_and_batches_straddle_epochs():
    c = clock(10, batch_size=4, kimg=0.04)  # 40 images: 4 epochs of 10 in 10 steps of 4
    g = torch.Generator()
    order = c.batch_indices(0, c.total, g, seed=3).flatten()
    assert c.total == 10 and len(order) == 40
    for e in range(4):
        assert sorted(order[e * 10 : (e + 1) * 10].tolist()) == list(range(10)), f"epoch {e} is not a permutation"
    assert len({tuple(order[e * 10 : (e + 1) * 10].tolist()) for e in range(4)}) == 4  # a fresh order per epoch
    # any stretch of steps gives the same batches as the whole run: resuming needs no saved order
    assert torch.equal(c.batch_indices(3, 7, g, seed=3).flatten(), order[12:28])
    assert not torch.equal(c.batch_indices(0, c.total, g, seed=4).flatten(), order)


@pytest.mark.parametrize("images", [20, 200, 1000])
def test_cadences_land_at_the_same_kimg_for_any_data_set_size(images):
    c = clock(images, kimg=150, batch_size=64, tick_kimg=2, grids=48, checkpoint_kimg=25, eval_kimg=25)
    assert len(c.grids) == 49 and 0 in c.grids  # the untrained grid, then 48
    assert [round(c.kimg(s)) for s in sorted(c.checkpoints)] == [25, 50, 75, 100, 125]
    assert [round(c.kimg(s)) for s in sorted(c.evals)] == [25, 50, 75, 100, 125, 150]
    assert c.checkpoints <= c.ticks and c.total in c.ticks and c.total in c.grids
    assert 149.99 < c.kimg(c.total) < 150 + c.batch / 1000


def test_epochs_override_kimg():
    c = clock(220, epochs=10, kimg=999, batch_size=64)
    assert c.total == 35 and 10 <= c.epoch(c.total) < 10.3  # 2200 images in whole steps of 64


def test_log_spaced_grids_are_distinct_dense_early_and_end_at_the_last_step():
    for total in (48, 100, 2344, 10**6):
        steps = log_spaced(48, total)
        assert len(steps) == 48 and steps == sorted(set(steps)) and steps[-1] == total and steps[0] >= 1
        if total >= 2000:  # dense early, where training changes fastest
            assert sum(s <= total / 100 for s in steps) >= 10 and sum(s > total / 2 for s in steps) <= 8
    assert log_spaced(48, 5) == [1, 2, 3, 4, 5]  # a run shorter than the frame count: a grid every step
