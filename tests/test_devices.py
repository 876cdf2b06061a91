"""One owner for the device: every tensor a generator reads is created on, or moved to, that
generator's device in one place (the sampler) or in the training step.

This machine has only a CPU, so two checks stand in for a GPU: (1) over a whole tiny run
(train with in-training evaluation, sample, latent study, evaluate), every call of a
generator comes from one of the known feeding functions; (2) each feeding function, given a
generator on a device other than the CPU ("meta": shapes only, no data), hands it inputs on
that device. The CUDA tests (tests/test_cuda.py) run the real thing on a GPU.
"""

from __future__ import annotations

import inspect

import pytest
import torch

from ganlab.device import device_of
from ganlab.metrics import sampler
from ganlab.nets.dcgan import Generator, recalibrate_batchnorm
from stages import evaluate, latent_study, prepare, sample, train
from tests.conftest import tiny

FEEDERS = {
    ("ganlab.metrics.sampler", "generate"),
    ("ganlab.nets.dcgan", "recalibrate_batchnorm"),
    ("ganlab.training.loop", "d_step"),
    ("ganlab.training.loop", "g_step"),
    ("mlflow.pytorch", "predict"),
}  # MLflow checks the logged CPU copy on a CPU input example


def _caller() -> tuple[str, str]:
    """The first function outside torch that called the generator (comprehensions belong to their function)."""
    for frame in inspect.stack()[2:]:
        module = frame.frame.f_globals.get("__name__", "")
        if not module.startswith("torch") and not frame.function.startswith("<"):
            return module, frame.function
    raise AssertionError("no caller outside torch")


@pytest.mark.slow
def test_every_generator_call_in_a_whole_run_comes_from_a_known_feeder(workdir, monkeypatch):
    callers: set[tuple[str, str]] = set()
    forward = Generator.forward

    def recording(self, z):
        callers.add(_caller())
        assert z.device == device_of(self)
        return forward(self, z)

    monkeypatch.setattr(Generator, "forward", recording)
    params = tiny(train={"eval_kimg": 0.016, "ema": 0.9})
    for stage in (prepare, train, sample, latent_study, evaluate):
        stage.run(params)
    assert ("ganlab.metrics.sampler", "generate") in callers and ("ganlab.training.loop", "g_step") in callers
    assert callers <= FEEDERS, f"a generator is fed from {callers - FEEDERS}; route it through ganlab.metrics.sampler"


@pytest.fixture
def meta_generator(monkeypatch):
    """A generator on the meta device that refuses inputs from anywhere else."""
    G = Generator(16, 32, 8).to("meta")

    def check(module, args):
        assert args[0].device == torch.device("meta"), f"input on {args[0].device}, generator on meta"

    G.register_forward_pre_hook(check)
    return G


@pytest.mark.parametrize("batch_stats", [False, True])
def test_generate_moves_cpu_latents_to_the_generators_device(meta_generator, batch_stats):
    images = sampler.generate(meta_generator, sampler.fixed_latents(0, 16, 5), batch=2, batch_stats=batch_stats)
    assert images.device == torch.device("meta") and images.shape == (5, 3, 32, 32)


class Fed(Exception):
    """Raised once the first input has passed the device check (meta BatchNorm cannot go on)."""


def test_recalibration_feeds_latents_on_the_generators_device(meta_generator):
    meta_generator.register_forward_pre_hook(lambda module, args: (_ for _ in ()).throw(Fed()))
    with pytest.raises(Fed):
        recalibrate_batchnorm(meta_generator, batches=2, batch_size=4)
