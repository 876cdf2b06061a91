"""The background writer: in order, errors never lost, bounded, and finished on failure; and a
whole training run with it (CUDA runs use it; on a CPU jobs run in line)."""

import threading
import time

import pytest
import torch
from mlflow.tracking import MlflowClient

from ganlab import hooks, layout
from ganlab.io import checkpoint
from ganlab.io.background import Writer, host_copy
from ganlab.io.tracking import tracking_uri
from ganlab.training import events
from stages import prepare, train
from tests.conftest import interrupt_at_tick, run_id, tiny


def test_jobs_run_in_order_on_another_thread_and_close_finishes_them():
    done, threads = [], set()

    def job(i):
        time.sleep(0.01)
        threads.add(threading.get_ident())
        done.append(i)

    w = Writer(background=True)
    for i in range(6):
        w.submit(job, i)
    assert len(w.pending) <= 2  # at most `depth` wait: each may hold a checkpoint's host copy
    w.close()
    assert done == list(range(6)) and threading.get_ident() not in threads


def test_an_error_in_a_job_is_raised_in_the_caller():
    def fail():
        raise OSError("disk full")

    w = Writer(background=True)
    w.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        w.drain()
    w.submit(fail)
    time.sleep(0.05)
    with pytest.raises(OSError, match="disk full"):
        w.submit(lambda: None)
    w.close()


def test_in_line_writer_runs_jobs_at_submit():
    done = []
    w = Writer(background=False)
    w.submit(done.append, 1)
    assert done == [1]
    with pytest.raises(ZeroDivisionError):
        w.submit(lambda: 1 / 0)


def test_host_copy_is_independent_of_the_live_tensors():
    live = {
        "w": torch.ones(3),
        "opt": {"state": {0: {"m": torch.zeros(2)}}, "groups": [{"lr": 1.0}]},
        "history": [{"a": 1.0}],
    }
    copy = host_copy(live)
    live["w"].add_(1)
    live["opt"]["state"][0]["m"].add_(5)
    live["history"].append({"a": 2.0})
    assert torch.equal(copy["w"], torch.ones(3)) and torch.equal(copy["opt"]["state"][0]["m"], torch.zeros(2))
    assert copy["history"] == [{"a": 1.0}] and copy["opt"]["groups"] == [{"lr": 1.0}]


def test_training_with_the_background_writer_records_everything_and_resumes_exactly(workdir, monkeypatch):
    monkeypatch.setattr(events, "Writer", lambda background: Writer(background=True))
    params = tiny(train={"kimg": 0.064, "checkpoint_kimg": 0.032})
    prepare.run(params)
    train.run(params)
    straight = checkpoint.load(layout.CHECKPOINT)
    grids = sorted(p.name for p in layout.GRIDS.iterdir())
    assert len(grids) == 5
    client = MlflowClient(tracking_uri())
    assert [m.step for m in client.get_metric_history(run_id(), "train/loss_d")] == [16, 32, 48, 64]

    layout.CHECKPOINT.unlink()
    real_append = interrupt_at_tick(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train.run(params)
    assert checkpoint.load(layout.CHECKPOINT)["step"] == 2  # the queued write finished before the run ended
    monkeypatch.setattr(hooks, "append_history", real_append)
    train.run(params)
    resumed = checkpoint.load(layout.CHECKPOINT)
    for name, tensor in straight["generator"].items():
        assert torch.equal(tensor, resumed["generator"][name]), name
    assert sorted(p.name for p in layout.GRIDS.iterdir()) == grids
    assert not [t for t in threading.enumerate() if t.name.startswith("ganlab-writer")]  # no thread outlives its run
