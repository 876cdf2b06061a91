"""End to end: `dvc repro` in a copy of the project, every output checked, and each changed
param reruns exactly the stages that depend on it."""

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from ganlab.nets.dcgan import Generator
from stages.evaluate import HEADLINE
from tests.conftest import STAGES
from tests.project import copy_project, repro, run, set_param

pytestmark = pytest.mark.slow  # every test here runs the pipeline, or starts from the session's run


@pytest.fixture
def project(pipeline_run, tmp_path) -> Path:
    """A copy of the project after its first full `dvc repro` (conftest's ``pipeline_run``), this test's own."""
    return copy_project(pipeline_run, tmp_path / "project")


def test_outputs_are_what_they_claim(project):
    grid = Image.open(project / "reports/samples/grid.png")
    width, height = grid.size
    assert width == 8 * 32 + 9 * 2 < height < width + 30  # 8 x 8 tiles of 32 px with 2 px gutters, a caption under
    assert len(list((project / "reports/samples").glob("sample_*.png"))) == 3
    assert Image.open(project / "reports/samples/sample_000.png").size == (32, 32)  # the image, no cut gutter

    study = project / "reports/latent_study"
    page = (study / "index.html").read_text()
    for title in ("Constant latent vectors", "One-hot", "dim 3 = 50", "dim 12 = -50", "Dimension 3 swept from 0 to 1"):
        assert title in page
    counts = {name: len(list((study / name).glob("*.png"))) for name in ("constants", "one_hot", "features", "sweep")}
    assert counts == {"constants": 5, "one_hot": 2, "features": 3, "sweep": 4}
    import base64

    inline = re.findall(
        r'src="data:image/png;base64,([^"]+)"', page
    )  # self-contained: MLflow's viewer breaks relative links
    assert len(inline) == sum(counts.values())
    assert base64.b64decode(inline[0]) == (study / "constants/00.png").read_bytes()
    for name in counts:
        assert (study / f"{name}.png").is_file()

    grids = sorted((project / "reports/train/grids").glob("images_*.png"))
    assert len(grids) == 5  # untrained, then after each of the 4 steps
    video = cv2.VideoCapture(str(project / "reports/video/training.avi"))
    assert video.isOpened() and int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == len(grids)
    frames = 0
    while video.read()[0]:
        frames += 1
    assert frames == len(grids)
    assert Image.open(project / "reports/video/training.gif").n_frames == len(grids)

    headline = json.loads((project / "reports/metrics.json").read_text())
    assert list(headline) == [
        "swd",
        "swd_floor",
        "swd_ratio",
        "swd_std",
        "ndb",
        "ndb_floor",
        "fd",
        "fd_floor",
        "fd_ratio",
        "fd_std",
        "kid",
        "precision",
        "recall",
        "nn_ratio",
        "copy_share",
        "attr_tv_mean",
        "fid",
        "inception_kid",
    ]  # readable in `dvc metrics show`
    metrics = json.loads((project / "reports/evaluate/metrics_detail.json").read_text())
    assert {k: metrics[k] for k in headline} == headline
    for key in (
        "swd",
        "swd_floor",
        "swd_std",
        "ndb",
        "ndb_floor",
        "fd",
        "fd_floor",
        "kid",
        "kid_std",
        "precision",
        "recall",
        "attr_tv_mean",
        "attr_confident_all",
        "nn_ratio",
        "copy_share",
        "classifier_heldout_accuracy_mean",
    ):
        assert isinstance(metrics[key], float), key
    # no InceptionV3 weights offline: null (a number missing), the reason in notes.json, and the stage still succeeds
    assert metrics["fid"] is None and metrics["inception_kid"] is None
    assert all(v is None or isinstance(v, float) for v in headline.values())  # no strings among the numbers
    shown = json.loads(run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], project).stdout)
    assert "fid" not in shown[""]["data"]["reports/metrics.json"]["data"]  # DVC leaves a null out: a table shows "-"
    assert list(shown[""]["data"]) == [
        "reports/metrics.json"
    ]  # one metrics file: `dvc metrics show` stays one readable row
    assert "InceptionV3 weights not found" in json.loads((project / "reports/evaluate/notes.json").read_text())["fid"]
    width, height = Image.open(project / "reports/evaluate/closest_pairs.png").size
    assert width == 8 * 32 + 18 and 2 * 32 + 6 < height < 2 * 32 + 6 + 30  # two rows of 8, a caption under
    assert (project / "reports/evaluate/training_curves.png").is_file()

    history = (project / "reports/train/history.csv").read_text().splitlines()
    assert history[0] == "kimg,epoch,loss_d,loss_g,real_score,fake_score,augment_p,r_t" and len(history) == 5
    timing = (project / "reports/train/timing.csv").read_text().splitlines()
    assert timing[0] == "kimg,images_per_s,seconds" and len(timing) == 5


def test_mlflow_run_has_metrics_model_and_stage_outputs(pipeline_run):
    """Read in the run's own folder (read only): a copy's store names the original's artifacts
    until a stage runs in the copy."""
    import mlflow
    from mlflow.tracking import MlflowClient

    project = pipeline_run

    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = json.loads((project / "models/run.json").read_text())["run_id"]
    run_info = client.get_run(run_id)
    assert run_info.info.status == "FINISHED"
    assert run_info.info.artifact_uri.startswith((project / "mlruns" / "gan-lab").as_uri())
    assert run_info.data.params["prepare.image_size"] == "32" and "train.lr" in run_info.data.params
    assert not any(
        k.startswith(("sample.", "video.", "evaluate.", "latent_study.")) for k in run_info.data.params
    )  # the children's
    p = run_info.data.params  # no DVC experiment: named after what it changed and how long it ran
    assert run_info.info.run_name.startswith("demo-32px ") and run_info.info.run_name.endswith(
        f" {float(p['train.kimg']):g}kimg"
    )
    assert run_info.data.tags["mlflow.source.git.commit"]
    for key in ("train/loss_d", "train/loss_g", "train/real_score", "train/fake_score", "speed/images_per_s"):
        assert [m.step for m in client.get_metric_history(run_id, key)] == [16, 32, 48, 64]  # images seen
    assert {"history.csv", "timing.csv"} <= {a.path for a in client.list_artifacts(run_id)}

    kids = children(client, run_info)
    assert sorted(kids) == ["evaluate", "latent-study", "make-video", "sample"]
    expected = {
        "sample": ("sample.count", "samples"),
        "latent-study": ("latent_study.constants", "latent_study"),
        "make-video": ("video.fps", "video"),
        "evaluate": ("evaluate.samples", "evaluate"),
    }
    for stage, (param, folder) in expected.items():
        kid = kids[stage]
        assert kid.info.status == "FINISHED" and param in kid.data.params and kid.data.tags["stage"] == stage
        assert folder in {a.path for a in client.list_artifacts(kid.info.run_id)}
    assert {a.path for a in client.list_artifacts(kids["make-video"].info.run_id, "video")} == {"video/training.gif"}
    evaluated = kids["evaluate"].data.metrics
    assert {"fd", "fd_ratio", "nn_ratio", "attr_tv_mean"} <= set(evaluated) and "detail/fd_floor_std" in evaluated
    assert all(
        k in HEADLINE or k.startswith("detail/") for k in evaluated
    )  # the headline numbers first, then a detail/ group
    assert "InceptionV3" in kids["evaluate"].data.tags["note.fid"]

    (model,) = logged_generators(project, run_id)
    headline = json.loads((project / "reports/metrics.json").read_text())
    final = {k: v for k, v in run_info.data.metrics.items() if k.startswith("final/")}
    assert final and all(abs(v - headline[k.removeprefix("final/")]) < 1e-4 for k, v in final.items())
    assert {m.key: m.value for m in model.metrics} == final  # the model page shows its metrics
    assert all(k.split("/")[0] in {"train", "speed", "eval", "eval_detail", "final"} for k in run_info.data.metrics)
    state = torch.load(project / "models/checkpoint.pt", weights_only=True)
    assert {k: model.tags[k] for k in ("which", "kimg")} == {"which": "best", "kimg": f"{state['best_kimg']:g}"}
    assert state["best_kimg"] > 0
    assert run_info.data.tags["generator.kimg"] == f"{state['best_kimg']:g}"
    generator = mlflow.pytorch.load_model(model.model_uri)
    assert isinstance(generator, torch.nn.Module)
    generator.eval()  # a plain nn.Module, not an exported graph whose .eval() raises
    best = Generator(16, 32, 8)
    best.load_state_dict(state["generator_best"])
    z = torch.randn(4, 16)
    with torch.no_grad():
        images = generator(z)
        torch.testing.assert_close(images, best.eval()(z))  # the generator the reports describe
    assert tuple(images.shape) == (4, 3, 32, 32) and float(images.abs().max()) <= 1
    assert np.isfinite(images.numpy()).all()


def children(client, parent) -> dict:
    """The live child runs of a training run, by stage (deleted ones are gone from the UI and from this)."""
    query = f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    runs = client.search_runs([parent.info.experiment_id], filter_string=query)
    assert len({r.data.tags["stage"] for r in runs}) == len(runs), "a stage has two live child runs"
    return {r.data.tags["stage"]: r for r in runs}


def logged_generators(project: Path, run_id: str) -> list:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    models = mlflow.search_logged_models(
        experiment_ids=[mlflow.get_run(run_id).info.experiment_id], output_format="list"
    )
    return [m for m in models if m.source_run_id == run_id and m.name == "generator"]


def test_changed_params_rerun_exactly_the_dependent_stages(project):
    assert repro(project) == []
    set_param(project, "latent_study", "constants", [0.0, 2.0])
    assert repro(project) == ["latent-study"]
    set_param(project, "video", "fps", 4)
    assert repro(project) == ["make-video"]
    set_param(project, "sample", "count", 2)
    assert repro(project) == ["sample"]
    run_id = json.loads((project / "models/run.json").read_text())["run_id"]
    assert len(logged_generators(project, run_id)) == 1  # the rerun replaced the model, it did not add one
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    kid = children(client, client.get_run(run_id))["sample"]  # replaced, with the params and files of this run
    assert kid.data.params["sample.count"] == "2"
    assert len([a for a in client.list_artifacts(kid.info.run_id, "samples") if "sample_" in a.path]) == 2
    set_param(project, "tracking", "experiment", "renamed")
    assert repro(project) == []
    set_param(project, "evaluate", "samples", 32)
    assert repro(project) == ["evaluate"]
    kid = children(client, client.get_run(run_id))["evaluate"]
    assert kid.data.params["evaluate.samples"] == "32"
    assert len(client.get_metric_history(kid.info.run_id, "nn_ratio")) == 1  # one value, not one per rerun
    set_param(project, "evaluate", "seed", 7)
    assert repro(project) == ["evaluate"]  # in-training evaluation has its own train.eval_seed


def test_a_longer_run_reruns_training_and_every_stage_after_it(project):
    set_param(project, "train", "kimg", 0.128)
    assert repro(project) == ["train", "sample", "latent-study", "make-video", "evaluate"]
    assert len((project / "reports/train/history.csv").read_text().splitlines()) == 1 + 8
    assert (
        int(cv2.VideoCapture(str(project / "reports/video/training.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    )  # train.grids + 1, however long


@pytest.mark.parametrize(
    "module, stages",
    [
        ("ganlab/render/video.py", ["make-video"]),
        ("ganlab/render/latent_study.py", ["latent-study"]),
        ("stages/sample.py", ["sample"]),
    ],
)
def test_a_code_change_reruns_exactly_the_stages_that_run_that_code(project, module, stages):
    with open(project / module, "a") as f:
        f.write("\n# changed\n")
    assert repro(project) == stages


def test_a_fresh_clone_reproduces_the_committed_outputs_byte_for_byte(project, tmp_path, empty_store):
    """What git and DVC track is what the training computed: on a fresh clone, `dvc repro` reruns
    every stage and leaves `git status` clean (dvc.lock's hashes, history.csv, metrics.json).
    The MLflow run id and wall times are kept out of the outputs (run.json, timing.csv). The origin
    is the project as its first run left it, never extended (Adam restarts in an extended run, so
    that is not what a fresh clone computes; docs/robustness.md)."""
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    origin = project
    run(["git", "add", "-A"], origin)
    run([*git, "commit", "-qm", "a finished run"], origin)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path)
    shutil.copy(empty_store, clone / "mlflow.db")
    assert repro(clone) == STAGES
    changed = run(["git", "status", "--porcelain"], clone).stdout
    assert changed == "", run(["git", "diff"], clone).stdout[-3000:]
    assert (clone / "reports/train/timing.csv").is_file() and (
        clone / "models/run.json"
    ).is_file()  # written, not tracked


def test_a_copied_project_keeps_its_records_to_itself(pipeline_run, tmp_path):
    """MLflow stores absolute artifact paths; a copy must not write into the original."""
    from mlflow.tracking import MlflowClient

    project = pipeline_run

    def snapshot(root: Path) -> dict:
        return {p.relative_to(root): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}

    before = snapshot(project)
    copy = copy_project(project, tmp_path / "copy")
    set_param(copy, "latent_study", "constants", [0.0, 3.0])
    out = run([sys.executable, "-m", "dvc", "repro"], copy)
    assert re.findall(r"Running stage '([\w-]+)'", out.stdout) == ["latent-study"]
    assert "now points at" in out.stdout  # said once, when the copy's store was re-homed
    assert snapshot(project) == before, "the copy wrote into the original project"

    client = MlflowClient(f"sqlite:///{copy / 'mlflow.db'}")
    run_id = json.loads((copy / "models/run.json").read_text())["run_id"]
    parent = client.get_run(run_id)
    assert parent.info.artifact_uri.startswith((copy / "mlruns").as_uri())
    kid = children(client, parent)["latent-study"]
    assert kid.data.params["latent_study.constants"] == "[0.0, 3.0]"
    assert kid.info.artifact_uri.startswith((copy / "mlruns").as_uri())
    assert (Path(kid.info.artifact_uri.removeprefix("file://")) / "latent_study" / "index.html").is_file()


def test_own_images_tracked_by_dvc_run_as_temp_and_queued_experiments(project):
    """The README's steps for own images (`dvc add data/raw`), then `dvc exp run --temp` and two
    `--queue` variants run by the queue's workers: DVC runs them in copies under .dvc/tmp/exps/, which
    need the images from DVC's cache and are deleted afterwards; their MLflow runs land in the
    project's store, named after the experiments and linked to them."""
    import time

    from mlflow.tracking import MlflowClient

    from ganlab.data.demo_faces import write_demo_faces

    dvc, git = [sys.executable, "-m", "dvc"], ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    run(["git", "add", "-A"], project)
    run([*git, "commit", "-qm", "baseline"], project)
    write_demo_faces(project / "data/raw/mine", 24, seed=5, size=40)
    (project / "data/raw/mine/labels.csv").unlink()  # own images: no labels
    run(["git", "rm", "-q", "--cached", "data/raw/README.md"], project)  # the README's steps
    run([*dvc, "add", "data/raw"], project)
    run(["git", "add", "data/raw.dvc", "data/.gitignore"], project)
    run([*git, "commit", "-qm", "my images"], project)
    assert "data/raw" not in run(["git", "status", "--short"], project).stdout  # versioned by DVC, not by git
    own = ["-S", "prepare.source=data/raw"]
    run([*dvc, "exp", "run", "--temp", *own, "-S", "train.lr=0.0021"], project)
    for lr in ("0.0022", "0.0023"):
        run([*dvc, "exp", "run", "--queue", *own, "-S", f"train.lr={lr}"], project)
    # `dvc exp run --run-all --jobs 2` ran them too, but one of its two workers sometimes lingers
    # after both succeed and the command does not return; the queue's own commands do not hang
    run([*dvc, "queue", "start", "--jobs", "2"], project, starts_daemons=True)
    deadline = time.time() + 1200  # 400 s ran out on a loaded machine with both still running
    while time.time() < deadline:
        status = run([*dvc, "queue", "status"], project).stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        time.sleep(3)
    assert "Failed" not in status and status.count("Success") == 2, status

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_lr = {r.data.params.get("train.lr"): r for r in runs}
    for lr in ("0.0021", "0.0022", "0.0023"):
        r = by_lr[lr]
        assert r.info.status == "FINISHED" and r.data.tags["dataset_size"] == "24"
        assert r.info.artifact_uri.startswith((project / "mlruns").as_uri())
        assert (
            r.info.run_name.startswith(r.data.tags["dvc.experiment"] + " raw-32px ")
            and f"lr={float(lr):g}" in r.info.run_name
            and r.data.tags["dvc.baseline_rev"]
        )
        kids = children(client, r)
        assert kids["sample"].info.artifact_uri.startswith((project / "mlruns").as_uri())
        assert kids["sample"].data.tags["dvc.experiment"] == r.data.tags["dvc.experiment"]
    names = run([*dvc, "exp", "ls", "--name-only"], project).stdout.split()
    assert {by_lr[lr].info.run_name.split()[0] for lr in ("0.0021", "0.0022", "0.0023")} <= set(names)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (apt-get install chromium)")
def test_the_mlflow_ui_shows_the_headline_metric_and_the_model_on_the_run_page(project, tmp_path):
    """What a newcomer sees: `mlflow ui` on loopback, the training run's page opened in headless
    Chromium, which runs the page's JavaScript; the final headline metric and the logged model
    are on it. The experiment's link as docs/mlflow.md gives it lists the runs (MLflow 3.17 opens
    an experiment on GenAI traces, whatever its experimentKind tag, unless the link asks for runs).
    The screenshots are kept in the test's folder."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = f"sqlite:///{project / 'mlflow.db'}"
    ui = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", db, "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(ui, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(1)
        record = json.loads((project / "models/run.json").read_text())
        url = f"http://127.0.0.1:{port}/#/experiments/{record['experiment_id']}/runs/{record['run_id']}"
        chrome = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]
        chrome += ["--virtual-time-budget=20000", "--window-size=1400,1000"]
        dom = subprocess.run([*chrome, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
        subprocess.run([*chrome, f"--screenshot={tmp_path / 'run.png'}", url], capture_output=True, timeout=180)
        runs = f"http://127.0.0.1:{port}/#/experiments/{record['experiment_id']}?workflowType=machine_learning"
        runs_dom = subprocess.run([*chrome, "--dump-dom", runs], capture_output=True, text=True, timeout=180).stdout
        subprocess.run([*chrome, f"--screenshot={tmp_path / 'runs.png'}", runs], capture_output=True, timeout=180)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert "final/fd_ratio" in dom and "eval/fd_ratio" in dom
    assert "Logged models (1)" in dom
    assert "matching runs" in runs_dom and "demo-32px " in runs_dom  # the runs table, with the training run
    assert (tmp_path / "run.png").stat().st_size > 10_000
