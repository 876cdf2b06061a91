"""A stopped run can be extended, derived files are checked, and a fault during training ends in
one line with the last checkpoint kept."""

import csv
import math
import os
import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.optim.optimizer import register_optimizer_step_post_hook

from ganlab import hooks, layout
from ganlab.errors import UserError
from ganlab.io import checkpoint
from ganlab.io.tracking import tracking_uri
from stages import prepare, train
from tests.conftest import run_id, tiny


def _optimizer_steps(params) -> tuple[dict, int]:
    """Train ``params`` as `gan train --extend`; (its last history row, how many optimizer steps it took)."""
    steps = []
    handle = register_optimizer_step_post_hook(lambda *a: steps.append(1))
    try:
        return train.run(params, extend=True), len(steps)
    finally:
        handle.remove()


def _scripted_evaluations(monkeypatch, values):
    """In-training evaluations that score ``values`` in turn on the best metric, without the feature network."""
    scores = iter(values)
    monkeypatch.setattr(hooks, "FeatureNet", lambda: torch.nn.Identity())
    monkeypatch.setattr(hooks, "reference_features", lambda *a: None)
    monkeypatch.setattr(hooks, "Reference", lambda features: None)
    monkeypatch.setattr(
        hooks, "evaluate_generator", lambda *a, **k: SimpleNamespace(metrics={"fd": next(scores)}, notes={})
    )


# --- a stopped run can be extended -----------------------------------------------------


def test_extending_a_patience_stopped_run_continues_from_its_checkpoint(workdir, monkeypatch, capsys):
    """It used to say `starting fresh: models/checkpoint.pt is a finished run` and retrain from 0."""
    _scripted_evaluations(monkeypatch, [5.0, 6.0, 4.0, 3.0, 2.0, 1.0])
    stopped = tiny(
        train={"eval_kimg": 0.016, "best_metric": "fd", "stop": {"patience": 1}}
    )  # 4 steps, an evaluation at each
    prepare.run(stopped)
    assert train.run(stopped)["kimg"] == 0.032  # fd 5, then 6: no better in 1 evaluation
    first = run_id()
    before = checkpoint.load(layout.CHECKPOINT)
    assert before["complete"] and before["step"] == 2 and before["best_kimg"] == 0.016
    capsys.readouterr()
    final, steps = _optimizer_steps(tiny(train={"eval_kimg": 0.016, "best_metric": "fd", "stop": {"patience": 3}}))
    out = capsys.readouterr().out
    assert "starting fresh" not in out and "train: continuing models/checkpoint.pt from 0.032 kimg" in out, out
    assert final["kimg"] == 0.064 and steps == 2 * 2  # steps 3 and 4 only: one D and one G update each
    after = checkpoint.load(layout.CHECKPOINT)
    assert after["complete"] and after["step"] == 4 and after["history"][:2] == before["history"]
    assert after["best_kimg"] == 0.064 and [e["kimg"] for e in after["evals"]] == [0.016, 0.032, 0.048, 0.064]
    client = MlflowClient(tracking_uri())
    linked = client.get_run(run_id())
    assert (
        linked.info.run_id != first and linked.data.tags["continues_run"] == first and linked.info.status == "FINISHED"
    )
    assert client.get_run(first).info.status == "FINISHED"


def test_with_train_extend_false_a_longer_run_starts_fresh_and_says_how_to_continue(workdir, capsys):
    """train.extend: false keeps the outputs a function of the params alone (what a fresh clone's
    `dvc repro` writes, byte for byte); the line says how to continue instead."""
    short = tiny(train={"kimg": 0.032, "eval_kimg": 0})
    prepare.run(short)
    train.run(short)
    capsys.readouterr()
    final = train.run(tiny(train={"eval_kimg": 0, "extend": False}))
    out = capsys.readouterr().out
    assert (
        "train: starting fresh: models/checkpoint.pt is a finished run of 0.032 kimg; train.extend (or `gan train "
        "--extend`) would continue it instead"
    ) in out, out
    assert final["kimg"] == 0.064 and checkpoint.load(layout.CHECKPOINT)["step"] == 4 and "continuing" not in out


def test_a_longer_run_continues_its_finished_checkpoint_by_default_as_dvc_repro_runs_it(workdir, capsys):
    """`dvc repro` runs plain `gan train`: with the shipped train.extend a longer length continues
    (it used to retrain from zero, which only `gan train --extend` avoided)."""
    short = tiny(train={"kimg": 0.032, "eval_kimg": 0})
    prepare.run(short)
    train.run(short)
    capsys.readouterr()
    steps = []
    handle = register_optimizer_step_post_hook(lambda *a: steps.append(1))
    try:
        final = train.run(tiny(train={"eval_kimg": 0}))
    finally:
        handle.remove()
    assert "train: continuing models/checkpoint.pt from 0.032 kimg to 0.064 kimg" in capsys.readouterr().out
    assert final["kimg"] == 0.064 and len(steps) == 2 * 2


def test_extend_twice_in_a_row_says_there_is_nothing_to_train_and_keeps_the_run(workdir, capsys):
    """The second `gan train --extend` with the same params used to say "starting fresh" and retrain
    from zero, replacing the extended checkpoint and its best generator."""
    short = tiny(train={"kimg": 0.032, "eval_kimg": 0})
    prepare.run(short)
    train.run(short)
    longer = tiny(train={"eval_kimg": 0})
    _optimizer_steps(longer)
    kept = layout.CHECKPOINT.read_bytes()
    capsys.readouterr()
    final, steps = _optimizer_steps(longer)
    assert (
        "train: nothing to train: models/checkpoint.pt is a finished run of 0.064 kimg, the length asked; it is kept"
        in capsys.readouterr().out
    )
    assert steps == 0 and final["kimg"] == 0.064 and layout.CHECKPOINT.read_bytes() == kept


def test_extend_to_a_shorter_length_is_refused_in_one_line_and_keeps_the_run(workdir):
    params = tiny(train={"eval_kimg": 0})
    prepare.run(params)
    train.run(params)
    kept = layout.CHECKPOINT.read_bytes()
    with pytest.raises(
        UserError,
        match=r"^train: models/checkpoint.pt is a finished run of 0.064 kimg, longer than the 0.032 kimg asked",
    ):
        train.run(tiny(train={"kimg": 0.032, "eval_kimg": 0}), extend=True)
    assert layout.CHECKPOINT.read_bytes() == kept


@pytest.mark.slow
def test_a_time_stopped_run_given_more_kimg_continues_once_its_budget_is_raised(workdir, capsys):
    """Only the length grew while the time budget is spent: nothing to train, said in one line
    (it used to retrain from 0); once the budget is raised, the run continues from its checkpoint."""
    stopped = tiny(train={"eval_kimg": 0, "stop": {"minutes": 1e-9, "patience": 0}})  # out of time at the first tick
    prepare.run(stopped)
    assert train.run(stopped)["kimg"] == 0.016
    weights = layout.CHECKPOINT.read_bytes()
    capsys.readouterr()
    final, steps = _optimizer_steps(
        tiny(train={"kimg": 0.096, "eval_kimg": 0, "stop": {"minutes": 1e-9, "patience": 0}})
    )
    out = capsys.readouterr().out
    assert (
        "train: models/checkpoint.pt stopped at 0.016 kimg and train.stop still ends it there" in out
        and "nothing to train: raise train.stop to extend it to 0.096 kimg" in out
    ), out
    assert steps == 0 and final["kimg"] == 0.016 and layout.CHECKPOINT.read_bytes() == weights
    final, steps = _optimizer_steps(tiny(train={"kimg": 0.096, "eval_kimg": 0, "stop": {"patience": 0}}))
    assert "train: continuing models/checkpoint.pt from 0.016 kimg to 0.096 kimg" in capsys.readouterr().out
    assert final["kimg"] == 0.096 and steps == 2 * 5
    assert checkpoint.load(layout.CHECKPOINT)["step"] == 6


# --- derived files are checked, not trusted --------------------------------------------


def test_a_wrong_shaped_features_file_is_one_line_naming_gan_features(workdir):
    """It used to train with exit 0 and an eval_history.csv of NaN."""
    from ganlab.data.dataset import dataset_sha
    from ganlab.metrics.features import INPUT_SIZE, NAME

    params = tiny(train={"kimg": 0.032})
    prepare.run(params)
    checkpoint.save(
        {
            "features": torch.zeros(3, 7),
            "network": NAME,
            "input_size": INPUT_SIZE,
            "dataset_sha256": dataset_sha(layout.MANIFEST),
        },
        layout.FEATURES,
    )
    with pytest.raises(
        UserError, match=r"^models/features.pt: features of shape \(3, 7\) for 40 training images .*`gan features`"
    ):
        train.run(params)


def test_an_empty_dataset_is_one_line_naming_gan_prepare(workdir):
    """It used to end in ZeroDivisionError."""
    params = tiny()
    prepare.run(params)
    checkpoint.save({"images": torch.zeros(0, 3, 32, 32, dtype=torch.float16), "files": []}, layout.DATASET)
    with pytest.raises(UserError, match=r"^data/prepared/dataset.pt: no images .*`gan prepare`"):
        train.run(params)


@pytest.mark.slow
def test_a_checkpoint_without_its_model_or_with_other_widths_is_one_line_naming_gan_train(workdir):
    """They used to end in KeyError and in a size-mismatch traceback."""
    from ganlab.metrics.sampler import load_generator

    params = tiny(train={"kimg": 0.016, "eval_kimg": 0})
    prepare.run(params)
    train.run(params)
    state = checkpoint.load(layout.CHECKPOINT)
    without = {k: v for k, v in state.items() if k != "model"}
    checkpoint.save(without, Path("models/without.pt"))
    with pytest.raises(UserError, match=r"^models/without.pt: .*'model'.*`gan train`") as e:
        load_generator(Path("models/without.pt"), torch.device("cpu"))
    assert "\n" not in str(e.value)
    checkpoint.save({**state, "model": {**state["model"], "g_width": 16}}, Path("models/wider.pt"))
    with pytest.raises(UserError, match=r"^models/wider.pt: its weights do not fit .*`gan train`") as e:
        load_generator(Path("models/wider.pt"), torch.device("cpu"))
    assert "\n" not in str(e.value)
    state["complete"], state["opt_g"] = False, None  # a resumable checkpoint that lost part of itself
    del state["discriminator"]
    checkpoint.save(state, layout.CHECKPOINT)
    with pytest.raises(UserError, match=r"^models/checkpoint.pt: .*'discriminator'.*`gan train`"):
        train.run(params)


@pytest.mark.slow
def test_a_nan_metric_is_said_and_never_chosen_as_best(workdir, monkeypatch, capsys):
    _scripted_evaluations(monkeypatch, [math.nan, math.nan, math.nan, math.nan])
    params = tiny(train={"eval_kimg": 0.016, "best_metric": "fd"})
    prepare.run(params)
    train.run(params)
    out = capsys.readouterr().out
    assert "note: fd is nan at 0.016 kimg" in out and out.count("is nan at") == 1, (
        out
    )  # said once, not at every evaluation
    assert checkpoint.load(layout.CHECKPOINT)["generator_best"] is None
    assert [r["fd"] for r in csv.DictReader(layout.EVAL_HISTORY.open())] == [""] * 4  # undefined: empty, not "nan"


# --- faults during training end in one line, with the state kept -----------------------


def _fails_in_one_line(params, match: str) -> str:
    with pytest.raises(UserError, match=match) as e:
        train.run(params)
    assert "\n" not in str(e.value)
    state = checkpoint.load(layout.CHECKPOINT)
    assert state["step"] >= 1 and not state["complete"]  # the last checkpoint, whole
    return str(e.value)


def test_the_mlflow_run_deleted_while_training_is_one_line_and_keeps_the_checkpoint(workdir, monkeypatch):
    real, calls = hooks.append_history, {"n": 0}

    def delete_after_two_ticks(row, timing):
        real(row, timing)
        calls["n"] += 1
        if calls["n"] == 2:
            MlflowClient(tracking_uri()).delete_run(run_id())

    monkeypatch.setattr(hooks, "append_history", delete_after_two_ticks)
    params = tiny(train={"eval_kimg": 0})
    prepare.run(params)
    _fails_in_one_line(
        params,
        r"^MLflow store sqlite:///.*: The run \w+ must be in the 'active' state.*"
        r"\(the MLflow run was deleted while training: restore it with `mlflow runs restore --run-id \w+`",
    )


@pytest.mark.slow
def test_a_full_disk_during_log_image_is_one_line_and_fails_the_run(workdir, monkeypatch):
    real, calls = MlflowClient.log_image, {"n": 0}

    def log_image(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # after the untrained grid and a checkpoint
            raise OSError(28, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_image", log_image)
    params = tiny(train={"eval_kimg": 0})
    prepare.run(params)
    _fails_in_one_line(params, r"^MLflow store sqlite:///.*No space left on device.*free space")
    assert MlflowClient(tracking_uri()).get_run(run_id()).info.status == "FAILED"


def test_a_disk_io_error_from_log_params_is_one_line(workdir, monkeypatch):
    """`ulimit -f` made SQLite say `disk I/O error` from log_params, as a traceback."""
    real = MlflowClient.log_batch

    def log_batch(self, run_id, metrics=(), params=(), tags=(), **kwargs):
        if params:  # the training's params, logged once at its start
            raise sqlite3.OperationalError("disk I/O error")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kwargs)

    monkeypatch.setattr(MlflowClient, "log_batch", log_batch)
    params = tiny(train={"eval_kimg": 0})
    prepare.run(params)
    with pytest.raises(UserError, match=r"^MLflow store sqlite:///.*: disk I/O error .*free space") as e:
        train.run(params)
    assert "\n" not in str(e.value)
    assert MlflowClient(tracking_uri()).get_run(run_id()).info.status == "FAILED"


@pytest.mark.slow
def test_a_read_only_report_during_training_is_one_line_naming_it_and_fails_the_run(workdir, monkeypatch):
    calls, real_open = {"n": 0}, hooks.open_no_link

    def opening(
        path, flags, *args, **kwargs
    ):  # the history row's append, as a read-only file refuses it at the third tick
        if str(path).endswith("history.csv") and flags & os.O_APPEND:
            calls["n"] += 1
            if calls["n"] == 3:
                raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(hooks, "open_no_link", opening)
    params = tiny(train={"eval_kimg": 0})
    prepare.run(params)
    _fails_in_one_line(
        params,
        r"^reports/train/history.csv: cannot write \(Permission denied\); "
        r"the last checkpoint is kept in models/checkpoint.pt$",
    )
    assert MlflowClient(tracking_uri()).get_run(run_id()).info.status == "FAILED"


@pytest.mark.slow
def test_dvc_repro_continues_a_time_stopped_run_once_its_budget_is_raised(tmp_path, empty_store):
    """The params.yaml comment promises it: stopped by train.stop.minutes, raise the budget, `dvc repro`
    (plain `gan train`) continues from the checkpoint instead of training from zero."""
    from tests.project import new_project, run, set_param

    project = new_project(tmp_path, empty_store, train={"stop": {"minutes": 1e-9, "patience": 0}})
    run([sys.executable, "-m", "dvc", "repro", "train"], project)
    assert [r["kimg"] for r in csv.DictReader((project / "reports/train/history.csv").open())] == ["0.016"]
    set_param(project, "train", "stop", {"minutes": None, "patience": 0})
    out = run([sys.executable, "-m", "dvc", "repro", "train"], project).stdout
    assert "train: continuing models/checkpoint.pt from 0.016 kimg to 0.064 kimg" in out, out
    assert [r["kimg"] for r in csv.DictReader((project / "reports/train/history.csv").open())][-1] == "0.064"
