"""Training follows the slides, records what happened, and resumes exactly."""

import csv
import dataclasses
import io
import json
import re

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch.optim.optimizer import register_optimizer_step_post_hook

from ganlab import hooks, layout
from ganlab.device import resolve_device
from ganlab.errors import UserError
from ganlab.io import checkpoint
from ganlab.io.tracking import tracking_uri
from stages import prepare, sample, train
from tests.conftest import committed_copy, interrupt_at_tick, run_id, straight_then_killed, tiny


def prepared(**sections):
    params = tiny(**sections)
    prepare.run(params)
    return params


def test_training_records_metrics_grids_and_checkpoint(workdir):
    params = prepared(train={"kimg": 0.048})  # 3 steps of 16, a tick each
    final = train.run(params)

    rows = list(csv.DictReader(layout.HISTORY.open()))
    assert [float(r["kimg"]) for r in rows] == [0.016, 0.032, 0.048]
    assert [float(r["epoch"]) for r in rows] == [0.4, 0.8, 1.2]  # 40 images: batches straddle epochs
    for r in rows:
        assert 0 < float(r["real_score"]) < 1 and 0 < float(r["fake_score"]) < 1
        assert float(r["loss_d"]) > 0 and float(r["loss_g"]) > 0
    timing = list(csv.DictReader(layout.TIMING.open()))
    assert [float(r["kimg"]) for r in timing] == [0.016, 0.032, 0.048] and all(
        float(r["images_per_s"]) > 0 for r in timing
    )
    assert 0 < float(timing[0]["seconds"]) < float(timing[1]["seconds"]) < float(timing[2]["seconds"])
    record = json.loads(layout.RUN_INFO.read_text())
    assert record["step"] == 3 and record["seconds"] >= float(timing[2]["seconds"]) - 1e-3
    assert final["kimg"] == 0.048
    assert sorted(p.name for p in layout.GRIDS.iterdir()) == [f"images_{i:09d}.png" for i in (0, 16, 32, 48)]

    state = checkpoint.load(layout.CHECKPOINT)
    assert state["complete"] and state["step"] == 3 and state["kimg"] == 0.048
    assert {"generator", "generator_eval", "discriminator", "opt_g", "opt_d", "rng"} <= set(state)

    client = MlflowClient(tracking_uri())
    run = client.get_run(run_id())
    assert run.info.status == "FINISHED"
    assert (
        run.data.params["train.kimg"] == "0.048" and run.data.tags["dataset_sha256"] and run.data.tags["batch"] == "16"
    )
    for key in (
        "train/loss_d",
        "train/loss_g",
        "train/real_score",
        "train/fake_score",
        "speed/images_per_s",
        "train/epoch",
        "speed/seconds",
    ):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [
            16,
            32,
            48,
        ]  # MLflow's step: images seen
    images = [a.path for a in client.list_artifacts(run.info.run_id, "images") if a.path.endswith(".png")]
    assert sorted(int(re.search(r"\+step\+(\d+)\+", path).group(1)) for path in images) == [
        0,
        16,
        32,
        48,
    ]  # the untrained grid too


@pytest.mark.slow
def test_runs_of_the_same_kimg_on_20_and_200_images_write_the_same_grids_and_checkpoints(workdir):
    """Batch 20 (all of the 20 images) against batch 32: different steps, the same points of training."""
    seen = {}
    for count in (20, 200):
        params = prepared(
            prepare={"demo": {"count": count}},
            train={"kimg": 0.64, "batch_size": 32, "tick_kimg": 0.16, "checkpoint_kimg": 0.16, "grids": 8},
        )
        train.run(params)
        state = checkpoint.load(layout.CHECKPOINT)
        grids = sorted(int(layout.GRID_FILE.search(p.name).group(1)) for p in layout.GRIDS.iterdir())
        rows = list(csv.DictReader(layout.HISTORY.open()))
        seen[count] = (
            state["step"],
            len(grids),
            [round(k, 1) for k in state["checkpoints"]],
            [round(float(r["kimg"]), 1) for r in rows],
        )
        assert grids[0] == 0 and grids[-1] == state["step"] * min(32, count)
    assert seen[20][0] == 32 and seen[200][0] == 20  # 640 images in steps of 20 and of 32
    assert seen[20][1:] == seen[200][1:] == (9, [0.2, 0.3, 0.5], [0.2, 0.3, 0.5, 0.6])


def test_k_discriminator_steps_per_generator_step(workdir):
    params = prepared(train={"kimg": 0.12, "d_steps": 2, "batch_size": 20, "tick_kimg": 0.04})  # 6 steps of 20
    updates = {}

    def count(optimizer, args, kwargs):
        updates[id(optimizer)] = updates.get(id(optimizer), 0) + 1

    handle = register_optimizer_step_post_hook(count)
    try:
        train.run(params)
    finally:
        handle.remove()
    assert sorted(updates.values()) == [3, 6]  # G, D


def test_the_final_checkpoint_keeps_weights_not_optimizer_moments(workdir):
    """A finished run is never resumed: its file holds G, D, the EMA and the eval generator (sharing
    the EMA's parameters), about a third of a resumable checkpoint's size."""
    params = prepared(train={"kimg": 0.064, "checkpoint_kimg": 0.048})
    with pytest.MonkeyPatch.context() as m:
        interrupt_at_tick(m, 4, after_writing=True)
        with pytest.raises(KeyboardInterrupt):
            train.run(params)
    resumable = checkpoint.load(layout.CHECKPOINT)
    resumable_bytes = layout.CHECKPOINT.stat().st_size
    assert resumable["opt_d"] is not None and resumable["step"] == 3
    train.run(params)
    final = checkpoint.load(layout.CHECKPOINT)
    assert final["complete"] and final["opt_g"] is None and final["opt_d"] is None
    ema, evaluated = final["ema"], final["generator_eval"]
    assert ema.keys() == evaluated.keys()
    for k in ema:
        same = torch.equal(ema[k], evaluated[k])
        assert same if "running" not in k and "batches" not in k else True, k

    def nbytes(tensors):
        return sum(t.numel() * t.element_size() for t in tensors)

    moments = nbytes(t for opt in ("opt_g", "opt_d") for s in resumable[opt]["state"].values() for t in s.values())
    eval_params = nbytes(v for k, v in evaluated.items() if "running" not in k and "batches" not in k)
    # without the sharing the eval generator's parameters would be stored a second time
    assert (
        resumable["generator_best"] is None and final["best_kimg"] == final["kimg"]
    )  # the evaluation at the end chose the last
    for k, v in final["generator_best"].items():
        assert torch.equal(v, evaluated[k]), k
    # without the sharing the eval generator's parameters would be stored a second time, and the best a third
    assert layout.CHECKPOINT.stat().st_size < resumable_bytes - moments + 0.5 * eval_params


def test_data_set_smaller_than_the_batch(workdir):
    params = prepared(prepare={"demo": {"count": 5}}, train={"batch_size": 64, "epochs": 2})
    assert train.run(params)["epoch"] == 2 and checkpoint.load(layout.CHECKPOINT)["step"] == 2  # 2 steps of all 5


@pytest.mark.slow
def test_resume_after_a_crash_is_bit_identical(workdir, monkeypatch):
    params = prepared(train={"kimg": 0.064, "checkpoint_kimg": 0.032})  # 4 steps, a checkpoint after step 2
    straight, real_append = straight_then_killed(params, monkeypatch, tick=3)
    interrupted = checkpoint.load(layout.CHECKPOINT)  # the one after step 2
    assert interrupted["step"] == 2 and not interrupted["complete"]
    first_run = run_id()
    monkeypatch.setattr(hooks, "append_history", real_append)
    train.run(params)
    resumed = checkpoint.load(layout.CHECKPOINT)

    assert run_id() == first_run
    for key in ("generator", "discriminator", "generator_eval"):
        for name, tensor in straight[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name} differs after resume"
    assert [r["loss_d"] for r in resumed["history"]] == [r["loss_d"] for r in straight["history"]]
    steps = [m.step for m in MlflowClient(tracking_uri()).get_metric_history(run_id(), "train/loss_d")]
    assert steps == [16, 32, 48, 64]  # one run, continued; no duplicated steps
    assert [float(r["kimg"]) for r in csv.DictReader(layout.HISTORY.open())] == [0.016, 0.032, 0.048, 0.064]


@pytest.mark.slow
def test_changed_params_do_not_resume_a_stale_checkpoint(workdir, capsys):
    train.run(prepared())
    state = checkpoint.load(layout.CHECKPOINT)
    state["complete"] = False
    checkpoint.save(state, layout.CHECKPOINT)
    train.run(tiny(train={"lr": 0.002}))
    assert "starting fresh" in capsys.readouterr().out


def test_sample_grid_matches_the_last_training_grid(workdir):
    import numpy as np
    from PIL import Image

    params = prepared(train={"kimg": 0.048}, sample={"seed": 42})
    train.run(params)
    sample.run(params)
    trained = np.asarray(Image.open(layout.grid_file(48)), dtype=float)
    captioned = np.asarray(Image.open(layout.SAMPLES / "grid.png"), dtype=float)
    size = 8 * 32 + 18
    assert trained.shape == (size, size, 3)  # a video frame: no caption
    sampled, band = captioned[:size], captioned[size:]  # the grid, and the caption under it
    assert sampled.shape == trained.shape and band.shape[1] == size and 10 < band.shape[0] < 30
    assert (band == 255).mean() > 0.7 and (band < 128).any()  # black text on white
    assert np.abs(trained - sampled).mean() < 6  # eval-mode BN after recalibration ~ batch statistics
    assert len(list(layout.SAMPLES.glob("sample_*.png"))) == 3


@pytest.mark.filterwarnings("error::tqdm.TqdmWarning")
@pytest.mark.slow  # two or six-tick trainings: the fast lane keeps to 90 s
def test_the_progress_bar_ends_exactly_at_its_total(workdir, capsys):
    """Batch 10, six ticks: 0.01 kimg added six times is 0.060000000000000005, past the total,
    which tqdm clamps with a warning and shows as an ETA of -00:00."""
    params = prepared(train={"kimg": 0.06, "batch_size": 10, "tick_kimg": 0.01, "checkpoint_kimg": 0.03})
    train.run(params)
    err = capsys.readouterr().err
    assert "0.060/0.060 kimg" in err and "<00:00" in err and "-00:00" not in err


def test_the_eta_never_promises_more_than_the_wall_time_budget_left():
    assert hooks.time_left(1000, 10.0, None) == "01:40"  # tqdm's estimate at the current speed
    assert hooks.time_left(1000, 10.0, 30.0) == "00:30"  # train.stop.minutes ends the run first
    assert hooks.time_left(1000, 10.0, 500.0) == "01:40"
    assert hooks.time_left(1000, 10.0, -3.0) == "00:00"  # over budget: it stops at the next tick
    assert hooks.time_left(1000, None, None) == "?"  # no speed yet
    assert hooks.time_left(1000, None, 90.0) == "01:30"
    bar = hooks._Bar(total=1000, budget_s=90.5, bar_format="{left}", file=io.StringIO())
    assert str(bar) == "01:30"  # the console's bar: the budget less the bar's elapsed time
    bar.close()


def test_cuda_requested_without_cuda_is_a_clear_error(workdir):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(UserError, match="device: 'cuda' requested"):
        resolve_device("cuda")


@pytest.mark.slow
def test_streamed_data_trains_exactly_like_data_on_the_device(workdir):
    params = prepared(train={"data_on_device": "always"})
    train.run(params)
    on_device = checkpoint.load(layout.CHECKPOINT)
    train.run(tiny(train={"data_on_device": "never"}))
    streamed = checkpoint.load(layout.CHECKPOINT)
    for name, tensor in on_device["generator"].items():
        assert torch.equal(tensor, streamed["generator"][name]), name
    assert MlflowClient(tracking_uri()).get_run(run_id()).data.tags["dataset_held"] == "host memory, streamed"


@pytest.mark.slow
def test_a_plateau_stops_the_run_and_keeps_the_best_generator(workdir, monkeypatch, capsys):
    """fd 5, 4, 6, 7: the best is the second evaluation; patience 2 ends the run at the fourth."""
    fds = iter([5.0, 4.0, 6.0, 7.0, 3.0, 3.0, 3.0])
    real_evaluate = hooks.evaluate_generator

    def scripted(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        return dataclasses.replace(result, metrics={**result.metrics, "fd": next(fds)})

    monkeypatch.setattr(hooks, "evaluate_generator", scripted)
    params = prepared(
        train={
            "kimg": 0.128,
            "eval_kimg": 0.016,
            "eval_samples": 16,
            "stop": {"patience": 2},
            "best_metric": "fd",
            "grids": 2,
        }
    )  # 8 steps, an evaluation each; grids at steps 0, 1 and 8
    final = train.run(params)
    assert (
        "train: stopping at 0.064 of 0.128 kimg: no better fd in 2 evaluations (the best at 0.032 kimg"
        in capsys.readouterr().out
    )
    state = checkpoint.load(layout.CHECKPOINT)
    assert state["complete"] and state["step"] == 4 and state["best_kimg"] == 0.032 and final["kimg"] == 0.064
    assert [float(r["kimg"]) for r in csv.DictReader(layout.EVAL_HISTORY.open())] == [0.016, 0.032, 0.048, 0.064]
    assert sorted(p.name for p in layout.GRIDS.iterdir()) == [
        layout.grid_file(i).name for i in (0, 16, 64)
    ]  # and a last frame where it stopped
    assert not any(
        torch.equal(state["generator_best"][k], state["generator_eval"][k])
        for k in state["generator_best"]
        if "weight" in k
    )


def test_a_wall_time_budget_ends_the_run_at_a_tick_with_a_last_evaluation_and_grid(workdir, capsys):
    params = prepared(train={"kimg": 0.128, "eval_kimg": 1.0, "eval_samples": 16, "stop": {"minutes": 1e-6}})
    train.run(params)
    said = capsys.readouterr().out  # the minutes: this machine's wall time (0.1 on a loaded one)
    assert re.search(
        r"train: stopping at 0\.016 of 0\.128 kimg: \d+\.\d minutes of training \(train\.stop\.minutes 1e-06\)", said
    ), said
    assert [float(r["kimg"]) for r in csv.DictReader(layout.HISTORY.open())] == [0.016]
    assert [float(r["kimg"]) for r in csv.DictReader(layout.EVAL_HISTORY.open())] == [
        0.016
    ]  # evaluated where it stopped
    assert layout.grid_file(16).is_file() and checkpoint.load(layout.CHECKPOINT)["complete"]


def test_evaluations_off_train_to_the_end_and_later_stages_use_the_last_generator(workdir):
    """train.eval_kimg 0 used to fail at the last step: the end's evaluation had no feature network."""
    params = prepared(train={"eval_kimg": 0})
    train.run(params)
    state = checkpoint.load(layout.CHECKPOINT)
    assert state["complete"] and state["evals"] == [] and state["generator_best"] is None
    assert list(csv.DictReader(layout.EVAL_HISTORY.open())) == []
    sample.run(params)
    assert (layout.SAMPLES / "grid.png").is_file()


def test_the_loop_runs_with_the_hooks_it_is_given(workdir):
    """training_loop takes its hooks: with only a recorder, it trains, calls it at every clock point
    in order, and writes none of the files or MLflow runs the project's hooks would."""
    from ganlab.training.events import Hook
    from ganlab.training.loop import training_loop

    class Recorder(Hook):
        def __init__(self):
            self.calls = []

        def check(self, run):
            self.calls.append(("check", run.kimg))

        def on_start(self, run):
            self.calls.append(("start", run.kimg))

        def on_step(self, run, due):
            self.calls.append(("step", due.kimg, due.tick, due.end))

        def on_end(self, run, end):
            self.calls.append(("end", run.kimg, len(run.progress.history)))

    params = prepared(train={"kimg": 0.048, "checkpoint_kimg": 1000})  # 3 steps of 16, a tick each
    recorder = Recorder()
    final = training_loop(params, lambda: [recorder])
    assert final["kimg"] == 0.048
    assert recorder.calls == [
        ("check", 0.0),
        ("start", 0.0),
        ("step", 0.016, True, False),
        ("step", 0.032, True, False),
        ("step", 0.048, True, True),
        ("end", 0.048, 3),
    ]
    assert not layout.HISTORY.exists() and not layout.CHECKPOINT.exists() and not layout.GRIDS.exists()
    client = MlflowClient(tracking_uri())
    assert not client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_the_resume_fingerprint_follows_the_roles_of_the_train_fields(tmp_path):
    """A RUNS field (schedules, writes or ends the run) resumes the same checkpoint; a LENGTH field
    keeps the lineage a finished run may be extended along; any other field starts fresh."""
    from ganlab.params import LENGTH, RUNS, StopParams, TrainParams, load_params
    from ganlab.training.state import fingerprint

    p = load_params(committed_copy("params.yaml", tmp_path))
    changes = {
        "checkpoint_kimg": 5.0,
        "log_checkpoint": True,
        "stop": StopParams(patience=0, minutes=3),
        "kimg": 7.0,
        "epochs": 3,
        "minutes": 30.0,
        "extend": False,
        "lr": 0.5,
        "tick_kimg": 1.0,
        "eval_kimg": 3.0,
    }
    assert TrainParams.fields_of(RUNS) | TrainParams.fields_of(LENGTH) <= changes.keys()
    for key, value in changes.items():
        q = p.model_copy(update={"train": p.train.model_copy(update={key: value})})
        same_fp = fingerprint(q, "d", 1) == fingerprint(p, "d", 1)
        same_lineage = fingerprint(q, "d", 1, length=False) == fingerprint(p, "d", 1, length=False)
        role = (
            "runs"
            if key in TrainParams.fields_of(RUNS)
            else "length"
            if key in TrainParams.fields_of(LENGTH)
            else "shapes"
        )
        assert (same_fp, same_lineage) == {"runs": (True, True), "length": (False, True), "shapes": (False, False)}[
            role
        ], key


@pytest.mark.slow  # two or six-tick trainings: the fast lane keeps to 90 s
def test_a_run_a_kill_left_running_is_marked_killed_when_the_next_training_starts(workdir, capsys):
    """A SIGKILL leaves its MLflow run RUNNING for ever; the next `gan train` in the folder (under
    the training lock, so nothing else writes to it) marks it KILLED, unless it resumes that run."""
    params = prepared(train={"kimg": 0.032})
    train.run(params)
    client = MlflowClient(tracking_uri())
    first = run_id()
    client.update_run(first, status="RUNNING")  # as a kill after the run was opened leaves it
    train.run(tiny(train={"kimg": 0.032, "lr": 0.0005}))  # other params: a new run, not a resume
    assert client.get_run(first).info.status == "KILLED" and run_id() != first
    assert f"MLflow run {first} was left RUNNING" in capsys.readouterr().out
    assert client.get_run(run_id()).info.status == "FINISHED"


def test_the_training_run_is_named_and_its_metrics_grouped_for_the_mlflow_ui(workdir):
    """Named from what it changed and how long it ran; metrics in sections (train/, speed/, eval/, eval_detail/), the
    evaluation's constants as params; augment_p (constant without ADA) not a chart; the experiment
    marked as model training."""
    train.run(prepared(train={"kimg": 0.048, "eval_kimg": 0.032, "eval_samples": 16}))
    client = MlflowClient(tracking_uri())
    run = client.get_run(run_id())
    assert re.fullmatch(
        r"demo-32px demo\.count=40 latent_size=16 g_width=8 d_width=8 \+\d+ more 0\.048kimg", run.info.run_name
    )
    metrics = set(run.data.metrics)
    assert {"train/loss_d", "speed/images_per_s", "eval/fd_ratio", "eval/swd", "speed/eval_seconds"} <= metrics
    assert all(k.split("/")[0] in {"train", "speed", "eval", "eval_detail"} for k in metrics), metrics
    assert "train/augment_p" not in metrics and "eval_detail/fd_samples" not in metrics
    assert run.data.params["eval.fd_samples"] == "20"  # at least half the 40 images a side (the one-floor rule)
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
