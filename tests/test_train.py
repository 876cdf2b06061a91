"""Training follows the slides, records what happened, and resumes exactly."""

import csv
import re

import pytest
import torch
from mlflow.tracking import MlflowClient

from ganlab import layout
from ganlab.io import checkpoint
from ganlab.training import hooks
from stages import prepare, sample, train
from ganlab.device import resolve_device
from ganlab.errors import UserError
from ganlab.io.tracking import tracking_uri
from tests.conftest import tiny


def prepared(**sections):
    params = tiny(**sections)
    prepare.run(params)
    return params


def test_training_records_metrics_grids_and_checkpoint(workdir):
    params = prepared(train={"epochs": 3})
    final = train.run(params)

    rows = list(csv.DictReader(layout.HISTORY.open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    for r in rows:
        assert 0 < float(r["real_score"]) < 1 and 0 < float(r["fake_score"]) < 1
        assert float(r["loss_d"]) > 0 and float(r["loss_g"]) > 0 and float(r["images_per_s"]) > 0
    assert final["epoch"] == 3
    assert sorted(p.name for p in layout.GRIDS.iterdir()) == [f"epoch_000{i}.png" for i in range(4)]

    state = checkpoint.load(layout.CHECKPOINT)
    assert state["complete"] and state["epoch"] == 3
    assert {"generator", "generator_eval", "discriminator", "opt_g", "opt_d", "rng"} <= set(state)

    client = MlflowClient(tracking_uri())
    run = client.get_run(state["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "3" and run.data.tags["dataset_sha256"]
    for key in ("loss_d", "loss_g", "real_score", "fake_score", "images_per_s"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3]
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(re.search(r"\+step\+(\d+)\+", path).group(1)) for path in images) == [0, 1, 2, 3]  # the untrained grid too


def test_k_discriminator_steps_per_generator_step(workdir):
    params = prepared(train={"epochs": 3, "d_steps": 2, "batch_size": 20})  # 40 images: 2 D steps per epoch
    train.run(params)
    state = checkpoint.load(layout.CHECKPOINT)
    step = lambda opt: int(next(iter(opt["state"].values()))["step"])
    assert step(state["opt_d"]) == 6 and step(state["opt_g"]) == 3


def test_data_set_smaller_than_the_batch(workdir):
    params = prepared(prepare={"demo": {"count": 5}}, train={"batch_size": 64, "epochs": 2})
    assert train.run(params)["epoch"] == 2


def test_resume_after_a_crash_is_bit_identical(workdir, monkeypatch):
    params = prepared(train={"epochs": 4, "checkpoint_every": 2})
    train.run(params)
    straight = checkpoint.load(layout.CHECKPOINT)

    calls = {"n": 0}
    real_write = hooks.write_history

    def crash_in_epoch_3(history):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        real_write(history)

    layout.CHECKPOINT.unlink()
    monkeypatch.setattr(hooks, "write_history", crash_in_epoch_3)
    with pytest.raises(KeyboardInterrupt):
        train.run(params)
    interrupted = checkpoint.load(layout.CHECKPOINT)
    assert interrupted["epoch"] == 2
    monkeypatch.setattr(hooks, "write_history", real_write)
    train.run(params)
    resumed = checkpoint.load(layout.CHECKPOINT)

    assert resumed["mlflow_run_id"] == interrupted["mlflow_run_id"]
    for key in ("generator", "discriminator", "generator_eval"):
        for name, tensor in straight[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name} differs after resume"
    assert [r["loss_d"] for r in resumed["history"]] == [r["loss_d"] for r in straight["history"]]
    steps = [m.step for m in MlflowClient(tracking_uri()).get_metric_history(resumed["mlflow_run_id"], "loss_d")]
    assert steps == [1, 2, 3, 4]  # one run, continued; no duplicated epochs


def test_changed_params_do_not_resume_a_stale_checkpoint(workdir, capsys):
    train.run(prepared(train={"epochs": 2, "checkpoint_every": 1}))
    state = checkpoint.load(layout.CHECKPOINT)
    state["complete"] = False
    checkpoint.save(state, layout.CHECKPOINT)
    train.run(tiny(train={"epochs": 2, "lr": 0.002}))
    assert "starting fresh" in capsys.readouterr().out


def test_sample_grid_matches_the_last_training_grid(workdir):
    from PIL import Image
    import numpy as np

    params = prepared(train={"epochs": 3}, sample={"seed": 42})
    train.run(params)
    sample.run(params)
    trained = np.asarray(Image.open(layout.GRIDS / "epoch_0003.png"), dtype=float)
    sampled = np.asarray(Image.open(layout.SAMPLES / "grid.png"), dtype=float)
    assert trained.shape == sampled.shape == (8 * 32 + 18, 8 * 32 + 18, 3)
    assert np.abs(trained - sampled).mean() < 6  # eval-mode BN after recalibration ~ batch statistics
    assert len(list(layout.SAMPLES.glob("sample_*.png"))) == 3


def test_cuda_requested_without_cuda_is_a_clear_error(workdir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="device: 'cuda' requested"):
        resolve_device("cuda")


def test_streamed_data_trains_exactly_like_data_on_the_device(workdir):
    params = prepared(train={"epochs": 2, "data_on_device": "always"})
    train.run(params)
    on_device = checkpoint.load(layout.CHECKPOINT)
    train.run(tiny(train={"epochs": 2, "data_on_device": "never"}))
    streamed = checkpoint.load(layout.CHECKPOINT)
    for name, tensor in on_device["generator"].items():
        assert torch.equal(tensor, streamed["generator"][name]), name
    assert MlflowClient(tracking_uri()).get_run(streamed["mlflow_run_id"]).data.tags["data"] == "StreamedData"
