"""What a `gan train` start is (fresh, resume, extend, close, done) is decided in one place,
before anything trains, with the line the user reads; the clock (which `train.minutes` measures)
is asked for only when the decision needs the run's length."""

from __future__ import annotations

from dataclasses import fields

import pytest

from ganlab.errors import UserError
from ganlab.io import run_record
from ganlab.io.run_checkpoint import RunCheckpoint
from ganlab.training import session
from ganlab.training.clock import Clock
from tests.conftest import tiny

T = tiny().train  # 0.064 kimg in steps of 16 images: 4 steps


def checkpoint(fp: str, step: int, complete: bool) -> RunCheckpoint:
    values = {f.name: None for f in fields(RunCheckpoint) if not f.metadata.get("final")}
    c = RunCheckpoint(**{**values, "fingerprint": fp, "step": step, "history": [{"kimg": step * 0.016}], "evals": []})
    return c.finish({}, [], best_is_last=False) if complete else c


def decide(existing, t=T, extend=None, open_status=None, fp="fp"):
    asked = []

    def clock():
        asked.append(True)
        return Clock.of(t, 40)

    start = session.decide(existing, fp, "lineage", t, extend, clock, lambda run_id: open_status)
    return start, bool(asked)


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def recorded(here):
    run_record.write("run-1", "0", "fp", 2, 12.5, "lineage")


def test_a_start_without_a_checkpoint_is_fresh_and_needs_no_clock(here):
    assert decide(None) == (session.Start(session.FRESH), False)


def test_an_interrupted_run_resumes_its_mlflow_run_and_clock_without_asking_the_length(recorded):
    start, asked = decide(checkpoint("fp", 2, complete=False))
    assert (start.kind, start.mlflow_run, start.seconds, start.why, start.stale_run) == (
        session.RESUME,
        "run-1",
        12.5,
        None,
        None,
    )
    assert not asked


def test_other_params_start_fresh_and_the_run_a_kill_may_have_left_running_is_named(recorded):
    start, _ = decide(checkpoint("other", 2, complete=False))
    assert start.kind == session.FRESH and start.why.endswith("was made with other params or data")
    assert start.stale_run == "run-1"


def test_a_finished_run_whose_mlflow_run_was_left_open_is_closed_and_nothing_trains(recorded):
    start, asked = decide(checkpoint("fp", 4, complete=True), open_status="RUNNING")
    assert start.kind == session.CLOSE and not start.trains and start.result == {"kimg": 0.064}
    assert "its MLflow run run-1 was left RUNNING" in start.why and not asked


def test_a_finished_run_of_the_same_params_retrains_and_a_longer_one_extends_it(recorded):
    assert decide(checkpoint("fp", 4, complete=True))[0].why.endswith("is a finished run")
    longer = tiny(train={"kimg": 0.128}).train
    start, asked = decide(checkpoint("fp", 4, complete=True), t=longer, fp="fp-longer")
    assert start.kind == session.EXTEND and start.mlflow_run == "run-1" and asked
    assert "from 0.064 kimg to 0.128 kimg" in start.why
    fresh, _ = decide(checkpoint("fp", 4, complete=True), t=longer, fp="fp-longer", extend=False)
    assert fresh.kind == session.FRESH and "would continue it instead" in fresh.why


def test_asked_to_extend_to_the_length_it_has_is_done_and_to_a_shorter_one_refused(recorded):
    start, _ = decide(checkpoint("fp", 4, complete=True), extend=True)
    assert start.kind == session.DONE and start.why.startswith("train: nothing to train")
    with pytest.raises(UserError, match="training cannot be undone"):
        decide(checkpoint("fp", 4, complete=True), t=tiny(train={"kimg": 0.032}).train, extend=True, fp="short")
