"""Issue 35's low list: small things that each ended in silence, a traceback or a wrong result."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch

from ganlab import layout
from ganlab.errors import UserError
from ganlab.io import checkpoint
from ganlab.io.atomic import atomic_dir, write_text
from ganlab.metrics.sampler import load_generator
from ganlab.nets.archs import generator_for
from stages import sample
from tests.conftest import tiny

MODEL = {"arch": "dcgan", "latent_size": 16, "image_size": 32, "g_width": 8}


def finished_checkpoint(weights: dict) -> None:
    """A finished run's file as the later stages read it, with these generator weights."""
    checkpoint.save(
        {"complete": True, "model": MODEL, "generator_eval": weights, "kimg": 1.0, "best_kimg": 0.0},
        layout.CHECKPOINT,
    )


def test_sample_refuses_a_generator_whose_weights_are_nan_instead_of_writing_black_images(workdir):
    weights = generator_for(MODEL).state_dict()
    finished_checkpoint(
        {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in weights.items()}
    )
    with pytest.raises(
        UserError, match=r"^models/checkpoint.pt: the generator's weights at 1 kimg are not finite"
    ) as e:
        sample.run(tiny())
    assert "`gan train`" in str(e.value) and not layout.SAMPLES.exists()
    finished_checkpoint(weights)  # finite: loads
    assert load_generator(layout.CHECKPOINT, torch.device("cpu"))[1] == 1.0


class Exploit:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_refused_file_is_named_without_torchs_advice_to_load_it_unsafely(tmp_path):
    torch.save({"generator": Exploit()}, tmp_path / "evil.pt")
    with pytest.raises(UserError) as e:
        checkpoint.load(tmp_path / "evil.pt")
    message = str(e.value)
    assert (
        message
        == f"{tmp_path}/evil.pt: refused to load: not a plain weights file (it names {os.system.__module__}.system, which loading would import and could run)"
    )
    assert not Path("PWNED").exists()


def test_atomic_dir_makes_folders_with_the_mode_mkdir_would(tmp_path):
    umask = os.umask(0o022)
    try:
        with atomic_dir(tmp_path / "out") as fresh:
            (fresh / "inner").mkdir()
            write_text(fresh / "a.txt", "x")
    finally:
        os.umask(umask)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in (tmp_path / "out", tmp_path / "out/inner", tmp_path / "out/a.txt")
    }
    assert modes == {"out": 0o755, "inner": 0o755, "a.txt": 0o644}  # "out" was 0700
