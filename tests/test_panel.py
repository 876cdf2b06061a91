"""The ImageNet-free half of the quality panel (SWD on pixels, NDB coverage) and the rule that
picks the best generator: calibrated on the demo faces, and never fooled by fd alone."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganlab.data.dataset import to_tensor
from ganlab.data.demo_faces import draw_face, sample_labels
from ganlab.metrics import pixels
from ganlab.metrics.pixels import coverage_scores, laplacian_pyramid, swd_scores
from ganlab.training.best import PANEL, last_gain, pick_best
from ganlab.training.loop import plateaued
from tests.conftest import tiny


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """400 demo faces at 32 px: 200 for the reference, 200 held out as "a perfect generator"."""
    labels, rng = sample_labels(400, seed=3)
    return to_tensor(np.stack([draw_face(label, rng, 32) for label in labels])).float()


def _splits(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randperm(n, generator=g) for _ in range(5)]


def test_the_pyramid_has_a_level_per_octave_down_to_16_px_and_adds_back_up():
    x = torch.rand(2, 3, 64, 64)
    levels = laplacian_pyramid(x)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16]
    assert laplacian_pyramid(torch.rand(1, 3, 16, 16))[0].shape[-1] == 16  # 16 px: the low-pass level alone
    flat = laplacian_pyramid(torch.full((1, 3, 32, 32), 0.3))
    assert flat[0].abs().max() < 1e-5 and torch.allclose(
        flat[1], torch.full_like(flat[1], 0.3)
    )  # no detail in a flat image


def test_swd_kept_floors_give_the_same_numbers_as_fresh_ones(faces, monkeypatch):
    # fewer neighbourhoods and projections (as in test_metrics.py): the same code, a fifth of the time
    monkeypatch.setattr(pixels, "NHOODS_PER_IMAGE", 16)
    monkeypatch.setattr(pixels, "DIRS_PER_REPEAT", 32)
    real, splits, floors = faces[:100], _splits(100), {}
    for fake in (faces[100:150], faces[150:200], faces[100:110]):  # the last: fewer samples than n a side
        assert swd_scores(fake, real, splits, 50, floors=floors) == swd_scores(fake, real, splits, 50)
    assert sorted(floors) == ["swd_16px", "swd_32px"]


def test_swd_of_samples_fed_in_pieces_and_scored_in_batches_is_the_swd_of_all_at_once(faces, monkeypatch):
    """The evaluation feeds swd 256 samples at a time, and it scores them in batches of whole
    chunks (a few hundred MB of neighbourhoods each): any pieces and batches give its numbers."""
    from ganlab.metrics import pixels

    real, splits, fake = faces[:60], _splits(60), faces[60:200]  # chunks of 30: 4 whole, 20 samples unused
    whole = swd_scores(fake, real, splits, 30)
    monkeypatch.setattr(pixels, "SWD_BATCH_BYTES", 1)  # one chunk a batch
    stream = pixels.SwdStream(real, splits, 30, len(fake))
    for piece in fake.split(17):  # pieces across chunk borders
        stream.add(piece)
    assert stream.result() == pytest.approx(whole, rel=1e-6)  # equal here; a CPU may convolve 17 images unlike 140


@pytest.mark.slow
def test_swd_is_near_its_floor_for_held_out_faces_and_far_for_blur_noise_and_collapse(faces):
    real, held = faces[:200], faces[200:]
    blur = F.interpolate(
        F.interpolate(held, scale_factor=0.5, mode="bilinear", antialias=True), scale_factor=2, mode="bilinear"
    )
    scores = {
        name: swd_scores(x, real, _splits(200), 100)
        for name, x in {
            "held": held,
            "blur": blur,
            "noise": torch.rand_like(held) * 2 - 1,
            "one": held[:1].expand_as(held).contiguous(),
        }.items()
    }
    held_s = scores["held"]
    assert set(held_s) >= {
        "swd",
        "swd_std",
        "swd_floor",
        "swd_floor_std",
        "swd_ratio",
        "swd_32px",
        "swd_16px",
        "swd_samples",
    }
    assert (
        held_s["swd_ratio"] < 1.5
    )  # a perfect generator scores about the floor (the floor's own spread is wide at n = 100)
    assert scores["blur"]["swd_ratio"] > 2.5 * held_s["swd_ratio"]  # the fine level sees blur
    assert scores["blur"]["swd_32px"] > 5 * held_s["swd_32px"]
    assert scores["one"]["swd_ratio"] > 2.5 * held_s["swd_ratio"]
    assert scores["noise"]["swd_ratio"] > 10 * held_s["swd_ratio"]


def test_ndb_finds_dropped_modes_and_leaves_a_fair_sample_at_its_floor(faces):
    real, held = faces[:200], faces[200:]
    fair = coverage_scores(held, real, _splits(200))
    assert fair["ndb_bins"] == 10 and fair["ndb"] <= fair["ndb_floor"] + 0.15
    collapsed = coverage_scores(held[:1].expand_as(held).contiguous(), real, _splits(200))
    assert collapsed["ndb"] > 0.7 and collapsed["ndb_under"] > 0.6 and collapsed["ndb_js"] > 10 * fair["ndb_js"]


def _history(rows: list[tuple[float, float]], swd_std: float = 1.0, fd_std: float = 5.0) -> list[dict[str, float]]:
    return [
        {"kimg": 10.0 * (i + 1), "swd": s, "swd_std": swd_std, "fd": f, "fd_std": fd_std}
        for i, (s, f) in enumerate(rows)
    ]


def test_the_best_generator_is_never_one_whose_fd_improves_while_swd_worsens():
    # evaluation 3: fd halves (the ImageNet-feature D at work) while swd gets worse by far more than its spread
    evals = _history([(60.0, 400.0), (45.0, 300.0), (70.0, 150.0)])
    assert pick_best(evals, "fd") == 2  # what fd alone would keep
    assert pick_best(evals, PANEL) == 1


def test_the_best_generator_is_the_later_one_inside_the_noise_and_never_a_nan():
    evals = _history([(60.0, 400.0), (45.0, 300.0), (45.8, 303.0)])  # the third is within both spreads of the lowest
    assert pick_best(evals, PANEL) == 2
    assert pick_best(evals + _history([(44.0, math.nan)]), PANEL) == 2
    assert pick_best(_history([(math.nan, math.nan)]), PANEL) is None
    # fd worse than its spread: the guard holds, even though swd is better
    assert pick_best(_history([(45.0, 300.0), (40.0, 320.0)]), PANEL) == 0


def test_a_later_generator_better_on_both_than_the_kept_one_is_kept_though_the_lows_fell_elsewhere():
    """The low swd (evaluation 1, refused for its fd) and the low fd (evaluation 2, refused for its
    swd) fell on generators never kept; evaluation 3 beats the kept one on both beyond the noise."""
    evals = _history([(300.0, 700.0), (100.0, 900.0), (310.0, 600.0), (105.0, 650.0)])
    assert pick_best(evals, PANEL) == 3
    assert pick_best(evals[:3], PANEL) == 0  # each alone fails a guard against the kept one


def test_patience_counts_evaluations_since_the_last_gain_beyond_the_noise():
    flat = _history([(60.0, 400.0), (45.0, 300.0), (45.5, 300.0), (44.6, 299.0), (45.2, 300.0)])
    assert last_gain(flat, PANEL) == 1 and pick_best(flat, PANEL) == 4
    params = tiny(train={"stop": {"patience": 3}})
    progress = type("P", (), {"evals": flat})()
    assert "no swd gain beyond its spread in 3 evaluations (the last at 20 kimg" in plateaued(progress, params.train)
    progress.evals = flat[:4]
    assert plateaued(progress, params.train) is None


def _sweep_run(root, name: str, seed: int, rows: list[dict[str, float]]):
    """A run folder as scripts/sweep.py leaves it: params, eval_history.csv, timing.csv."""
    import csv

    import yaml

    run = root / name / "icons-20"
    (run / "reports/train").mkdir(parents=True)
    params = {"prepare": {"source": "/data/icons-20"}, "model": {"discriminator": "dcgan"}, "train": {"seed": seed}}
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    with open(run / "reports/train/eval_history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (run / "reports/train/timing.csv").write_text("kimg,seconds\n30,600\n")
    return run


def test_the_quality_table_keeps_each_runs_panel_pick_and_spreads_over_seeds(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("panel_table", Path(__file__).parents[1] / "scripts/panel_table.py")
    table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(table)
    rest = {"swd_floor": 50.0, "ndb_floor": 0.05, "swd_16px": 70.0, "ndb": 0.1, "precision": 0.2, "recall": 0.1}
    rest["copy_share"], rest["attr_tv_mean"] = 0.0, 0.125
    # seed 0: fd halves at the last evaluation while swd worsens: the table must keep evaluation 2, not 3
    seed0 = [
        {**e, "fd_ratio": e["fd"] / 100, "swd_ratio": e["swd"] / 50, **rest}
        for e in _history([(60.0, 400.0), (45.0, 300.0), (70.0, 150.0)])
    ]
    seed1 = [{**e, "fd_ratio": e["fd"] / 100, "swd_ratio": e["swd"] / 50, **rest} for e in _history([(55.0, 200.0)])]
    runs = [table.run_row(_sweep_run(tmp_path, f"dcgan-s{s}", s, rows), {}) for s, rows in ((0, seed0), (1, seed1))]
    assert [(r["pick"], r["swd"], r["fd_ratio"], r["last"]) for r in runs] == [
        (20.0, 45.0, 3.0, False),
        (10.0, 55.0, 2.0, True),
    ]
    summary = table.tables(runs).splitlines()[-1]
    assert "| 0.125 ± 0.000 |" in summary  # the demo's attribute mix, where the runs have it
    # mean and sample standard deviation over the two seeds: swd 50 +- 7.07, fd_ratio 2.5 +- 0.71
    assert summary.startswith("| icons-20 | dcgan | 2 | 30 | 10 ± 0 | 2.50 ± 0.71 | 50.0 ± 7.1 | 1.00 ± 0.14 |")
