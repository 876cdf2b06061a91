"""The training checkpoint is one schema: written and read back whole, and a file of another
version is one line naming it, for the training and for the later stages alike."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import torch

from ganlab.errors import UserError
from ganlab.io import checkpoint, run_checkpoint
from ganlab.io.run_checkpoint import FORMAT, RunCheckpoint
from ganlab.training import state


def resumable() -> RunCheckpoint:
    values = {f.name: None for f in fields(RunCheckpoint) if not f.metadata.get("final")}
    return RunCheckpoint(
        **{**values, "model": {"latent_size": 4}, "generator": {"w": torch.ones(2)}, "step": 3, "kimg": 0.1}
    )


def test_a_resumable_checkpoint_reads_back_field_for_field_without_the_final_fields(tmp_path):
    path = tmp_path / "checkpoint.pt"
    run_checkpoint.save(resumable(), path)
    raw = checkpoint.load(path)
    final = [f.name for f in fields(RunCheckpoint) if f.metadata.get("final")]
    assert list(raw) == ["format", *(f.name for f in fields(RunCheckpoint) if f.name not in final)]
    back = run_checkpoint.load(path, "rebuild")
    assert back.step == 3 and torch.equal(back.generator["w"], torch.ones(2)) and not back.complete


def test_the_final_checkpoint_drops_the_optimizers_and_shares_the_best_generator_when_it_is_the_last(tmp_path):
    c = resumable().finish({"w": torch.zeros(2)}, ["digest"], best_is_last=True)
    path = tmp_path / "checkpoint.pt"
    run_checkpoint.save(c, path)
    back = run_checkpoint.load(path, "rebuild")
    assert back.complete and back.opt_g is None and back.replica_digests == ["digest"]
    assert torch.equal(back.generator_best["w"], back.generator_eval["w"])


@pytest.mark.parametrize("version", [1, None, FORMAT + 1])
def test_a_checkpoint_of_another_version_is_one_line_naming_the_file(tmp_path, monkeypatch, version):
    monkeypatch.chdir(tmp_path)
    path = Path("checkpoint.pt")
    run_checkpoint.save(resumable(), path)
    raw = checkpoint.load(path)
    checkpoint.save({**raw, "format": version} if version else {k: v for k, v in raw.items() if k != "format"}, path)
    with pytest.raises(
        UserError, match=r"^checkpoint.pt: a checkpoint of another version of gan-lab .*`gan train`"
    ) as e:
        state.read(path, print)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^checkpoint.pt: a checkpoint of another version"):
        run_checkpoint.for_stages(checkpoint.load(path), path, "last", "rebuild it with `gan train`")
