"""Distances in ImageNet features mean what they say: exact formulas, and calibrated on real
images (the demo faces) against blur, noise and a collapsed generator."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ganlab.data.dataset import to_tensor
from ganlab.data.demo_faces import draw_face, sample_labels
from ganlab.metrics.evaluator import Reference, feature_scores
from ganlab.metrics.features import FeatureNet, features
from ganlab.metrics.scores import frechet_distance, kernel_distance, memorisation, precision_recall


def _sqrtm_psd(m: torch.Tensor) -> torch.Tensor:
    w, v = torch.linalg.eigh(m)
    return v @ torch.diag(w.clamp(min=0).sqrt()) @ v.T


def test_frechet_distance_matches_the_matrix_square_root_formula():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(300, 8, generator=g, dtype=torch.float64)
    b = (
        torch.randn(200, 8, generator=g, dtype=torch.float64)
        @ torch.randn(8, 8, generator=g, dtype=torch.float64)
        * 0.5
        + 1
    )
    sa, sb = torch.cov(a.T), torch.cov(b.T)
    root = _sqrtm_psd(sa)
    expected = (a.mean(0) - b.mean(0)).square().sum() + torch.trace(sa + sb - 2 * _sqrtm_psd(root @ sb @ root))
    assert frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-9)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_kernel_distance_is_unbiased_and_grows_with_the_shift():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    same, same_std = kernel_distance(a, b, subsets=50, subset_size=200)
    shifted, _ = kernel_distance(a, b + 0.5, subsets=50, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3 and shifted > 10 * abs(same)


def test_precision_and_recall_on_known_sets():
    g = torch.Generator().manual_seed(2)
    real = torch.randn(300, 4, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    collapsed = real[:1].repeat(300, 1) + 1e-3 * torch.randn(300, 4, generator=g)  # one sample, repeated
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.05
    far = torch.randn(300, 4, generator=g) + 10
    assert precision_recall(real, far) == (0.0, 0.0)


@pytest.fixture(scope="module")
def faces() -> torch.Tensor:
    """400 demo faces at 64 px in [-1, 1]: 200 for the reference, 200 held out as "a perfect generator"."""
    import numpy as np

    labels, rng = sample_labels(400, seed=3)
    return to_tensor(np.stack([draw_face(label, rng, 64) for label in labels])).float()


@pytest.fixture(scope="module")
def net() -> FeatureNet:
    return FeatureNet()


@pytest.mark.slow
def test_calibration_on_real_images(faces, net):
    """Held-out faces score near the floor; blurred faces further; noise furthest. A collapsed
    generator (one face repeated) is caught by fd and recall, not by nn_ratio."""
    ref = Reference(features(net, faces[:200]))
    held_out = features(net, faces[200:])
    blurred = features(net, F.avg_pool2d(faces[200:], 4).repeat_interleave(4, 2).repeat_interleave(4, 3))
    noise = features(net, torch.rand(200, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1)
    collapsed = features(net, faces[200:201].repeat(200, 1, 1, 1))
    scores = {
        name: feature_scores(f, ref)[0]
        for name, f in {"held_out": held_out, "blurred": blurred, "noise": noise, "collapsed": collapsed}.items()
    }
    floor = scores["held_out"]["fd_floor"]
    assert (
        scores["held_out"]["fd"] < floor + 3 * scores["held_out"]["fd_std"]
    )  # fresh draws of the data score at the floor
    assert scores["held_out"]["fd"] < scores["blurred"]["fd"] < scores["noise"]["fd"]
    assert scores["blurred"]["fd_ratio"] > 3 and scores["noise"]["fd_ratio"] > 10
    assert scores["collapsed"]["fd_ratio"] > 10 and scores["collapsed"]["recall"] < 0.05 < scores["held_out"]["recall"]
    assert scores["held_out"]["precision"] > 0.5 and scores["held_out"]["recall"] > 0.5
    # in pixel space a collapsed generator looks "as novel as real data": nn_ratio misses it
    nn_ratio = memorisation(faces[200:201].repeat(200, 1, 1, 1), faces[:200])[0]["nn_ratio"]
    assert 0.7 < nn_ratio < 1.5
    assert 5 < floor < 100, floor  # the band this network and these faces give at 100 samples (README)


@pytest.mark.slow
def test_a_small_set_says_its_figures_are_noise(faces, net):
    ref = Reference(features(net, faces[:40]))
    metrics, notes = feature_scores(features(net, faces[200:240]), ref)
    assert metrics["fd_samples"] == 20 and metrics["fd_dims"] == 5 and "rough" in notes["fd"]


@pytest.mark.slow
def test_reference_features_are_reused_only_for_the_same_images(tmp_path, faces, net, capsys):
    from ganlab.io import checkpoint
    from ganlab.metrics.features import INPUT_SIZE, NAME, reference_features

    path = tmp_path / "features.pt"
    stored = torch.zeros(3, 1280)
    checkpoint.save({"features": stored, "network": NAME, "input_size": INPUT_SIZE, "dataset_sha256": "abc"}, path)
    assert torch.equal(reference_features(net, path, faces[:3], "abc"), stored)
    fresh = reference_features(net, path, faces[:3], "other images")
    assert "computing the features again" in capsys.readouterr().out and torch.allclose(fresh, features(net, faces[:3]))


def test_a_tampered_weights_file_is_refused(tmp_path):
    import os

    from ganlab.errors import UserError

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    torch.save({"_conv_stem.weight": Exploit()}, tmp_path / "evil.pth")
    with pytest.raises(UserError, match="refused to load"):
        FeatureNet(weights=tmp_path / "evil.pth")
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.slow
def test_too_few_images_give_undefined_figures_not_a_crash(faces, net):
    import math

    metrics, notes = feature_scores(features(net, faces[200:264]), Reference(features(net, faces[:3])))
    assert math.isnan(metrics["fd"]) and math.isnan(metrics["recall"]) and "fewer than 8 images" in notes["fd"]
