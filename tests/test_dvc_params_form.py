"""params.yaml is kept in the form DVC writes back, so `dvc exp run -S key=value` changes one line.

`dvc exp run -S` / `--queue -S` update the params file through ``dvc.utils.hydra.apply_overrides``
(called by ``BaseStashQueue._update_params``): it reads the file with ruamel's round-trip loader,
applies the Hydra overrides on an OmegaConf copy, merges the result back and dumps with
``default_flow_style=False``. Every list comes back as a new plain list (block style, and a comment
line below it is lost), every null as an empty value, ``""`` as ``''``. A file in another form
turns a one-key override into a diff of the whole file (39 lines for the flow-style file before).
"""

import difflib
import inspect
from pathlib import Path

import pytest
import yaml

from ganlab.params import Params, flatten, load_params
from tests.conftest import committed, committed_copy


def apply_dash_s(path: Path, override: str) -> list[str]:
    """What `dvc exp run -S override` does to the file, in process; returns the changed lines (- and +)."""
    from dvc.utils.hydra import apply_overrides

    before = path.read_text().splitlines()
    apply_overrides(path, [override])
    after = path.read_text().splitlines()
    return [
        line
        for line in difflib.unified_diff(before, after, lineterm="", n=0)
        if not line.startswith(("---", "+++", "@@"))
    ]


@pytest.fixture
def params_copy(tmp_path) -> Path:
    return committed_copy("params.yaml", tmp_path)


def test_apply_overrides_is_what_dash_s_runs():
    """Without Hydra composition enabled (this project has none), every `exp run -S` goes through it."""
    from dvc.repo.experiments.queue.base import BaseStashQueue

    assert "apply_overrides(path, overrides)" in inspect.getsource(BaseStashQueue._update_params)


def test_dvc_rewrites_the_file_unchanged(params_copy):
    # an override to the value already there: DVC still rewrites the whole file
    assert apply_dash_s(params_copy, "train.lr=0.001") == []


@pytest.mark.parametrize(
    "override, key, value, old, new",
    [
        ("train.lr=0.002", "train.lr", 0.002, "  lr: 0.001 ", "  lr: 0.002 "),
        ("train.stop.minutes=5", "train.stop.minutes", 5, "    minutes: ", "    minutes: 5 "),
        ("train.betas.0=0.6", "train.betas", [0.6, 0.999], "  - 0.5", "  - 0.6"),
        ("prepare.image_size=128", "prepare.image_size", 128, "  image_size: 64 ", "  image_size: 128 "),
        (
            "evaluate.inception_weights=download",
            "evaluate.inception_weights",
            "download",
            "  inception_weights: '' ",
            "  inception_weights: download ",
        ),
        (
            "latent_study.features={3:60.0,123:-50.0}",
            "latent_study.features.3",
            60.0,
            "  features: {3: 50.0, ",
            "  features: {3: 60.0, ",
        ),
    ],
)
def test_one_override_changes_one_line(params_copy, override, key, value, old, new):
    diff = apply_dash_s(params_copy, override)
    assert len(diff) == 2, "\n".join(diff)
    assert diff[0].startswith("-" + old) and diff[1].startswith("+" + new), "\n".join(diff)
    # the comment stays on the line
    assert diff[0].split("#", 1)[1:] == diff[1].split("#", 1)[1:]
    # and the file still parses, with that one key changed
    shipped, changed = flatten(Params()), flatten(load_params(params_copy))
    assert changed[key] == value
    assert {k for k in shipped if shipped[k] != changed[k]} == {key}


@pytest.mark.parametrize("key", ["prepare.background", "train.diffaugment", "train.betas", "latent_study.one_hot_dims"])
def test_a_list_emptied_by_dvc_stays_valid_yaml(params_copy, key):
    # with a list's comment on its key's line, DVC wrote `train.diffaugment=[]` as `diffaugment: []`
    # followed by `betas: -` and its items on the next lines: no longer YAML
    section, name = key.split(".")
    diff = apply_dash_s(params_copy, f"{key}=[]")
    assert diff[-1] == f"+  {name}: []" and all(line.startswith("-  ") for line in diff[:-1]), "\n".join(diff)
    before, after = yaml.safe_load(committed("params.yaml")), yaml.safe_load(params_copy.read_text())
    before[section][name] = []
    assert after == before
