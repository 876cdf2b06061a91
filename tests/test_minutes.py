"""train.minutes: a run's length in wall time, planned in kimg once from the measured speed, with
its grids, evaluations and checkpoints spaced as in a run of that many kimg."""

import contextlib
import csv
import json
import re

import pytest
import torch

from ganlab import layout
from ganlab.params import TrainParams
from ganlab.training import budget, distributed
from ganlab.training.clock import Clock
from ganlab.training.loop import build, train_steps
from ganlab.training.state import Streams
from stages import prepare, train
from tests.conftest import interrupt_at_tick, tiny

ONE_MINUTE_IS_64_IMAGES = 64 / (60 * (1 - budget.HOOKS_SHARE))  # images/s: train.minutes 1 plans 0.064 kimg


def test_a_plan_in_minutes_is_the_clock_of_that_many_kimg_with_every_cadence_scaled():
    shipped = TrainParams()  # 150 kimg: an evaluation and a checkpoint every 25, a tick every 2, 40 grids
    planned = Clock.of(shipped, 1000, planned_kimg=300)
    longer = TrainParams(kimg=300, eval_kimg=50, checkpoint_kimg=50, tick_kimg=4)
    assert planned == Clock.of(longer, 1000)
    assert [planned.kimg(s) for s in planned.evals] == pytest.approx([50, 100, 150, 200, 250, 300], abs=0.064)
    assert len(planned.grids) == 41 and min(g for g in planned.grids if g) == round(planned.total / 500)


def test_measuring_the_speed_leaves_the_networks_and_their_random_streams_untouched():
    params = tiny()
    gan = build(params.model, params.train, 32, torch.device("cpu"), seed=0)
    streams = Streams.seeded(0, torch.device("cpu"))
    data = type("Data", (), {"batch": lambda self, idx: torch.zeros(len(idx), 3, 32, 32)})()
    clock = Clock.of(params.train, 40)
    before = distributed.parameter_digest(gan.G) + distributed.parameter_digest(gan.D), streams.noise.get_state()
    steps = lambda g, s, first, stop: train_steps(g, data, params.train, clock, s, first, stop, contextlib.nullcontext)  # noqa: E731
    budget.MEASURE_S, saved = 0.05, budget.MEASURE_S
    try:
        rate, spent = budget.measured_rate(steps, gan, clock, streams)
    finally:
        budget.MEASURE_S = saved
    assert rate > 0 and spent > 0
    after = distributed.parameter_digest(gan.G) + distributed.parameter_digest(gan.D), streams.noise.get_state()
    assert before[0] == after[0] and torch.equal(before[1], after[1])


def test_a_run_in_minutes_is_planned_once_and_a_resume_reads_the_plan_back(workdir, monkeypatch, capsys):
    # the reference length 0.128 kimg evaluates every 0.064; a plan of 0.064 kimg evaluates every 0.032
    params = tiny(train={"minutes": 1, "kimg": 0.128, "eval_kimg": 0.064, "eval_samples": 16, "checkpoint_kimg": 0.032})
    prepare.run(params)
    measured = []
    monkeypatch.setattr(budget, "measured_rate", lambda *a: measured.append(1) or (ONE_MINUTE_IS_64_IMAGES, 0.0))
    real_append = interrupt_at_tick(monkeypatch, 3)  # after the checkpoint at 0.032 kimg
    with pytest.raises(KeyboardInterrupt):
        train.run(params)
    assert "train.minutes 1 at 1 images/s" in capsys.readouterr().out
    assert json.loads(layout.RUN_INFO.read_text())["planned_kimg"] == pytest.approx(0.064)
    monkeypatch.setattr("ganlab.hooks.append_history", real_append)
    train.run(params)
    assert measured == [1]  # the resume read the plan back
    assert [float(r["kimg"]) for r in csv.DictReader(layout.HISTORY.open())] == [0.016, 0.032, 0.048, 0.064]
    assert [float(r["kimg"]) for r in csv.DictReader(layout.EVAL_HISTORY.open())] == [0.032, 0.064]


def test_the_minutes_end_the_run_at_their_budget_like_train_stop_minutes(workdir, monkeypatch, capsys):
    params = tiny(train={"minutes": 1e-6, "eval_kimg": 0})
    prepare.run(params)
    # a plan of 0.128 kimg, twice the reference 0.064: a tick every 0.032 kimg, and the budget is out at the first
    monkeypatch.setattr(budget, "measured_rate", lambda *a: (ONE_MINUTE_IS_64_IMAGES * 2e6, 0.0))
    train.run(params)
    # the minutes it says are the wall time this machine took (0.1 on a loaded one), not part of the behaviour
    said = capsys.readouterr().out
    assert re.search(
        r"stopping at 0\.032 of 0\.128 kimg: \d+\.\d minutes of training \(train\.minutes 1e-06\)", said
    ), said
    assert [float(r["kimg"]) for r in csv.DictReader(layout.HISTORY.open())] == [0.032]


def test_the_pace_a_run_keeps_plans_the_rest_of_its_minutes():
    # 6000 images in 30 s of a 1-minute budget: 200 images/s for 97% of the 30 s left
    assert budget.replanned_kimg(1, 6000, 30.0) == pytest.approx((6000 + 200 * 30 * 0.97) / 1000)
    assert budget.replanned_kimg(1, 6000, 90.0) == pytest.approx(6.0)  # over budget: nothing more fits


def test_a_run_planned_again_follows_its_new_clock_to_the_end(workdir, monkeypatch, capsys):
    """The start's measurement planned 0.064 kimg; at the first evaluation (0.032) the pace says 0.256
    fit: the later evaluations follow the new plan's cadence, and run.json keeps it for a resume."""
    params = tiny(
        train={"minutes": 10, "kimg": 0.128, "eval_kimg": 0.064, "eval_samples": 16, "checkpoint_kimg": 0.032}
    )
    prepare.run(params)
    monkeypatch.setattr(budget, "measured_rate", lambda *a: (64 / (10 * 60 * (1 - budget.HOOKS_SHARE)), 0.0))
    monkeypatch.setattr(budget, "replanned_kimg", lambda *a: 0.256)
    train.run(params)
    assert "so 0.256 kimg fit, not 0.064: planned again" in capsys.readouterr().out
    assert [float(r["kimg"]) for r in csv.DictReader(layout.EVAL_HISTORY.open())] == [0.032, 0.128, 0.256]
    assert [float(r["kimg"]) for r in csv.DictReader(layout.HISTORY.open())][-1] == 0.256
    assert json.loads(layout.RUN_INFO.read_text())["planned_kimg"] == 0.256
