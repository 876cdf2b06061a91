"""Params that validate run, hostile params files end in one line, and the low-severity rest
(outputs as a source, NaN latents, one image, a kill mid-prepare)."""

import itertools
import time
import tracemalloc
from pathlib import Path

import pytest
import torch
import yaml

from ganlab.errors import UserError
from ganlab.params import TrainParams, load_params, parse_params
from ganlab.training.clock import Clock
from tests.conftest import committed_copy, tiny


def refused(path) -> str:
    with pytest.raises(UserError) as e:
        load_params(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


# --- params that validate must not blow up later ---------------------------------------


@pytest.mark.parametrize(
    "train",
    [
        {"kimg": 1e9},  # a MemoryError at 3 GB, listing every tick
        {"kimg": 1e9, "batch_size": 1, "tick_kimg": 0.001, "checkpoint_kimg": 0.001, "eval_kimg": 0.001, "grids": 500},
        {"epochs": 1_000_000, "batch_size": 1},
    ],
)
def test_a_run_of_any_allowed_length_starts_its_first_step_in_seconds(train):
    tracemalloc.start()
    start = time.perf_counter()
    c = Clock.of(TrainParams(**train), 1000)
    first = list(itertools.islice(c.stops(after=0), 20))
    due = [s in c.ticks for s in first], [s in c.checkpoints for s in first], [s in c.evals for s in first]
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.perf_counter() - start < 2 and peak < 10 * 2**20
    assert first == sorted(set(first)) and first[0] >= 1 and any(due[0]) and c.total in c.ticks and c.total in c.grids
    assert list(c.stops(after=c.total - 1)) == [c.total]


@pytest.mark.parametrize(
    "yaml_train, expected",
    [
        ("{kimg: .inf}", "train.kimg: Input should be a finite number (got inf)"),  # passed, then OverflowError
        ("{kimg: .nan}", "train.kimg: Input should be a finite number (got nan)"),
        ("{kimg: 1.0e+10}", "train.kimg: Input should be less than or equal to 1000000000 (got 10000000000.0)"),
        ("{epochs: 10000000000}", "train.epochs: Input should be less than or equal to 1000000 (got 10000000000)"),
        (
            "{tick_kimg: 1.0e-9}",
            "train.tick_kimg: must be at least 0.001 (one image); anything up to one step's images is due at every step (got 1e-09)",
        ),  # hung
        ("{checkpoint_kimg: 1.0e-12}", "train.checkpoint_kimg: must be at least 0.001 (one image)"),  # hung
        ("{eval_kimg: 1.0e-300}", "train.eval_kimg: must be at least 0.001 (one image)"),
        ("{stop: {minutes: .inf}}", "train.stop.minutes: Input should be a finite number (got inf)"),
        ("{eval_samples: 1000000000}", "train.eval_samples: Input should be less than or equal to 50000"),
        ("{batch_size: 1000000000}", "train.batch_size: Input should be less than or equal to 4096"),
        (
            "{diffaugment: [color, cutout, color]}",
            "train.diffaugment: each transform at most once (a repeat applies it again to every batch)",
        ),
    ],
)
def test_lengths_and_cadences_that_cannot_run_are_refused_in_one_line(tmp_path, yaml_train, expected):
    path = tmp_path / "params.yaml"
    path.write_text(f"train: {yaml_train}\n")
    assert expected in refused(path)


def test_a_cadence_shorter_than_a_step_is_due_at_every_step():
    c = Clock.of(TrainParams(kimg=0.064, batch_size=16, tick_kimg=0.001, checkpoint_kimg=0.001, eval_kimg=0.001), 40)
    assert list(c.stops(after=0)) == [1, 2, 3, 4] and all(s in c.ticks and s in c.evals for s in (1, 2, 3, 4))
    assert list(c.checkpoints) == [1, 2, 3]  # the end writes the final checkpoint


# --- a params file can be hostile ------------------------------------------------------


def laughs(levels: int) -> str:
    """'Billion laughs' as train.kimg: each level an anchor of ten aliases of the one before."""
    items = ["    - &l0 [lol]"] + [f"    - &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "train:\n  kimg:\n" + "\n".join(items) + "\n"


def test_an_alias_bomb_is_refused_in_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(laughs(6))  # 10^6 items quoted whole in the message (9 levels: hung past 2 GB)
    start = time.perf_counter()
    message = refused(path)
    assert time.perf_counter() - start < 2 and len(message) < 300, message[:300]
    assert message == f"{path}: line 4: YAML aliases (*l0) are not accepted in a params file; write the value out"


def test_an_error_message_quotes_a_bounded_excerpt_of_the_value():
    bomb = ["lol"]
    for _ in range(6):
        bomb = [bomb] * 10  # shared, as an alias bomb parses: 10^6 items
    for raw in ({"train": {"kimg": bomb}}, {"train": {"kimg": "x" * 10**6}}, {"latent_study": {"constants": [bomb]}}):
        start = time.perf_counter()
        with pytest.raises(UserError) as e:
            parse_params(raw)
        message = str(e.value)
        assert time.perf_counter() - start < 2
        assert len(message) < 200 and "\n" not in message and message.endswith("…)"), message[:300]


@pytest.mark.parametrize("depth", [50, 50000])
def test_deep_nesting_is_refused_in_one_line(tmp_path, depth):
    path = tmp_path / "params.yaml"
    path.write_text("train: {kimg: " + "[" * depth + "]" * depth + "}\n")  # 50000: a RecursionError traceback
    assert refused(path) == f"{path}: line 1: nested deeper than 32 levels"


def test_a_file_over_a_megabyte_is_refused_unread(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# padding\n" * 200_000)
    assert "a params file is at most 1048576 bytes" in refused(path)


def test_duplicate_yaml_keys_are_refused_naming_the_key_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.001\n  kimg: 2\n  lr: 0.5\n")  # silently trained at lr 0.5
    assert refused(path) == (
        f"{path}: train.lr: duplicate key at line 4 (first at line 2); YAML would keep the last silently"
    )
    path.write_text("train: {kimg: 1}\nmodel: {}\ntrain: {kimg: 2}\n")
    assert refused(path).startswith(f"{path}: train: duplicate key at line 3 (first at line 1)")


def test_the_shipped_params_file_loads_through_the_hardened_loader(tmp_path):
    p = load_params(committed_copy("params.yaml", tmp_path))
    assert p.train.kimg > 0


# --- the low-severity rest -------------------------------------------------------------


@pytest.mark.parametrize(
    "latent_study, expected",
    [
        ({"constants": [0.0, float("nan")]}, "latent_study.constants.1: Input should be a finite number (got nan)"),
        ({"features": {3: float("inf")}}, "latent_study.features.3: Input should be a finite number (got inf)"),
        ({"sweep": {"stop": float("-inf")}}, "latent_study.sweep.stop: Input should be a finite number (got -inf)"),
    ],
)
def test_nan_or_inf_in_latent_study_is_refused_naming_the_key(latent_study, expected):
    with pytest.raises(UserError) as e:
        parse_params({"latent_study": latent_study})
    assert str(e.value) == f"params.yaml: {expected}"


@pytest.mark.parametrize("source", ["data/prepared", "data/prepared/demo", "models", "reports/train", ".", "data"])
def test_prepare_source_inside_or_holding_the_outputs_is_refused(workdir, source):
    from PIL import Image

    from stages import prepare

    for folder in ("data/prepared/demo", "models", "reports/train", "data/raw"):
        Path(folder).mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (200, 30, 30)).save(
        Path(source) / "last_run.png"
    )  # an earlier run's output, read as an image
    with pytest.raises(UserError) as e:
        prepare.run(parse_params({"prepare": {"source": source, "image_size": 32}}))
    assert str(e.value).startswith(
        f"prepare.source: '{source}' overlaps the project's outputs ("
    ) and "data/raw/" in str(e.value)


def test_memorisation_on_a_one_image_set_is_undefined_not_a_perfect_copy_score():
    import math

    import torch

    from ganlab.metrics.scores import memorisation

    generated, real = torch.rand(16, 3, 8, 8), torch.rand(1, 3, 8, 8)
    scores, table = memorisation(generated, real)  # was nn_ratio 0 and copy_share 1: "every sample a copy"
    assert (
        math.isnan(scores["nn_ratio"])
        and math.isnan(scores["copy_share"])
        and math.isnan(scores["nn_dist_real_median"])
    )
    assert scores["nn_dist_gen_median"] > 0 and table.shape == (16, 2)
    two, _ = memorisation(generated, torch.rand(2, 3, 8, 8))
    assert math.isfinite(two["nn_ratio"]) and 0 <= two["copy_share"] <= 1


def one_image_project(workdir, **train):
    from PIL import Image

    from stages import prepare

    Path("one").mkdir()
    Image.new("RGB", (40, 40), (200, 30, 30)).save("one/only.png")
    params = tiny(prepare={"source": "one"}, model={"discriminator": "dcgan"}, train=train)
    prepare.run(params)
    return params


def test_nproc_more_than_the_images_of_a_step_is_refused_before_the_processes_start(workdir):
    from typer.testing import CliRunner

    from stages.cli import app

    params = one_image_project(workdir)
    Path("params.yaml").write_text(yaml.safe_dump(params.model_dump(mode="json")))
    result = CliRunner().invoke(app, ["train", "--nproc", "2"])  # was: 2 processes, then "loss_d became nan"
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "error: train --nproc 2: a step shows 1 image (1 in data/prepared/manifest.json, train.batch_size 16), "
        "fewer than the processes that share it; use --nproc 1"
    ]
    assert not Path("models/checkpoint.pt").exists()


def test_a_damaged_attribute_classifier_stops_training_before_the_mlflow_run_opens(workdir):
    from mlflow.tracking import MlflowClient

    from ganlab import layout
    from stages import train

    params = one_image_project(workdir, eval_kimg=0.016)
    layout.ATTRIBUTES.parent.mkdir(parents=True, exist_ok=True)
    layout.ATTRIBUTES.write_bytes(b"not a weights file")
    with pytest.raises(UserError, match=r"^models/attributes.pt: "):
        train.run(params)
    client = MlflowClient("sqlite:///mlflow.db")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs == [] and not layout.RUN_INFO.exists()  # was: an MLflow run opened, then marked FAILED


def test_a_kill_between_the_dataset_and_manifest_renames_leaves_no_stale_manifest(workdir, monkeypatch):
    from ganlab import layout
    from ganlab.data.dataset import dataset_sha
    from stages import prepare

    def demo(count: int):
        return parse_params({"prepare": {"image_size": 32, "demo": {"count": count}}})

    prepare.run(demo(20))
    real_write = prepare.write_text

    def killed_at_the_manifest(target, text):
        if Path(target) == layout.MANIFEST:
            raise KeyboardInterrupt  # SIGKILL after dataset.pt's rename, before manifest.json's
        real_write(target, text)

    monkeypatch.setattr(prepare, "write_text", killed_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        prepare.run(demo(30))
    assert len(torch.load(layout.DATASET, weights_only=True)["images"]) == 30  # the new data set...
    with pytest.raises(UserError, match=r"manifest.json: not found \(run `gan prepare` first\)"):
        dataset_sha(
            layout.MANIFEST
        )  # ...never paired with the old manifest (was: the 20 images' hash, stale features and fingerprint)
    monkeypatch.setattr(prepare, "write_text", real_write)
    assert prepare.run(demo(30))["count"] == 30 and dataset_sha(layout.MANIFEST)
