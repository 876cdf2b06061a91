"""The `gan` command turns user mistakes into one line on stderr and exit code 1."""

import subprocess
import sys
from pathlib import Path

GAN = str(Path(sys.executable).parent / "gan")


def gan(*args, cwd):
    return subprocess.run([GAN, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_missing_params_file(tmp_path):
    out = gan("train", "--params", "missing.yaml", cwd=tmp_path)
    assert out.returncode == 1
    assert out.stderr.strip() == "error: missing.yaml: params file not found"


def test_bad_key_and_missing_checkpoint(tmp_path):
    (tmp_path / "params.yaml").write_text("train:\n  epohcs: 3\n")
    out = gan("train", cwd=tmp_path)
    assert out.returncode == 1 and out.stderr.strip() == "error: params.yaml: train.epohcs: unknown key; did you mean 'train.epochs'?"
    (tmp_path / "params.yaml").write_text("{}\n")
    out = gan("sample", cwd=tmp_path)
    assert out.returncode == 1 and "models/checkpoint.pt: checkpoint not found" in out.stderr
    assert "Traceback" not in out.stderr


def test_help_lists_every_stage(tmp_path):
    out = gan("--help", cwd=tmp_path)
    for command in ("prepare", "attributes", "features", "train", "sample", "latent-study", "make-video", "evaluate", "bench", "demo-faces"):
        assert command in out.stdout
