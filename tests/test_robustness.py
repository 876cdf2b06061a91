"""Nothing lost, nothing unsafe: exact resume after SIGKILL, NaN stops, safe loading, atomic writes."""

import dataclasses
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from torch.optim.optimizer import register_optimizer_step_post_hook

from ganlab import hooks, layout
from ganlab.errors import UserError
from ganlab.io import checkpoint
from ganlab.io.atomic import atomic_dir, atomic_path
from ganlab.io.tracking import tracking_uri
from ganlab.training import loss
from stages import prepare, train
from tests.conftest import TINY, run_id, straight_then_killed, tiny

GAN = str(Path(sys.executable).parent / "gan")


def test_nan_loss_stops_with_its_step_and_keeps_the_last_good_checkpoint(workdir, monkeypatch):
    params = tiny(train={"kimg": 0.08})  # 5 steps of 16, each a tick and (but the last) a checkpoint
    prepare.run(params)
    calls = {"n": 0}
    bce = loss.LOSSES["bce"]

    def poisoned(real_logits, fake_logits):  # one D loss a step; 40 images: step 3 ends at image 48, in epoch 2
        calls["n"] += 1
        value = bce.d(real_logits, fake_logits)
        return value * float("nan") if calls["n"] == 3 else value

    monkeypatch.setitem(loss.LOSSES, "bce", dataclasses.replace(bce, d=poisoned))
    with pytest.raises(FloatingPointError, match=r"loss_d became nan at step 3 \(0.048 kimg, epoch 1.2\)"):
        train.run(params)
    state = checkpoint.load(layout.CHECKPOINT)
    assert state["step"] == 2 and all(torch.isfinite(t).all() for t in state["generator"].values())
    assert MlflowClient(tracking_uri()).get_run(run_id()).info.status == "FAILED"


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_malicious_checkpoint_is_refused_and_runs_nothing(workdir):
    torch.save({"generator": Exploit()}, "evil.pt")
    with pytest.raises(UserError, match="evil.pt: refused to load"):
        checkpoint.load(Path("evil.pt"))
    assert not Path("PWNED").exists()


def test_atomic_write_keeps_the_old_file_when_the_writer_dies(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old and whole")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half of the ne")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old and whole"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]
    with atomic_path(target) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new" and oct(target.stat().st_mode & 0o777) != "0o600"


def _project(root: Path, store: Path, steps: int) -> Path:
    root.mkdir()
    shutil.copy(store, root / "mlflow.db")
    params = {k: dict(v) for k, v in TINY.items()}
    params["prepare"]["demo"] = {"count": 64, "seed": 0}
    params["train"].update(kimg=steps * 16 / 1000)  # TINY: a tick and a checkpoint every step of 16
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return root


def _gan_train(cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.Popen(
        [GAN, "train"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_resume_is_bit_identical(tmp_path, empty_store):
    steps = 120
    straight = _project(tmp_path / "straight", empty_store, steps)
    killed = _project(tmp_path / "killed", empty_store, steps)
    assert subprocess.run([GAN, "prepare"], cwd=straight, capture_output=True).returncode == 0
    shutil.copytree(straight / "data", killed / "data")
    assert _gan_train(straight).wait(timeout=300) == 0

    proc = _gan_train(killed)
    ckpt = killed / layout.CHECKPOINT
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 0.5))  # anywhere: mid-step, mid-grid, mid-checkpoint write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted = checkpoint.load(ckpt)
    assert not interrupted["complete"], "the run finished before the kill; make it longer"
    first_run = run_id(killed)

    resume = _gan_train(killed)
    output = resume.communicate(timeout=300)[0]
    assert resume.returncode == 0, output
    assert f"resuming from {layout.CHECKPOINT} at {interrupted['kimg']:g} kimg" in output

    a, b = checkpoint.load(straight / layout.CHECKPOINT), checkpoint.load(ckpt)
    for key in ("generator", "discriminator", "generator_eval"):
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), f"{key}.{name}"
    assert run_id(killed) == first_run
    client = MlflowClient(f"sqlite:///{killed / 'mlflow.db'}")
    assert len(client.search_runs([e.experiment_id for e in client.search_experiments()])) == 1
    assert [m.step for m in client.get_metric_history(first_run, "train/loss_d")] == [
        16 * s for s in range(1, steps + 1)
    ]
    assert (killed / layout.HISTORY).read_text().count(
        "\n"
    ) == steps + 1  # header and one row a tick: no duplicated or partial rows
    grids = sorted(p.name for p in (killed / layout.GRIDS).glob("*.png"))
    assert grids == sorted(p.name for p in (straight / layout.GRIDS).glob("*.png")) and len(grids) == 5
    assert not list(killed.rglob(".*.tmp*")), "a temp file was left behind"


@pytest.mark.slow
def test_sigterm_ends_gan_train_in_one_line_with_its_mlflow_run_killed_and_resumable(tmp_path, empty_store):
    """SIGTERM (what timeout, docker stop, scancel and systemd send) used to end `gan train` without a
    line, its MLflow run left RUNNING; Ctrl-C was handled."""
    root = _project(tmp_path / "p", empty_store, 40)
    assert subprocess.run([GAN, "prepare"], cwd=root, capture_output=True).returncode == 0
    proc = _gan_train(root)
    ckpt = root / layout.CHECKPOINT
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == -signal.SIGTERM, output  # closed, then dead of it, as its sender expects
    killed = run_id(root)
    said = [line for line in output.splitlines() if line.startswith("train: interrupted")]
    assert len(said) == 1 and re.fullmatch(
        rf"train: interrupted \(SIGTERM\) at [\d.]+ kimg: MLflow run {killed} marked KILLED; "
        r"run `gan train` again to resume from the last checkpoint",
        said[0],
    ), output
    assert "Traceback" not in output
    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")
    assert client.get_run(killed).info.status == "KILLED"
    interrupted = checkpoint.load(ckpt)
    assert not interrupted["complete"], "the run finished before SIGTERM; make it longer"

    resume = _gan_train(root)
    output = resume.communicate(timeout=300)[0]
    assert resume.returncode == 0, output
    assert f"resuming from {layout.CHECKPOINT} at {interrupted['kimg']:g} kimg" in output
    assert run_id(root) == killed and client.get_run(killed).info.status == "FINISHED"


@pytest.mark.slow
def test_temp_files_left_by_a_killed_writer_are_removed_before_training_resumes(workdir):
    params = tiny(train={"kimg": 0.032})
    prepare.run(params)
    leftovers = [layout.GRIDS / ".images_000000112.x1y2z3.tmp.png", layout.CHECKPOINT.parent / ".checkpoint.abc.tmp.pt"]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    train.run(params)
    assert not any(path.exists() for path in leftovers)
    assert sorted(p.name for p in layout.GRIDS.iterdir()) == [
        "images_000000000.png",
        "images_000000016.png",
        "images_000000032.png",
    ]


def test_atomic_dir_keeps_the_old_folder_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.png").write_text("old")
    (tmp_path / ".out.abc123.tmp").mkdir()  # left by a killed writer
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as new:
            (new / "half.png").write_text("half")
            raise RuntimeError("a bad param, found late")
    assert [p.name for p in target.iterdir()] == ["old.png"]
    with atomic_dir(target) as new:
        (new / "new.png").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder left, the stale one removed


@pytest.mark.slow
def test_a_failing_stage_keeps_its_previous_outputs(workdir, capsys):
    """A bad video.codec used to empty reports/video/ before failing; a stray copy of a grid was a traceback."""
    from stages import make_video

    params = tiny()
    prepare.run(params)
    train.run(params)
    shutil.copy(layout.grid_file(16), layout.GRIDS / "images_000000016 copy.png")
    make_video.run(params)
    assert "make-video: 5 frames (0..0.064 kimg)" in capsys.readouterr().out  # the 5 grids, not the copy
    before = {p.name: p.read_bytes() for p in layout.VIDEO.iterdir()}
    with pytest.raises(UserError, match="video.codec: OpenCV cannot write 'ZZZZ'"):
        make_video.run(tiny(video={"codec": "ZZZZ"}))
    assert {p.name: p.read_bytes() for p in layout.VIDEO.iterdir()} == before
    assert not list(layout.VIDEO.parent.glob(".*.tmp"))


@pytest.mark.slow
def test_resume_when_the_mlflow_run_is_gone_continues_the_weights_in_a_new_run(
    workdir, monkeypatch, empty_store, capsys
):
    """A fresh or moved mlflow.db used to stop the resume (`Run with id=... not found`)."""
    params = tiny(train={"kimg": 0.064, "checkpoint_kimg": 0.032})
    prepare.run(params)
    straight, real_append = straight_then_killed(params, monkeypatch, tick=3)
    lost = run_id()
    shutil.copy(empty_store, "mlflow.db")  # the store is replaced: the run is gone
    monkeypatch.setattr(hooks, "append_history", real_append)
    capsys.readouterr()
    train.run(params)
    out = capsys.readouterr().out
    assert f"MLflow run {lost} is not in" in out and "resuming from" in out
    resumed = checkpoint.load(layout.CHECKPOINT)
    for name, tensor in straight["generator"].items():
        assert torch.equal(tensor, resumed["generator"][name]), name  # the weights were not lost
    fresh = MlflowClient(tracking_uri()).get_run(run_id())
    assert fresh.info.run_id != lost and fresh.info.status == "FINISHED" and fresh.data.params["train.kimg"] == "0.064"


@pytest.mark.parametrize("where", ["param", "torch cache"])
def test_a_malicious_inception_weights_file_is_refused_and_runs_nothing(workdir, monkeypatch, where):
    """torch-fidelity opens its weights with weights_only=False; it only ever sees a plain re-saved copy."""
    from ganlab.metrics.scores import INCEPTION_FILE, _plain_copy, fid_kid

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(workdir / "hub"))
    evil = Path("evil.pth") if where == "param" else workdir / "hub" / "checkpoints" / INCEPTION_FILE
    evil.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"fc.weight": Exploit()}, evil)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    metrics, why = fid_kid(images, images, str(evil) if where == "param" else "")
    assert metrics == {} and "refused to load: not a plain weights file" in why and str(evil) in why
    assert not Path("PWNED").exists()
    torch.save({"w": torch.ones(2)}, "plain.pth")
    assert torch.equal(torch.load(_plain_copy(Path("plain.pth"), workdir), weights_only=True)["w"], torch.ones(2))


@pytest.mark.slow
def test_a_second_gan_train_in_the_same_folder_stops_at_once_naming_the_first(workdir):
    """Two runs in one folder used to share a checkpoint and an MLflow run (no lock)."""
    from ganlab.io import lock

    params = tiny(train={"kimg": 0.032})
    prepare.run(params)
    with lock.exclusive(layout.TRAIN_LOCK, "`gan train`"):  # as a running `gan train` holds it
        with pytest.raises(
            UserError, match=r"^models/.train.lock: another `gan train` is running in this folder \(pid \d+, since "
        ):
            train.run(params)
        assert not layout.CHECKPOINT.exists() and not layout.RUN_INFO.exists()
    assert train.run(params)["kimg"] == 0.032  # released with its holder


@pytest.mark.slow
@pytest.mark.parametrize("store", ["corrupt", "unreachable", "deleted experiment"])
def test_a_broken_mlflow_store_is_one_line_naming_it_and_keeps_earlier_results(workdir, monkeypatch, store):
    params = tiny(train={"kimg": 0.032})
    prepare.run(params)
    train.run(params)
    grids = {p.name: p.read_bytes() for p in layout.GRIDS.iterdir()}
    weights = layout.CHECKPOINT.read_bytes()
    if store == "corrupt":
        Path("mlflow.db").write_bytes(b"this is not a database " * 200)
    elif store == "deleted experiment":
        client = MlflowClient(tracking_uri())
        client.delete_experiment(client.get_experiment_by_name(params.tracking.experiment).experiment_id)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(UserError) as e:
        train.run(
            tiny(train={"kimg": 0.048})
        )  # other params: a fresh run, which replaces the grids once MLflow has its run
    message = str(e.value)
    assert time.monotonic() - start < 30 and "\n" not in message, (
        message
    )  # was 254 s of retries, or a 236-line traceback
    assert message.startswith("MLflow store " + ("http://127.0.0.1:9" if store == "unreachable" else "sqlite:///"))
    assert {
        "corrupt": "move it aside",
        "unreachable": "start the tracking server",
        "deleted experiment": "the experiment was deleted: restore it with `mlflow experiments restore --experiment-id ",
    }[store] in message
    assert {
        p.name: p.read_bytes() for p in layout.GRIDS.iterdir()
    } == grids and layout.CHECKPOINT.read_bytes() == weights


def test_a_diverging_run_stops_with_a_clear_message_and_is_marked_failed(workdir):
    """train.lr 1 used to run to its end with loss_d 869 and both scores 0, and exit 0."""
    params = tiny(train={"kimg": 0.16, "lr": 1.0, "eval_kimg": 0})
    prepare.run(params)
    with pytest.raises(
        FloatingPointError,
        match=r"^train: diverged at 0.048 kimg \(loss_d above 10 for two ticks: loss_d=[1-9]\d+(\.\d+)?, .*"
        r"the last checkpoint is kept in models/checkpoint.pt; try a lower train.lr \(now 1\)$",
    ):
        train.run(params)
    assert checkpoint.load(layout.CHECKPOINT)["step"] == 2
    assert MlflowClient(tracking_uri()).get_run(run_id()).info.status == "FAILED"


@pytest.mark.slow
def test_a_full_disk_during_a_checkpoint_is_one_line_keeps_the_old_checkpoint_and_fails_the_run(workdir, monkeypatch):
    """It used to print 293 lines ending in a SQLite error and leave the run RUNNING."""
    import builtins

    params = tiny(train={"kimg": 0.064, "checkpoint_kimg": 0.032})
    prepare.run(params)
    calls = {"n": 0}

    class Full:  # the disk fills up part-way through the second checkpoint
        def __init__(self, f):
            self.f, self.written = f, 0

        def write(self, b):
            self.written += len(b)
            if self.written > 4096:
                raise OSError(28, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def opening(file, mode="r", *args, **kwargs):
        f = builtins.open(file, mode, *args, **kwargs)
        if mode == "wb" and ".checkpoint." in str(file):
            calls["n"] += 1
            return Full(f) if calls["n"] == 2 else f
        return f

    monkeypatch.setattr(checkpoint, "open", opening, raising=False)
    with pytest.raises(UserError, match=r"^models/checkpoint.pt: cannot write \(.*\); the previous file is kept$"):
        train.run(params)
    assert checkpoint.load(layout.CHECKPOINT)["step"] == 2  # the first checkpoint, whole
    assert not list(layout.CHECKPOINT.parent.glob(".checkpoint.*"))  # no temp file left
    assert MlflowClient(tracking_uri()).get_run(run_id()).info.status == "FAILED"


@pytest.mark.slow
def test_a_kill_between_the_final_checkpoint_and_the_end_of_the_mlflow_run_is_closed_without_retraining(
    workdir, capsys
):
    """A kill in this window once said `starting fresh: ... is a finished run` and retrained from 0 in a
    second MLflow run while the first stayed RUNNING without its history."""
    params = tiny(train={"kimg": 0.032})
    Path("params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    prepare.run(params)
    kill_at_end_run = (
        "import os; from ganlab.io.tracking import TrainingRun; from ganlab.params import load_params; from stages import train\n"
        "TrainingRun.finish = lambda self, status='FINISHED': os._exit(9)  # SIGKILL just before end_run\n"
        "train.run(load_params('params.yaml'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    assert subprocess.run([sys.executable, "-c", kill_at_end_run], env=env, capture_output=True).returncode == 9
    client = MlflowClient(tracking_uri())
    assert checkpoint.load(layout.CHECKPOINT)["complete"] and client.get_run(run_id()).info.status == "RUNNING"
    weights = layout.CHECKPOINT.read_bytes()
    steps = []
    handle = register_optimizer_step_post_hook(lambda *a: steps.append(1))
    try:
        final = train.run(params)
    finally:
        handle.remove()
    assert "its MLflow run" in capsys.readouterr().out and not steps and layout.CHECKPOINT.read_bytes() == weights
    run = client.get_run(run_id())
    assert run.info.status == "FINISHED" and final["kimg"] == 0.032 and run.data.tags["best_kimg"] == "0.032"
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"history.csv", "timing.csv"}
    assert len(client.search_runs([run.info.experiment_id])) == 1
