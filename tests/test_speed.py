"""The benchmark measures what it says, and multi-process training keeps its replicas identical."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from mlflow.tracking import MlflowClient
from torch import nn

from ganlab import layout
from ganlab.io import checkpoint
from ganlab.bench import forward_flops, train_flops_per_image
from ganlab.training.networks import Discriminator, Generator
from tests.conftest import TINY

GAN = str(Path(sys.executable).parent / "gan")


def test_flops_are_counted_from_layer_shapes():
    assert forward_flops(nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1)), (3, 32, 32)) == 2 * 3 * 8 * 16 * 16 * 16
    assert forward_flops(nn.Sequential(nn.ConvTranspose2d(16, 8, 4, 1, 0)), (16, 1, 1)) == 2 * 16 * 8 * 16
    G, D = Generator(128, 128, 32), Discriminator(128, 64)
    g, d = forward_flops(G, (128,)), forward_flops(D, (3, 128, 128))
    assert round(g / 1e9, 3) == 0.283 and round(d / 1e9, 3) == 1.099  # the lecture's networks
    assert train_flops_per_image(G, D) == 4 * g + 9 * d


def test_bench_prints_both_loops_as_json(tmp_path):
    out = subprocess.run([GAN, "bench", "--config", "demo-64", "--steps", "1", "--warmup", "1", "--json"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)
    assert result["config"] == "demo-64" and result["image_size"] == 64 and result["batch_size"] == 64
    for key in ("notebook_images_per_s", "ours_images_per_s", "sampling_images_per_s", "ours_tflops"):
        assert result[key] > 0
    assert abs(result["speedup"] - result["ours_images_per_s"] / result["notebook_images_per_s"]) < 0.01


def test_two_processes_on_gloo_keep_identical_replicas_and_rank0_writes(tmp_path, empty_store):
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    params = {k: dict(v) for k, v in TINY.items()}
    params["train"].update(epochs=3, batch_size=16)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert subprocess.run([GAN, "prepare"], cwd=tmp_path, capture_output=True).returncode == 0
    out = subprocess.run([GAN, "train", "--nproc", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    assert out.stdout.count("train: epoch=3") == 1  # one rank reports

    state = checkpoint.load(tmp_path / layout.CHECKPOINT)
    assert state["complete"] and len(state["replica_digests"]) == 2
    assert len(set(state["replica_digests"])) == 1  # both replicas hold the same weights
    assert len(state["rng"]["streams"]["noise"]) == 2  # each rank's noise stream is kept for resume
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1 and runs[0].data.tags["processes"] == "2"
    assert sorted(p.name for p in (tmp_path / layout.GRIDS).iterdir()) == [f"epoch_000{i}.png" for i in range(4)]
