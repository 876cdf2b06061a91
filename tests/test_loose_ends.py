"""Small things that each ended in silence, a traceback or a wrong result."""

from __future__ import annotations

import os
import stat
from dataclasses import fields
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from ganlab import layout
from ganlab.data.dataset import load_images
from ganlab.errors import UserError
from ganlab.io import checkpoint, run_checkpoint
from ganlab.io.atomic import atomic_dir, write_text
from ganlab.io.run_checkpoint import RunCheckpoint
from ganlab.metrics.sampler import load_generator
from ganlab.nets.archs import generator_for
from ganlab.params import excerpt, parse_params
from stages import attributes, prepare, sample, train
from stages.cli import app
from tests.conftest import tiny

MODEL = {"arch": "dcgan", "latent_size": 16, "image_size": 32, "g_width": 8}


def finished_checkpoint(weights: dict) -> None:
    """A finished run's file as the later stages read it, with these generator weights."""
    empty = dict.fromkeys(f.name for f in fields(RunCheckpoint))
    c = RunCheckpoint(**{**empty, "model": MODEL, "step": 0, "kimg": 1.0, "best_kimg": 0.0})
    run_checkpoint.save(c.finish(weights, [], best_is_last=False), layout.CHECKPOINT)


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


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            {"tracking": {"experiment": ".."}},  # made its artifact folder the project's root
            "params.yaml: tracking.experiment: must name a folder under mlruns/ (its artifacts go there), not '.' or '..' (got '..')",
        ),
        (
            {"train": {"grids": 1}},  # gave 3 frames, as 2 does
            "params.yaml: train.grids: must be at least 2: one early in the run and one at its end (the untrained grid comes on top) (got 1)",
        ),
    ],
)
def test_params_that_would_not_do_what_they_say_are_refused_in_one_line(raw, message):
    with pytest.raises(UserError) as e:
        parse_params(raw)
    assert str(e.value) == message


def test_bench_refuses_a_negative_size_instead_of_dropping_it():
    result = CliRunner().invoke(app, ["bench", "--size", "-5", "--device", "cpu"])
    assert result.exit_code == 1
    assert (
        result.stderr.strip() == "error: --size: -5 is negative; a data set size in images, or 0 for no end-to-end run"
    )


def test_a_dataset_of_a_size_the_networks_do_not_take_is_one_line_naming_gan_prepare(workdir):
    checkpoint.save({"images": torch.zeros(4, 3, 33, 33, dtype=torch.float16), "files": list("abcd")}, layout.DATASET)
    with pytest.raises(UserError) as e:  # training ended in "ValueError: image size 33 is not one of ..."
        load_images(layout.DATASET)
    assert str(e.value) == (
        "data/prepared/dataset.pt: images of 33 px; the networks take 32, 64, 128, 256 px; "
        "rebuild it with `gan prepare` (or `dvc repro`)"
    )


def test_a_source_path_too_long_for_the_file_system_is_one_line(workdir):
    with pytest.raises(UserError) as e:  # was OSError: [Errno 36] File name too long, and 5000 a's
        prepare.run(tiny(prepare={"source": "a" * 5000}))
    assert str(e.value) == f"prepare.source: cannot open {excerpt('a' * 5000)}: File name too long"
    assert len(str(e.value)) < 120


def test_a_classifier_left_from_another_data_set_gives_no_attribute_metrics(workdir, capsys):
    prepare.run(tiny())  # the demo faces, and their classifier
    attributes.run(tiny())
    photos = workdir / "photos"
    photos.mkdir()
    for i in range(24):
        Image.new("RGB", (32, 32), (10 * i, 100, 200 - 5 * i)).save(photos / f"{i:02d}.png")
    params = tiny(prepare={"source": str(photos)}, train={"eval_samples": 16})
    prepare.run(params)  # `gan attributes` not run again: models/attributes.pt is the demo's
    train.run(params)
    header = layout.EVAL_HISTORY.read_text().splitlines()[0].split(",")
    assert "fd_ratio" in header and not [k for k in header if k.startswith("attr")], header
    assert "note: no attribute metrics in the evaluations: models/attributes.pt was made for another data set" in (
        capsys.readouterr().out
    )


def test_latent_study_dimensions_written_twice_or_lists_too_long_are_refused_in_one_line(tmp_path):
    from ganlab.params import load_params

    path = tmp_path / "params.yaml"
    path.write_text("latent_study:\n  features:\n    3: 50.0\n    03: -50.0\n")  # one dimension: the last won
    with pytest.raises(UserError, match=r"latent_study\.features\.3: duplicate key at line 4 \(first at line 3\)"):
        load_params(path)
    with pytest.raises(UserError, match=r"^params.yaml: latent_study.constants: List should have at most 256 items"):
        parse_params({"latent_study": {"constants": [0.0] * 120_000}})  # took 4.85 GB


def test_latent_study_dimensions_beyond_an_older_generators_latent_are_one_line():
    """params.yaml's dimensions were checked against model.latent_size; a checkpoint trained with a
    smaller one ended in an IndexError."""
    from ganlab.params import LatentStudyParams
    from ganlab.render.latent_study import build_studies

    with pytest.raises(UserError, match=r"^latent_study.one_hot_dims: dimension 64 is outside the generator's latent"):
        build_studies(LatentStudyParams(), latent_size=16)
    assert len(build_studies(LatentStudyParams(one_hot_dims=[0], features={3: 5.0}), latent_size=16)) == 4


@pytest.mark.slow
def test_sample_writes_its_singles_a_chunk_at_a_time_as_the_same_images(workdir, monkeypatch):
    """sample.count allows 10000: at 256 px they were 7.9 GB generated at once. In chunks (here of
    3), each single is still the image of its latent."""
    from ganlab.metrics.sampler import fixed_latents, generate
    from ganlab.render.grids import save_png, to_grid

    torch.manual_seed(0)
    finished_checkpoint(generator_for(MODEL).state_dict())
    monkeypatch.setattr(sample, "SINGLES_AT_ONCE", 3)
    params = tiny(sample={"count": 7, "seed": 5})
    sample.run(params)
    G, _ = load_generator(layout.CHECKPOINT, torch.device("cpu"))
    expected = generate(G, fixed_latents(6, G.latent_size, 7))
    for i, image in enumerate(expected):
        save_png(to_grid(image[None], nrow=1, padding=0), workdir / "expected.png")
        written = Image.open(layout.SAMPLES / f"sample_{i:03d}.png")
        assert written.tobytes() == Image.open(workdir / "expected.png").tobytes(), i
    assert not (layout.SAMPLES / "sample_007.png").exists()
