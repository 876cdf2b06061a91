"""The evaluation numbers mean what they say."""

from pathlib import Path

import pytest
import torch
from torch import nn

from ganlab import layout
from ganlab.data.demo_faces import ATTRIBUTES, read_labels
from ganlab.io import checkpoint
from ganlab.metrics.attributes import fit
from ganlab.metrics.scores import fid_kid, memorisation, total_variation
from stages import prepare
from tests.conftest import tiny


@pytest.mark.slow
def test_attribute_classifier_beats_chance_by_a_wide_margin(workdir):
    prepare.run(tiny(prepare={"image_size": 64, "demo": {"count": 600, "seed": 5}}))
    data = checkpoint.load(layout.DATASET)
    _, accuracy = fit(data["images"], read_labels(layout.DEMO_IMAGES, data["files"]), torch.device("cpu"))
    for attribute, values in ATTRIBUTES.items():
        chance = 1 / len(values)
        assert accuracy[attribute] > chance, (attribute, accuracy[attribute])
    assert sum(accuracy.values()) / len(accuracy) > 0.75  # mean chance is 0.37


def test_memorisation_flags_a_generator_that_returns_training_images():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(200, 3, 16, 16, generator=g) * 2 - 1
    copies, _ = memorisation(real[:50] + 0.001 * torch.randn(50, 3, 16, 16, generator=g), real)
    assert copies["copy_share"] == 1.0 and copies["nn_ratio"] < 0.05
    fresh, _ = memorisation(torch.rand(50, 3, 16, 16, generator=g) * 2 - 1, real)  # new draws of the same distribution
    assert fresh["copy_share"] == 0.0 and 0.8 < fresh["nn_ratio"] < 1.2


def test_total_variation():
    assert total_variation(torch.tensor([0.5, 0.5]), torch.tensor([0.5, 0.5])) == 0
    assert total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == 1


class StandIn(nn.Module):
    """A tiny fixed feature network in place of InceptionV3 (never downloaded in tests)."""

    num_features = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.net(x.float() / 255 if x.dtype == torch.uint8 else x)


def test_fid_code_path_with_a_stand_in_feature_network():
    g = torch.Generator().manual_seed(0)
    real = torch.rand(120, 3, 32, 32, generator=g) * 2 - 1
    same, reason = fid_kid(real[60:], real[:60], "", feature=StandIn(), kid_subset=50)
    shifted, _ = fid_kid((real[60:] * 0.3 + 0.5).clamp(-1, 1), real[:60], "", feature=StandIn(), kid_subset=50)
    assert reason == "" and set(same) == {"fid", "inception_kid", "inception_kid_std"}
    assert 0 <= same["fid"] < shifted["fid"] and same["inception_kid"] < shifted["inception_kid"]


def test_fid_is_unavailable_offline_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty download cache
    real = torch.zeros(4, 3, 32, 32)
    scores, reason = fid_kid(real, real, "")
    assert scores == {} and "InceptionV3 weights not found" in reason and "evaluate.inception_weights" in reason
    scores, reason = fid_kid(real, real, str(tmp_path / "missing.pth"))
    assert scores == {} and "does not exist" in reason


@pytest.mark.slow
def test_a_one_image_data_set_gives_strict_json_with_undefined_numbers_as_null(workdir):
    """A 1-image data set wrote `Infinity` into metrics.json, which no strict JSON parser reads."""
    import json

    from PIL import Image

    from stages import evaluate, features, train

    Path("one").mkdir()
    Image.new("RGB", (40, 40), (200, 30, 30)).save("one/only.png")
    params = tiny(prepare={"source": "one"}, train={"kimg": 0.032, "eval_kimg": 0.016}, evaluate={"samples": 16})
    for stage in (prepare, features, train, evaluate):
        stage.run(params)

    def refuse(constant):
        raise ValueError(f"not strict JSON: {constant}")

    for path in (layout.METRICS, layout.EVALUATE / "metrics_detail.json"):
        values = json.loads(path.read_text(), parse_constant=refuse)
        assert all(v is None or isinstance(v, (float, int)) for v in values.values())  # numbers only
    assert json.loads(layout.METRICS.read_text())["fd_floor"] is None  # two halves of one image: undefined


def test_reports_hold_numbers_only_with_the_reasons_apart(workdir):
    """metrics.json said "fid": "unavailable" and eval_history.csv said nan: a string in a column
    of numbers. Missing numbers are null (JSON) or empty (CSV); the reasons are in notes.json."""
    import csv
    import json
    import math

    from ganlab.hooks import write_evals
    from ganlab.render.plots import plot_curves
    from stages.evaluate import _json

    assert json.loads(_json({"fd": 1.25, "fid": None, "fd_floor": math.nan, "fd_ratio": math.inf})) == {
        "fd": 1.25,
        "fid": None,
        "fd_floor": None,
        "fd_ratio": None,
    }
    write_evals([{"kimg": 0.016, "fd": math.nan, "fd_ratio": math.inf}, {"kimg": 0.032, "fd": 2.5, "fd_ratio": 1.5}])
    assert layout.EVAL_HISTORY.read_text().splitlines() == ["kimg,fd,fd_ratio", "0.016,,", "0.032,2.5,1.5"]
    layout.HISTORY.write_text("kimg,loss_d,loss_g\n0.016,1.0,0.5\n0.032,0.9,0.6\n")
    plot_curves(layout.HISTORY, layout.EVAL_HISTORY, Path("curves.png"))  # an empty cell is a gap in the line
    assert Path("curves.png").stat().st_size > 0 and list(csv.DictReader(layout.EVAL_HISTORY.open()))[0]["fd"] == ""
