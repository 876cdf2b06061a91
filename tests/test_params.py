"""Every kind of params mistake is one line that names the key."""

import pytest

from ganlab.errors import UserError
from ganlab.params import Params, flatten, load_params, parse_params
from tests.conftest import committed_copy


def error(raw) -> str:
    with pytest.raises(UserError) as e:
        parse_params(raw)
    return str(e.value)


def test_project_params_file_is_valid(tmp_path):
    p = load_params(committed_copy("params.yaml", tmp_path))
    assert p.prepare.source == "demo"


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"train": {"epochs": "many"}}, "train.epochs: Input should be a valid integer"),
        ({"train": {"epochs": True}}, "train.epochs: expected a number, not yes/no (got True)"),  # YAML's `epochs: yes`
        ({"train": {"lr": False}}, "train.lr: expected a number, not yes/no (got False)"),
        ({"prepare": {"source": ""}}, "prepare.source: must be 'demo' or a folder of images"),
        (
            {"sample": {"seed": 2**64}},
            "sample.seed: Input should be less than 4611686018427387904",
        ),  # torch seeds are 64-bit
        ({"train": {"seed": -1}}, "train.seed: Input should be greater than or equal to 0"),
        ({"train": {"lr": -1}}, "train.lr: Input should be greater than 0 (got -1)"),
        ({"train": {"batch_size": 0}}, "train.batch_size: Input should be greater than or equal to 1 (got 0)"),
        ({"prepare": {"image_size": 100}}, "prepare.image_size: must be one of [32, 64, 128, 256] (got 100)"),
        ({"device": "tpu"}, "device: Input should be 'auto', 'cpu' or 'cuda'"),
        ({"train": {"betas": [0.5, 1.0]}}, "train.betas: each beta must be in [0, 1)"),
        ({"video": {"codec": "H264X"}}, "video.codec: must be a four-character code"),
        ({"prepare": {"background": [0, 0, 300]}}, "prepare.background: each channel must be in 0..255"),
        ({"trian": {}}, "trian: unknown key; did you mean 'train'?"),
        ({"train": {"learning_rate": 1}}, "train.learning_rate: unknown key"),
        (
            {"latent_study": {"sweep": {"dimm": 1}}},
            "latent_study.sweep.dimm: unknown key; did you mean 'latent_study.sweep.dim'?",
        ),
        ({"latent_study": {"one_hot_dims": [128]}}, "latent_study.one_hot_dims: dimension 128 is outside 0..127"),
        (
            {
                "model": {"latent_size": 16},
                "latent_study": {"one_hot_dims": [], "sweep": {"dim": 0}, "features": {20: 50}},
            },
            "latent_study.features: dimension 20 is outside 0..15",
        ),
        ({"model": {"latent_size": 0}}, "model.latent_size: Input should be greater than or equal to 1 (got 0)"),
        ({"model": {"g_width": -8}}, "model.g_width: Input should be greater than or equal to 1 (got -8)"),
        ({"prepare": {"image_size": -64}}, "prepare.image_size: must be one of"),
        (
            {"train": {"diffaugment": ["blur"]}},
            "train.diffaugment.0: Input should be 'color', 'translation' or 'cutout'",
        ),
        ({"train": {"best_metric": "accuracy"}}, "train.best_metric: Input should be 'panel', 'swd', 'ndb', 'fd'"),
        ({"train": {"ema": 1.0}}, "train.ema: Input should be less than 1"),
        ({"generator": "middle"}, "generator: Input should be 'best' or 'last'"),
        (
            {"tracking": {"experiment": "x" * 300}},
            "tracking.experiment: String should have at most 200 characters",
        ),  # was OSError after training
        ([1, 2], "expected a mapping"),
    ],
)
def test_each_mistake_names_its_key(raw, expected):
    message = error(raw)
    assert message.startswith("params.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_yaml_style_numbers_are_accepted():
    assert parse_params({"train": {"lr": "2e-4"}}).train.lr == 2e-4  # YAML 1.1 reads 2e-4 as a string


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(UserError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: [\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_params(bad)


def test_flatten_gives_dotted_keys():
    flat = flatten(Params())
    assert flat["train.lr"] == 1e-3 and flat["latent_study.sweep.dim"] == 3 and flat["prepare.demo.count"] > 0
