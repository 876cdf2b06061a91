"""A training's MLflow run says what it changed and what ran: its name lists the params that differ
from the defaults, and at the end its length is what trained (stopped early, extended), with a
``ran`` tag in words. A newcomer's run named ``raw-64px-dcgan-150kimg`` had stopped at 74 kimg, and
its changed param was not in the name."""

import pytest
from mlflow.tracking import MlflowClient

from ganlab.hooks import changed_params
from ganlab.io.tracking import tracking_uri
from ganlab.params import parse_params
from stages import prepare, train
from tests.conftest import run_id, tiny


def test_the_name_lists_the_params_changed_against_the_defaults():
    assert changed_params(parse_params({})) == []
    changed = parse_params({"train": {"lr": 0.002, "kimg": 300, "stop": {"minutes": 8}}, "prepare": {"crop": "pad"}})
    assert changed_params(changed) == ["crop=pad", "stop.minutes=8", "lr=0.002"]  # the length is the name's tail
    assert changed_params(parse_params({"train": {"diffaugment": ["color"], "flip": False, "lr_d": 5e-4}})) == [
        "lr_d=0.0005",
        "diffaugment=color",
        "flip=false",
    ]


def test_a_stopped_run_is_renamed_for_what_it_trained(workdir, capsys):
    params = tiny(train={"stop": {"minutes": 1e-6}})  # out of time at the first tick: 1 of 4 steps
    prepare.run(params)
    train.run(params)
    run = MlflowClient(tracking_uri()).get_run(run_id())
    assert run.info.run_name.startswith("demo-32px demo.count=40 latent_size=16 g_width=8 d_width=8 +")
    assert run.info.run_name.endswith(" 0.016 of 0.064kimg (stopped)"), run.info.run_name
    assert run.data.tags["ran"].startswith("stopped at 0.016 of 0.064 kimg by train.stop.minutes 1e-06")
    assert run.data.tags["dataset_held"] == "device memory" and "data" not in run.data.tags  # was the class name
    out = capsys.readouterr().out
    assert f'train: MLflow run {run.info.run_id}, "{run.info.run_name}"' in out
    assert f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}?workflowType=machine_learning" in out


@pytest.mark.slow  # two trainings: the fast lane keeps to one
def test_an_extended_run_is_named_from_where_it_took_over(workdir):
    short = tiny(train={"kimg": 0.032})
    prepare.run(short)
    train.run(short)
    first = run_id()
    train.run(tiny())  # 0.064 kimg: continues the finished run in a new MLflow run
    client = MlflowClient(tracking_uri())
    assert client.get_run(first).info.run_name.endswith(" 0.032kimg")
    run = client.get_run(run_id())
    assert run.info.run_id != first and run.info.run_name.endswith(" 0.032→0.064kimg"), run.info.run_name
    assert run.data.tags["ran"] == "all 0.064 kimg (continuing a finished run of 0.032 kimg)"


def test_what_an_experiment_changed_against_the_committed_params_comes_first():
    """A project that changed many params from the defaults still shows the ``-S`` of its experiment:
    a queued run with ``-S train.lr=0.0021`` was named ``raw-32px demo.count=40 latent_size=16
    g_width=8 d_width=8 +7 more``, its lr among the seven."""
    committed = parse_params({"model": {"g_width": 8, "d_width": 8}, "prepare": {"crop": "pad"}})
    experiment = parse_params(
        {"model": {"g_width": 8, "d_width": 8}, "prepare": {"crop": "pad"}, "train": {"lr": 0.0021}}
    )
    assert changed_params(experiment, committed)[0] == "lr=0.0021"
    assert changed_params(experiment, committed)[1:] == ["crop=pad", "g_width=8", "d_width=8"]
    back_to_default = parse_params({"model": {"g_width": 8, "d_width": 8}})
    assert changed_params(back_to_default, committed)[0] == "crop=center"  # set back to the default: still a change
