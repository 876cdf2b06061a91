"""The `gan` command turns user mistakes into one line on stderr and exit code 1."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import STAGES

GAN = str(Path(sys.executable).parent / "gan")


def gan(*args, cwd):
    return subprocess.run([GAN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_missing_params_file(tmp_path):
    out = gan("train", "--params", "missing.yaml", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: missing.yaml: params file not found"


@pytest.mark.slow
def test_bad_key_and_missing_checkpoint(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epohcs: 3\n")
    out = gan("train", cwd=tmp_path)
    assert (
        out.returncode == 1
        and out.stderr.strip() == "error: params.yaml: train.epohcs: unknown key; did you mean 'train.epochs'?"
    )
    (tmp_path / "params.yaml").write_text("{}\n")
    out = gan("sample", cwd=tmp_path)
    assert out.returncode == 1 and "models/checkpoint.pt: checkpoint not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_lists_every_stage(tmp_path):
    out = gan("--help", cwd=tmp_path)
    for command in (*STAGES, "bench", "demo-faces", "plots"):
        assert command in out.stdout


def _broken_manifest(root: Path, text: str | None) -> None:
    (root / "data/prepared").mkdir(parents=True)
    if text is not None:
        (root / "data/prepared/manifest.json").write_text(text)


@pytest.mark.parametrize(
    "command, setup, message",
    [
        (
            "features",
            lambda r: _broken_manifest(r, None),
            "error: data/prepared/manifest.json: not found (run `gan prepare` first)",
        ),
        (
            "features",
            lambda r: _broken_manifest(r, "{bad"),
            "error: data/prepared/manifest.json: damaged (JSONDecodeError: ",
        ),
        (
            "train",
            lambda r: (r / "params.yaml").write_bytes(b"train:\n  kimg: 1 # caf\xe9\n"),
            "error: params.yaml: not UTF-8 text (byte 0xe9 at offset 22); save it as UTF-8",
        ),
        (
            "train",
            lambda r: (r / "params.yaml").write_text("tracking:\n  experiment: ''\n"),
            "error: params.yaml: tracking.experiment: String should have at least 1 character",
        ),
    ],
    ids=["no-manifest", "bad-manifest", "non-utf8-params", "empty-experiment"],
)
@pytest.mark.slow
def test_damaged_inputs_are_one_line_errors(tmp_path, command, setup, message):
    """Each of these was a traceback."""
    setup(tmp_path)
    if command == "features":
        (tmp_path / "params.yaml").write_text("{}\n")
        torch.save(
            {"images": torch.zeros(2, 3, 32, 32, dtype=torch.float16), "files": ["a", "b"]},
            tmp_path / "data/prepared/dataset.pt",
        )
    out = gan(command, cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.startswith(message) and out.stderr.count("\n") == 1, out.stderr


def test_evaluate_without_training_history_is_one_line(tmp_path):
    from ganlab.errors import UserError
    from ganlab.render.plots import plot_curves

    with pytest.raises(UserError, match=r"/history.csv: not found \(run `gan train` first\)$"):
        plot_curves(tmp_path / "history.csv", tmp_path / "eval_history.csv", tmp_path / "x.png")


@pytest.mark.slow
def test_demo_faces_refuses_a_negative_count(tmp_path):
    out = gan("demo-faces", "x", "--count", "-3", cwd=tmp_path)
    assert out.returncode == 2 and "Invalid value for '--count'" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_bench_refuses_an_unknown_device_in_one_line(tmp_path):
    out = gan("bench", "--device", "tpu", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr == "error: --device: 'tpu' is not one of auto, cpu, cuda\n"


@pytest.mark.slow
def test_bench_refuses_an_unknown_arch_in_one_line(tmp_path):
    out = gan("bench", "--profile", "--arch", "vit", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr == "error: --arch: 'vit' is not one of dcgan, resize, r3gan\n"
