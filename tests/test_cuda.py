"""The GPU path, end to end: `python -m pytest -m cuda` on a machine with an NVIDIA GPU.

Without one every test here is skipped with its reason; CI has no GPU, so these run on a GPU
machine before a change that touches the device path is accepted.
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from mlflow.tracking import MlflowClient

from ganlab import hooks, layout
from ganlab.io import checkpoint
from ganlab.io.tracking import tracking_uri
from ganlab.metrics import sampler
from ganlab.nets.dcgan import Generator
from stages import attributes, evaluate, latent_study, prepare, sample, train
from tests.conftest import run_id, tiny
from tests.project import new_project, repro, run

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU (CUDA); none here"),
]

CUDA_TINY = {
    "train": {"kimg": 0.048, "eval_kimg": 0.016},
    "generator": "best",
    "device": "cuda",
}  # 3 steps, each evaluated and checkpointed


def test_the_default_pipeline_runs_on_cuda(tmp_path, empty_store):
    project = new_project(tmp_path, empty_store, **CUDA_TINY)
    out = run([sys.executable, "-m", "dvc", "repro"], project)
    assert "Got error" not in out.stdout + out.stderr  # MLflow's input-example check of the logged model
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run_id = json.loads((project / "models/run.json").read_text())["run_id"]
    info = client.get_run(run_id)
    assert info.info.status == "FINISHED" and info.data.tags["device"].startswith("cuda")
    assert [m.step for m in client.get_metric_history(run_id, "eval.nn_ratio")] == [16, 32, 48]
    assert "nn_ratio" in json.loads((project / "reports/metrics.json").read_text())
    assert repro(project) == []


@pytest.mark.parametrize(
    "arch, discriminator",
    [("dcgan", d) for d in ("dcgan", "projected", "dcgan+projected", "dcgan+shallow")]
    + [("resize", "dcgan"), ("r3gan", "dcgan")],
)
def test_kill_and_resume_on_cuda(workdir, monkeypatch, arch, discriminator):
    params = tiny(**CUDA_TINY, model={"arch": arch, "discriminator": discriminator})
    prepare.run(params)
    attributes.run(params)
    real_append = hooks.append_history

    def crash_at_step_2(row, timing):
        if row["kimg"] == 0.032:
            raise KeyboardInterrupt("simulated kill")
        real_append(row, timing)

    monkeypatch.setattr(hooks, "append_history", crash_at_step_2)
    with pytest.raises(KeyboardInterrupt):
        train.run(params)
    interrupted = checkpoint.load(layout.CHECKPOINT)
    assert interrupted["step"] == 1 and not interrupted["complete"]
    first_run = run_id()
    monkeypatch.setattr(hooks, "append_history", real_append)
    final = train.run(params)  # RNG states come back from a CPU checkpoint into CUDA generators
    assert final["kimg"] == 0.048
    resumed = checkpoint.load(layout.CHECKPOINT)
    assert resumed["complete"] and run_id() == first_run
    assert all(t.device.type == "cpu" for t in resumed["generator"].values())  # checkpoints always load to the CPU
    steps = [m.step for m in MlflowClient(tracking_uri()).get_metric_history(run_id(), "loss_d")]
    assert steps == [16, 32, 48]


def test_every_later_stage_runs_on_cuda(workdir, monkeypatch):
    params = tiny(**CUDA_TINY)
    for stage in (prepare, attributes, train):
        stage.run(params)
    devices = []
    forward = Generator.forward

    def recording(self, z):
        devices.append((z.device.type, next(self.parameters()).device.type))
        return forward(self, z)

    monkeypatch.setattr(Generator, "forward", recording)
    for stage in (sample, latent_study, evaluate):
        devices.clear()
        stage.run(params)
        assert devices and all(d == ("cuda", "cuda") for d in devices if d != ("cpu", "cpu")), (stage.__name__, devices)
        assert ("cuda", "cuda") in devices, stage.__name__


def test_the_logged_model_loads_and_samples_on_cuda(workdir):
    import mlflow

    params = tiny(**CUDA_TINY)
    for stage in (prepare, attributes, train, sample):
        stage.run(params)
    mlflow.set_tracking_uri(tracking_uri())
    run_id = json.loads(layout.RUN_INFO.read_text())["run_id"]
    (model,) = [
        m
        for m in mlflow.search_logged_models(
            experiment_ids=[mlflow.get_run(run_id).info.experiment_id], output_format="list"
        )
        if m.source_run_id == run_id
    ]
    G = mlflow.pytorch.load_model(model.model_uri).to("cuda").eval()
    images = sampler.generate(G, sampler.fixed_latents(0, G.latent_size, 8))
    assert images.device.type == "cuda" and images.shape == (8, 3, 32, 32) and images.abs().max() <= 1


def test_adaptive_augmentation_and_a_wall_time_stop_on_cuda(workdir):
    """ADA's strength lives on the device and moves without host reads; train.stop ends the run at a tick."""
    import csv

    params = tiny(
        train={
            "kimg": 0.128,
            "tick_kimg": 0.048,
            "eval_kimg": 0.048,
            "ada_target": 0.6,
            "ada_kimg": 0.05,
            "checkpoint_kimg": 0.048,
            "stop": {"minutes": 1e-6},
        },
        device="cuda",
    )
    prepare.run(params)
    final = train.run(params)
    rows = list(csv.DictReader(layout.HISTORY.open()))
    assert [float(r["kimg"]) for r in rows] == [0.048] and final["kimg"] == 0.048
    assert 0 < float(rows[0]["augment_p"]) <= 1 and -1 <= float(rows[0]["r_t"]) <= 1
    state = checkpoint.load(layout.CHECKPOINT)
    assert (
        state["complete"]
        and state["step"] == 3
        and state["augment_p"].device.type == "cpu"
        and 0 < float(state["augment_p"]) <= 1
    )
