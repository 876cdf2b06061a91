"""Issue 24, classes 2, 3 and 9: params that validate run, hostile params files end in one line,
and the low-severity rest (outputs as a source, NaN latents, one image, a kill mid-prepare)."""

import itertools
import time
import tracemalloc

import pytest

from ganlab.errors import UserError
from ganlab.params import TrainParams, load_params, parse_params
from ganlab.training.clock import Clock


def refused(path) -> str:
    with pytest.raises(UserError) as e:
        load_params(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{path}: ")
    return message


# --- class 2: params that validate must not blow up later ---------------------------------------

@pytest.mark.parametrize("train", [
    {"kimg": 1e9},  # a MemoryError at 3 GB, listing every tick
    {"kimg": 1e9, "batch_size": 1, "tick_kimg": 0.001, "checkpoint_kimg": 0.001, "eval_kimg": 0.001, "grids": 500},
    {"epochs": 1_000_000, "batch_size": 1},
])
def test_class2_unbounded_a_run_of_any_allowed_length_starts_its_first_step_in_seconds(train):
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


@pytest.mark.parametrize("yaml_train, expected", [
    ("{kimg: .inf}", "train.kimg: Input should be a finite number (got inf)"),  # passed, then OverflowError
    ("{kimg: .nan}", "train.kimg: Input should be a finite number (got nan)"),
    ("{kimg: 1.0e+10}", "train.kimg: Input should be less than or equal to 1000000000 (got 10000000000.0)"),
    ("{epochs: 10000000000}", "train.epochs: Input should be less than or equal to 1000000 (got 10000000000)"),
    ("{tick_kimg: 1.0e-9}", "train.tick_kimg: must be at least 0.001 (one image); anything up to one step's images is due at every step (got 1e-09)"),  # hung
    ("{checkpoint_kimg: 1.0e-12}", "train.checkpoint_kimg: must be at least 0.001 (one image)"),  # hung
    ("{eval_kimg: 1.0e-300}", "train.eval_kimg: must be at least 0.001 (one image)"),
    ("{stop: {minutes: .inf}}", "train.stop.minutes: Input should be a finite number (got inf)"),
    ("{eval_samples: 1000000000}", "train.eval_samples: Input should be less than or equal to 50000"),
])
def test_class2_unbounded_lengths_and_cadences_that_cannot_run_are_refused_in_one_line(tmp_path, yaml_train, expected):
    path = tmp_path / "params.yaml"
    path.write_text(f"train: {yaml_train}\n")
    assert expected in refused(path)


def test_class2_unbounded_a_cadence_shorter_than_a_step_is_due_at_every_step():
    c = Clock.of(TrainParams(kimg=0.064, batch_size=16, tick_kimg=0.001, checkpoint_kimg=0.001, eval_kimg=0.001), 40)
    assert list(c.stops(after=0)) == [1, 2, 3, 4] and all(s in c.ticks and s in c.evals for s in (1, 2, 3, 4))
    assert list(c.checkpoints) == [1, 2, 3]  # the end writes the final checkpoint


# --- class 3: a params file can be hostile ------------------------------------------------------

def laughs(levels: int) -> str:
    """'Billion laughs' as train.kimg: each level an anchor of ten aliases of the one before."""
    items = ["    - &l0 [lol]"] + [f"    - &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "train:\n  kimg:\n" + "\n".join(items) + "\n"


def test_class3_hostile_yaml_an_alias_bomb_is_refused_in_one_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(laughs(6))  # 10^6 items quoted whole in the message (9 levels: hung past 2 GB)
    start = time.perf_counter()
    message = refused(path)
    assert time.perf_counter() - start < 2 and len(message) < 300, message[:300]
    assert message == f"{path}: line 4: YAML aliases (*l0) are not accepted in a params file; write the value out"


def test_class3_hostile_yaml_an_error_message_quotes_a_bounded_excerpt_of_the_value():
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
def test_class3_hostile_yaml_deep_nesting_is_refused_in_one_line(tmp_path, depth):
    path = tmp_path / "params.yaml"
    path.write_text("train: {kimg: " + "[" * depth + "]" * depth + "}\n")  # 50000: a RecursionError traceback
    assert refused(path) == f"{path}: line 1: nested deeper than 32 levels"


def test_class3_hostile_yaml_a_file_over_a_megabyte_is_refused_unread(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# padding\n" * 200_000)
    assert "a params file is at most 1048576 bytes" in refused(path)


def test_class3_and_class9_duplicate_yaml_keys_are_refused_naming_the_key_and_line(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("train:\n  lr: 0.001\n  kimg: 2\n  lr: 0.5\n")  # silently trained at lr 0.5
    assert refused(path) == (f"{path}: train.lr: duplicate key at line 4 (first at line 2); "
                             "YAML would keep the last silently")
    path.write_text("train: {kimg: 1}\nmodel: {}\ntrain: {kimg: 2}\n")
    assert refused(path).startswith(f"{path}: train: duplicate key at line 3 (first at line 1)")


def test_class3_the_shipped_params_file_still_loads():
    from pathlib import Path

    p = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    assert p.train.kimg > 0


# --- class 9: the low-severity rest -------------------------------------------------------------

@pytest.mark.parametrize("latent_study, expected", [
    ({"constants": [0.0, float("nan")]}, "latent_study.constants.1: Input should be a finite number (got nan)"),
    ({"features": {3: float("inf")}}, "latent_study.features.3: Input should be a finite number (got inf)"),
    ({"sweep": {"stop": float("-inf")}}, "latent_study.sweep.stop: Input should be a finite number (got -inf)"),
])
def test_class9_nan_or_inf_in_latent_study_is_refused_naming_the_key(latent_study, expected):
    with pytest.raises(UserError) as e:
        parse_params({"latent_study": latent_study})
    assert str(e.value) == f"params.yaml: {expected}"
