"""The benchmark measures what it says, and multi-process training keeps its replicas identical."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from torch import nn

from ganlab import layout
from ganlab.bench import forward_flops, profile_steps, train_flops_per_image
from ganlab.io import checkpoint
from ganlab.nets.dcgan import Discriminator, Generator
from tests.conftest import TINY

GAN = str(Path(sys.executable).parent / "gan")


def test_flops_are_counted_from_layer_shapes():
    assert forward_flops(nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1)), (3, 32, 32)) == 2 * 3 * 8 * 16 * 16 * 16
    assert forward_flops(nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 1, 0)), (16, 1, 1)) == 2 * 16 * 8 * 16
    G, D = Generator(128, 128, 32), Discriminator(128, 64)
    g, d = forward_flops(G, (128,)), forward_flops(D, (3, 128, 128))
    assert round(g / 1e9, 3) == 0.283 and round(d / 1e9, 3) == 1.099  # the lecture's networks
    assert train_flops_per_image(G, D) == 4 * g + 9 * d


def test_the_profile_splits_a_training_step_into_its_d_and_g_phases():
    rows = dict(profile_steps("demo-64", 2, torch.device("cpu"), "dcgan"))
    for step in ("D step", "G step"):
        for part in ("G forward", "D forward", "backward", "optimizer", "rest"):
            assert rows[f"{step}: {part}"] > 0, f"{step}: {part}"
    assert rows["data"] > 0
    wall = rows.pop("step (wall)")
    assert sum(rows.values()) == pytest.approx(wall, rel=1e-6)  # "other" is what no phase covers


@pytest.mark.slow
def test_bench_reports_interleaved_trials_and_an_end_to_end_run(tmp_path):
    out = subprocess.run(
        [GAN, "bench", "--config", "demo-64", "--trials", "3", "--steps", "1", "--size", "30", "--kimg", "2", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    steps, e2e = json.loads(out.stdout)
    assert (
        steps["kind"] == "steps" and steps["config"] == "demo-64" and steps["image_size"] == 64 and steps["trials"] == 3
    )
    for key in ("notebook_images_per_s", "ours_images_per_s", "speedup"):
        s = steps[key]
        assert 0 < s["low"] <= s["median"] <= s["high"], key
    assert steps["sampling_images_per_s"] > 0 and steps["ours_tflops"] > 0

    assert e2e["kind"] == "end_to_end" and e2e["images"] == 30 and e2e["kimg"] == 2
    assert 0 < e2e["end_to_end_images_per_s"] < e2e["loop_images_per_s"]  # the process start is not free
    assert abs(e2e["ratio"] - e2e["end_to_end_images_per_s"] / e2e["pure_step_images_per_s"]) < 0.01
    assert (
        e2e["grids"] == 41 and e2e["checkpoints"] == 1
    )  # the shipped cadence: 40 grids and the untrained one; 2 kimg < 25
    assert 0 < e2e["megabytes_written"] < 100
    assert list(tmp_path.iterdir()) == []  # the temporary project is gone


@pytest.mark.slow
def test_two_processes_on_gloo_keep_identical_replicas_and_rank0_writes(tmp_path, empty_store):
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    params = {k: dict(v) for k, v in TINY.items()}
    params["train"].update(
        kimg=0.048, stop={"patience": 2, "minutes": 60}
    )  # rank 0 decides train.stop at each tick, both follow
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert subprocess.run([GAN, "prepare"], cwd=tmp_path, capture_output=True).returncode == 0
    before = _listeners()
    proc = subprocess.Popen(
        [GAN, "train", "--nproc", "2"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    opened, deadline = set(), time.monotonic() + 300
    while proc.poll() is None:  # a collective called on one rank only would hang both: fail instead of waiting forever
        opened |= _listeners() - before
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(
                "train --nproc 2 did not end within 300 s (a rank waiting on a collective the other never calls?)"
            )
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    out = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert not {a for a in opened if not _loopback(a)}, (
        f"listening beyond loopback: {opened}"
    )  # torchrun's store listened on *:port
    assert out.stdout.count("train: kimg=0.048") == 1  # one rank reports

    state = checkpoint.load(tmp_path / layout.CHECKPOINT)
    assert state["complete"] and len(state["replica_digests"]) == 2
    assert len(set(state["replica_digests"])) == 1  # both replicas hold the same weights
    assert len(state["rng"]["streams"]["noise"]) == 2  # each rank's noise stream is kept for resume
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].data.tags["processes"] == "2"
    assert sorted(p.name for p in (tmp_path / layout.GRIDS).iterdir()) == [
        f"images_{i:09d}.png" for i in (0, 16, 32, 48)
    ]


def _listeners() -> set[str]:
    """Local addresses of the machine's listening TCP sockets, as /proc/net shows them (hex)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if Path(table).exists():
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    found.add(fields[1])
    return found


def _loopback(address: str) -> bool:
    host = address.split(":")[0]
    return (
        host.endswith("7F")
        if len(host) == 8
        else host in ("00000000000000000000000001000000", "0000000000000000FFFF00000100007F")
    )


def test_test_workers_split_the_cores_between_their_torch_threads():
    """Under pytest-xdist each worker runs torch on its share of the cores (tests/conftest.py), and
    the `gan` and `dvc` processes a test starts inherit it; at the default (every core in every
    worker) two workers on 2 cores spent twice the CPU on the fast lane. A count the user exports is kept."""
    import os

    from tests.conftest import USER_THREADS, _cores

    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        pytest.skip("runs in one process (-n 0): torch keeps its default threads")
    if USER_THREADS is not None:
        assert os.environ["OMP_NUM_THREADS"] == USER_THREADS
        return
    share = str(max(1, _cores() // int(workers)))
    assert os.environ["OMP_NUM_THREADS"] == share
    assert torch.get_num_threads() == int(share)
    child = [sys.executable, "-c", "import torch; print(torch.get_num_threads())"]
    assert subprocess.run(child, capture_output=True, text=True, check=True).stdout.strip() == share
