"""gan evaluate's plain-language verdict says what the numbers say, and says when it cannot.

The three failures it tells apart are built from real-looking images (the procedural demo faces)
and scored by the evaluation's own code, so that the verdict is checked against what the metrics
really give for blur, for collapse and for copies, not against numbers written by hand."""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ganlab.data.dataset import to_tensor
from ganlab.data.demo_faces import draw_face, sample_labels
from ganlab.metrics import pixels
from ganlab.metrics import verdict as rules
from ganlab.metrics.evaluator import Reference, feature_scores, pixel_scores
from ganlab.metrics.features import FeatureNet, features
from ganlab.metrics.scores import memorisation
from ganlab.metrics.verdict import verdict

DEMO = {  # reports/metrics.json of a default run: varied samples, blurred and blotchy
    "swd_ratio": 2.47,
    "ndb": 0.40,
    "ndb_floor": 0.03,
    "fd_ratio": 16.9,
    "precision": 0.0,
    "recall": 0.002,
    "nn_ratio": 1.13,
    "copy_share": 0.0,
    "fid": None,
}
HEALTHY = {**DEMO, "swd_ratio": 1.2, "fd_ratio": 1.5, "ndb": 0.04, "precision": 0.85, "recall": 0.7, "nn_ratio": 1.0}


@pytest.fixture(scope="module")
def panels() -> dict[str, dict[str, float]]:
    """The panel of three built sample sets against 200 demo faces at 32 px, each set 200 images:

    - blurred: 200 other faces, blurred 2x and blotched with smooth colour noise (a generator
      that draws every kind of face, badly);
    - tenth: 20 other faces, each drawn 10 times (a generator that knows a tenth of the set);
    - copies: the training faces themselves.

    fd and swd are measured as ``gan evaluate`` measures them, swd on fewer neighbourhoods and
    projections (as in test_metrics.py): the same code, in a second. Features are computed once
    per distinct image (a repeated image has the same features)."""
    labels, rng = sample_labels(400, seed=3)
    faces = to_tensor(np.stack([draw_face(label, rng, 32) for label in labels])).float()
    real, fresh = faces[:200], faces[200:]
    g = torch.Generator().manual_seed(0)
    blotches = F.interpolate(torch.randn(200, 3, 4, 4, generator=g), size=32, mode="bilinear", align_corners=False)
    blurred = (F.avg_pool2d(fresh, 2).repeat_interleave(2, 2).repeat_interleave(2, 3) + blotches).clamp(-1, 1)
    net = FeatureNet()
    ref = Reference(features(net, real))

    def panel(samples: torch.Tensor, feats: torch.Tensor) -> dict[str, float]:
        metrics = feature_scores(feats, ref)[0]
        metrics.update(pixel_scores(samples, real, ref))
        metrics.update(memorisation(samples, real)[0])
        return metrics

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pixels, "NHOODS_PER_IMAGE", 16)
        patch.setattr(pixels, "DIRS_PER_REPEAT", 32)
        return {
            "blurred": panel(blurred, features(net, blurred)),
            "tenth": panel(fresh[:20].repeat(10, 1, 1, 1), features(net, fresh[:20]).repeat(10, 1)),
            "copies": panel(real, ref.features),
        }


def _uneven(m: dict[str, float]) -> bool:
    return m["ndb"] > rules.NDB_MARGIN * max(m["ndb_floor"], rules.NDB_LEAST_FLOOR)


def test_blurred_blotchy_samples_are_called_a_fidelity_failure_not_collapse(panels):
    m = panels["blurred"]
    # the case the old verdict called mode collapse: no sample on your images' manifold, ndb high, recall ~0
    assert m["precision"] < rules.LOW_PRECISION and _uneven(m) and m["recall"] < rules.LOW_RECALL
    _, fidelity, copies, coverage = verdict(m)
    assert fidelity.startswith("fidelity: the samples are unlike your images (blur, blotches or artifacts)")
    assert f"precision {m['precision']:.2f}" in fidelity
    assert coverage.startswith("coverage: not judged") and "not mode collapse" in coverage
    assert "they miss" not in coverage and copies.startswith("copies: none found")


def test_a_tenth_of_the_images_repeated_is_called_collapse_not_fidelity(panels):
    m = panels["tenth"]
    assert m["precision"] >= rules.FAIR_PRECISION and _uneven(m) and m["copy_share"] == 0
    _, fidelity, copies, coverage = verdict(m)
    assert fidelity.startswith("fidelity: the samples lie among your images")
    assert coverage.startswith("coverage: they miss most of your set (mode collapse")
    assert f"ndb {m['ndb']:.2f}" in coverage and f"recall {m['recall']:.2f}" in coverage
    assert copies.startswith("copies: none found")


def test_the_training_images_themselves_are_called_near_copies(panels):
    m = panels["copies"]
    _, fidelity, copies, coverage = verdict(m)
    assert copies.startswith("copies: 100% of the samples") and "near-copies, memorisation" in copies
    assert f"nn_ratio {m['nn_ratio']:.2f}" in copies
    assert fidelity.startswith("fidelity: the samples lie among your images") and "evenly" in coverage


def test_the_default_run_is_called_far_and_unlike_your_images_not_collapsed_nor_copying():
    far, fidelity, copies, coverage = verdict(DEMO)
    assert "2.5x on the pixels" in far and "16.9x in ImageNet features" in far
    assert fidelity.startswith("fidelity: the samples are unlike your images") and "precision 0.00" in fidelity
    assert copies.startswith("copies: none found (0% near-copies; nn_ratio 1.13")
    assert coverage.startswith("coverage: not judged") and "floor 0.03" in coverage and "recall 0.00" in coverage


def test_each_cut_off_moves_the_line_it_names():
    assert "many samples are unlike" in verdict({**HEALTHY, "precision": 0.4})[1]
    assert "lie among your images" in verdict(HEALTHY)[1] and "evenly" in verdict(HEALTHY)[3]
    # with samples like your images, a high ndb or a low recall is coverage
    assert "they miss or over-draw parts" in verdict({**HEALTHY, "ndb": 0.3})[3]
    assert "few of your images have a sample near them" in verdict({**HEALTHY, "recall": 0.01})[3]
    assert "they miss most of your set" in verdict({**HEALTHY, "ndb": 0.3, "recall": 0.01})[3]
    # unlike your images but spread as evenly as they are: coverage is still said
    assert "evenly" in verdict({**HEALTHY, "precision": 0.1})[3]
    assert verdict({**HEALTHY, "copy_share": 0.4, "nn_ratio": 0.3})[2].startswith("copies: 40% of the samples")


def test_missing_numbers_are_said_not_invented():
    tiny = {"swd_ratio": math.nan, "fd_ratio": None, "copy_share": math.nan, "nn_ratio": math.nan}
    assert verdict(tiny) == [
        "how far: not measurable (too few images for a floor)",
        "fidelity: not measurable (too few images for precision)",
        "copies: not measurable (fewer than two training images)",
        "coverage: not measurable",
    ]
    assert json.dumps(verdict(DEMO))  # plain strings
