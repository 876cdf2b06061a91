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


def test_video_frames_are_spread_over_what_the_run_trained(tmp_path):
    """A run stopped early drew its grids on the planned length's schedule, crowded into the start
    of what it trained: 21 of 37 frames were grey noise. The full schedule keeps every frame."""
    import math

    import numpy as np
    from PIL import Image

    from ganlab import layout
    from ganlab.render.video import grid_frames, spread_over_training

    for count, total, batch in ((40, 2344, 64), (48, 100, 16), (40, 30, 20), (4, 4, 16), (500, 10**6, 32)):
        full = [0, *(batch * s for s in log_spaced(count, total))]
        assert spread_over_training(full) == full
    planned = [0, *(64 * s for s in log_spaced(40, 2344))]  # 150 kimg at batch 64, train.grids 40
    early = [i for i in planned if i <= 47 * 64] + [47 * 64]  # stopped at step 47 (2%), the last grid there
    for images in early:
        Image.new("RGB", (4, 4), (images % 256, 0, 0)).save(tmp_path / layout.grid_file(images).name)
    frames = [images for images, _ in grid_frames(tmp_path)]
    assert frames[0] == 0 and frames[-1] == 47 * 64 and 5 <= len(frames) < len(early) == 17
    step = math.log(500) / (len(early) - 2)  # 16 trained grids log-spaced over [last/500, last]
    gaps = np.diff(np.log(frames[1:]))
    assert np.diff(np.log(early[1:])).max() < step / 2 and gaps.min() > step * 0.8  # each about a step apart
