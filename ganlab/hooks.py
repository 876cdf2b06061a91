"""Everything the training loop does besides the D and G steps, as named hooks.

``training.loop`` takes them as an argument (``stages/train.py`` passes ``main_process_hooks``);
the contract (what is due, what a hook may return, the reports channel) is ``training/events.py``.
Only the main process has hooks. File and MLflow work goes to ``run.writer``, in order, on a
background thread on a GPU; ``Tracking`` alone talks to MLflow and writes ``models/run.json``.
"""

from __future__ import annotations

import csv
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ganlab import layout
from ganlab.data.dataset import StreamedData
from ganlab.errors import Terminated, UserError, printable
from ganlab.io import run_checkpoint, run_record
from ganlab.io.atomic import atomic_path, open_no_link, refuse_link, remove_stale_temp_files
from ganlab.io.background import host_copy
from ganlab.io.mlflow_store import own_store
from ganlab.io.tracking import TrainingRun, committed_text, git_commit, mark_killed, run_name_and_links
from ganlab.metrics import attributes
from ganlab.metrics.evaluator import CONSTANTS, HEADLINE, Reference, evaluate_generator
from ganlab.metrics.features import FeatureNet, reference_features
from ganlab.metrics.sampler import fixed_latents, generate
from ganlab.params import MAX_PARAMS_BYTES, Params, flatten, params_from_text
from ganlab.render.grids import save_png, to_grid, to_pil
from ganlab.training import state
from ganlab.training.best import best_key, pick_best
from ganlab.training.events import Due, Ended, Evaluated, Hook, Run

TRAINING_SECTIONS = ("prepare", "model", "train", "device", "tracking")


class Tracking(Hook):
    """One MLflow run per training, continued on resume; params, tags and per-tick metrics, whose
    MLflow step is the number of real images shown to D (comparable across data sets and batch sizes).
    It subscribes to ``run.reports``, so what other hooks report reaches MLflow, and each
    checkpoint's record (``models/run.json``) follows its file."""

    tracker: TrainingRun | None = None

    def on_start(self, run: Run) -> None:
        p = run.params
        stale = run.start.stale_run
        if stale and mark_killed(stale):
            print(f"note: MLflow run {stale} was left RUNNING by a killed training: marked KILLED")
        self.started_kimg = run.kimg  # where an extended run took over from its finished predecessor
        name, links = run_name_and_links(run_name(run))
        self.tracker = TrainingRun(p.tracking.experiment, run.progress.run_id, name)
        self.run = run
        self.checkpoint(run.progress.step, run.progress.seconds)
        run.reports.subscribe(self)
        if run.progress.continues:  # the finished run this one extends: one link, whatever is in the MLflow UI
            links = {**links, "continues_run": run.progress.continues}
        if not self.tracker.resumed:  # the sections that shape training; each later stage logs its own in its child run
            self.tracker.log_params(
                flatten(p, TRAINING_SECTIONS),
                {
                    **links,
                    "git_commit": git_commit(),
                    "dataset_sha256": run.dataset_sha,
                    "dataset_size": str(len(run.data)),
                    "image_size": str(run.image_size),
                    "device": str(run.device),
                    "processes": str(run.world),
                    "dataset_held": "host memory, streamed" if isinstance(run.data, StreamedData) else "device memory",
                    "batch": str(run.clock.batch),
                    "steps": str(run.clock.total),
                },
            )

    # what Reports forwards (on the writer)
    def metrics(self, values: dict[str, float], step: int) -> None:
        self.tracker.log_metrics(values, step)

    def image(self, grid: torch.Tensor, key: str, step: int) -> None:
        self.tracker.log_image(to_pil(grid), key=key, step=step)

    def tags(self, tags: dict[str, str]) -> None:
        self.tracker.set_tags(tags)

    def params(self, params: dict[str, Any]) -> None:
        if not self.tracker.resumed:
            self.tracker.log_params(params, {})

    def checkpoint(self, step: int, seconds: float) -> None:
        r = self.run
        run_record.write(
            self.tracker.run_id, self.tracker.experiment_id, r.fp, step, seconds, r.lineage, r.planned_kimg
        )

    def on_step(self, run: Run, due: Due) -> None:
        if due.tick:
            run.writer.submit(self.tracker.log_metrics, tick_metrics(run, due), due.images)

    def on_end(self, run: Run, end: Ended) -> None:
        run.writer.drain()
        run.writer.close()
        if run.params.train.log_checkpoint:
            self.tracker.log_artifact(layout.CHECKPOINT, "checkpoint")
        self.tracker.log_artifact(layout.HISTORY)
        self.tracker.log_artifact(layout.TIMING)
        name = run_name_and_links(run_name(run, self.started_kimg, ended=True))[0]
        self.tracker.set_tags(
            {"mlflow.runName": name, "ran": what_ran(run, self.started_kimg)}
        )  # MLflow renames the run
        self.tracker.finish()
        print(f'train: MLflow run {self.tracker.run_id}, "{name}"')
        if own_store() is not None:  # MLflow 3.17's UI opens on GenAI traces unless the link asks for runs
            print(
                f"train: to see it, `mlflow ui --port 5000` here, then http://127.0.0.1:5000/#/experiments/"
                f"{self.tracker.experiment_id}/runs/{self.tracker.run_id}?workflowType=machine_learning"
            )

    def on_failure(self, run: Run, error: BaseException) -> None:
        run.writer.close()
        if self.tracker is None:
            return
        marked = f"MLflow run {self.tracker.run_id} marked KILLED; "
        try:
            self.tracker.finish("FAILED" if isinstance(error, Exception) else "KILLED")
        except Exception as e:  # noqa: BLE001 - a full disk may refuse this too; the error that stopped training matters more
            print(f"note: could not mark MLflow run {self.tracker.run_id} as failed ({type(e).__name__})")
            marked = ""
        if isinstance(error, KeyboardInterrupt):  # no error line follows an interrupt: this one says what became of it
            by = "SIGTERM" if isinstance(error, Terminated) else "Ctrl-C"
            print(
                f"train: interrupted ({by}) at {run.kimg:g} kimg: {marked}run `gan train` again to resume from the last checkpoint",
                file=sys.stderr,
            )


NAME_CHANGES = 4  # changed params in a run's name; every param is on the run page
NOT_IN_NAME = {"prepare.source", "prepare.image_size", "train.kimg"}  # the name's head and its length say them


def changed_params(params: Params, committed: Params | None = None) -> list[str]:
    """What a run changed among the params that shape training, as ``key=value`` with the section
    left off (``lr=0.002``, ``stop.minutes=8``): first what differs from the committed params.yaml
    (``committed``: a DVC experiment's ``-S``, which the name must show however many other params
    the project changed), then what differs from the defaults (``Params()``, the shipped file)."""
    ours = flatten(params, ("prepare", "model", "train"))
    bases = [flatten(Params(), ("prepare", "model", "train"))]
    if committed is not None:
        bases.insert(0, flatten(committed, ("prepare", "model", "train")))
    out: dict[str, str] = {}
    for base in bases:
        for key, value in ours.items():
            if key not in NOT_IN_NAME and key not in out and value != base.get(key):
                out[key] = f"{key.split('.', 1)[1]}={_shown(value)}"
    return list(out.values())


def committed_params() -> Params | None:
    """params.yaml as the checked-out commit holds it; None outside git, or where it is not
    committed or not valid (the name then compares with the defaults alone)."""
    text = committed_text("params.yaml")
    if text is None or len(text) > MAX_PARAMS_BYTES:
        return None
    try:
        return params_from_text(text, "params.yaml (committed)")
    except UserError:
        return None


def _shown(value: Any) -> str:
    """A value as it is typed after ``-S key=``: 8 not 8.0, lists comma-separated, null."""
    if isinstance(value, list):
        return ",".join(map(_shown, value))
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _kimg(kimg: float) -> str:
    return f"{kimg:.0f}" if kimg >= 10 else f"{kimg:.3g}"


def run_name(run: Run, started_kimg: float = 0.0, ended: bool = False) -> str:
    """What a run is, as its MLflow name: data set, size, what it changed against the defaults (at most
    ``NAME_CHANGES``: runs differ by those, not by the networks every run shares) and its length in kimg.
    At its end the name says what ran, since a name that promised 150 kimg misled on a run that stopped
    at 74 (``raw-64px lr=0.002 74 of 150kimg (stopped)``; an extended run: ``150→300kimg``)."""
    p = run.params
    source = "demo" if p.prepare.source == "demo" else printable(Path(p.prepare.source).name)
    changes = changed_params(p, committed_params())
    if len(changes) > NAME_CHANGES:
        changes = [*changes[:NAME_CHANGES], f"+{len(changes) - NAME_CHANGES} more"]
    planned = run.clock.kimg(run.clock.total)
    length = f"{_kimg(planned)}kimg"
    if ended and run.progress.step < run.clock.total:
        length = f"{_kimg(run.kimg)} of {length} (stopped)"
    if run.extended:
        length = f"{_kimg(started_kimg)}→{length}"
    return " ".join([f"{source}-{run.image_size}px", *changes, length])


def what_ran(run: Run, started_kimg: float) -> str:
    """The run's end in words (its ``ran`` tag): the whole length, or where and why it stopped."""
    t, planned = run.params.train, run.clock.kimg(run.clock.total)
    since = f" (continuing a finished run of {started_kimg:g} kimg)" if run.extended else ""
    if run.progress.step >= run.clock.total:
        return f"all {planned:g} kimg{since}"
    by = (
        f"{t.budget[1]} {t.budget[0]:g} (minutes of training)"
        if t.budget is not None and run.progress.seconds >= t.budget[0] * 60
        else f"train.stop.patience {t.stop.patience} (no gain in that many evaluations)"
    )
    return f"stopped at {run.kimg:g} of {planned:g} kimg by {by}{since}"


def tick_metrics(run: Run, due: Due) -> dict[str, float]:
    """A tick's MLflow metrics, grouped by prefix so that MLflow's UI lists them in sections:
    train/ (what the training computed) and speed/ (wall time). augment_p only where it moves (ADA)."""
    ada = run.params.train.ada_target is not None
    out = {f"train/{k}": v for k, v in due.row.items() if k != "kimg" and (k != "augment_p" or ada)}
    out.update({f"speed/{k}": v for k, v in due.timing.items() if k != "kimg"})
    return out


def eval_metrics(scores: dict[str, float]) -> tuple[dict[str, float], dict[str, str]]:
    """(metrics, constants) of an evaluation for MLflow: the headline numbers under eval/, the rest
    under eval_detail/; the constants (sample counts, dimensions) as params."""
    metrics = {f"eval/{k}" if k in HEADLINE else f"eval_detail/{k}": v for k, v in scores.items() if k not in CONSTANTS}
    return metrics, {f"eval.{k}": f"{scores[k]:g}" for k in CONSTANTS if k in scores}


def time_left(images_left: int, rate: float | None, budget_s: float | None) -> str:
    """The bar's remaining time: tqdm's estimate at the current speed, but never more than the
    wall-time budget left, since ``train.minutes`` or ``train.stop.minutes`` ends the run there whatever the speed."""
    if budget_s is not None:
        budget_s = max(0.0, budget_s)
    estimate = images_left / rate if rate else None
    known = [s for s in (estimate, budget_s) if s is not None]
    return tqdm.format_interval(min(known)) if known else "?"


class _Bar(tqdm):
    """tqdm with a ``{left}`` field for ``bar_format`` (tqdm's own recipe for a custom field:
    extend ``format_dict``), which it recomputes at each refresh as the budget runs down."""

    def __init__(self, *args, budget_s: float | None = None, **kwargs) -> None:
        self.budget_s = budget_s  # before tqdm's first refresh, which asks for the field
        super().__init__(*args, **kwargs)

    @property
    def format_dict(self) -> dict:
        d = super().format_dict
        budget = None if self.budget_s is None else self.budget_s - d["elapsed"]
        return {**d, "left": time_left(d["total"] - d["n"], d["rate"], budget)}


class Console(Hook):
    """A progress bar in kimg with the last tick's losses and speed, and one summary line at the end.

    The bar counts images, whole numbers, and shows them as kimg (tqdm's ``unit_scale``): kimg
    summed tick by tick in floats ends past the total (0.01 six times is 0.060000000000000005),
    which tqdm clamps with a warning and shows as an ETA of -00:00. With ``train.stop.minutes``
    the ETA never promises more than the budget left."""

    def on_start(self, run: Run) -> None:
        c = run.clock
        if run.resumed:
            print(f"resuming from {layout.CHECKPOINT} at {run.kimg:g} kimg")
        print(
            f"train: {c.kimg(c.total):g} kimg = {c.total} steps of {c.batch} images = {c.epoch(c.total):.4g} epochs of {c.images} images"
        )
        digits = 1 if c.kimg(c.total) >= 10 else 3
        limit = run.params.train.budget
        self.bar = _Bar(
            total=c.total * c.batch,
            initial=run.images,
            unit_scale=1 / 1000,
            desc="train",
            unit="kimg",
            dynamic_ncols=True,
            bar_format=f"{{l_bar}}{{bar}}| {{n:.{digits}f}}/{{total:.{digits}f}} kimg [{{elapsed}}<{{left}}{{postfix}}]",
            budget_s=None if limit is None else limit[0] * 60 - run.progress.seconds,
        )

    def on_step(self, run: Run, due: Due) -> None:
        if not due.tick:
            return
        self.bar.total = run.clock.total * run.clock.batch  # a train.minutes run may be planned again
        self.bar.update(due.images - self.bar.n)
        self.bar.set_postfix(
            loss_d=f"{due.row['loss_d']:.3f}",
            loss_g=f"{due.row['loss_g']:.3f}",
            img_s=f"{due.timing['images_per_s']:.0f}",
        )
        if due.end:
            self.bar.close()  # before the other hooks' closing lines

    def on_end(self, run: Run, end: Ended) -> None:
        self.bar.close()  # stopped by a plateau: not closed at its last tick
        final = run.progress.history[-1]
        print("train: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()) + f" -> {layout.CHECKPOINT}")

    def on_failure(self, run: Run, error: BaseException) -> None:
        if hasattr(self, "bar"):  # absent when an earlier hook failed to start
            self.bar.close()


HISTORY_KEYS = ["kimg", "epoch", "loss_d", "loss_g", "real_score", "fake_score", "augment_p", "r_t"]
TIMING_KEYS = ["kimg", "images_per_s", "seconds"]


def write_history(history: list[dict[str, float]]) -> None:
    _write_csv(layout.HISTORY, history, HISTORY_KEYS)


def append_history(row: dict[str, float], timing: dict[str, float]) -> None:
    """One row at the end of each file: a tick costs two short writes, however long the run.
    A kill mid-write can leave a partial last line; a resume rewrites both files. Appending
    never writes through a link into DVC's cache: ``History.on_start`` made both files afresh
    by rename in this run."""
    for path, keys, values in ((layout.HISTORY, HISTORY_KEYS, row), (layout.TIMING, TIMING_KEYS, timing)):
        with os.fdopen(open_no_link(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "a", newline="") as f:
            csv.DictWriter(f, fieldnames=keys).writerow(values)


def read_timing(through_kimg: float) -> list[dict[str, str]]:
    """The timing rows up to a resumed checkpoint (none when the file is missing or unreadable:
    it is a record of speed, not of the training)."""
    try:
        with open(layout.TIMING, newline="") as f:
            return [r for r in csv.DictReader(f) if r.get("seconds") and float(r["kimg"]) <= through_kimg + 1e-9]
    except (OSError, ValueError, csv.Error):
        return []


def write_evals(evals: list[dict[str, float]]) -> None:
    """An undefined score (too few images to measure it) is an empty cell, not ``nan`` or ``inf``:
    every column stays numbers; why is in the training's note and in reports/evaluate/notes.json."""
    rows = [{k: v if math.isfinite(v) else "" for k, v in row.items()} for row in evals]
    _write_csv(layout.EVAL_HISTORY, rows, list(dict.fromkeys(k for row in evals for k in row)) or ["kimg"])


def _write_csv(path: Path, rows: list[dict[str, float]], keys: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


class History(Hook):
    """One row per tick in ``reports/train/history.csv`` (what the training computed: the same
    bytes on every run of the same params, so git and DVC see no change where there is none) and
    in ``reports/train/timing.csv`` (images/s and wall time: different on every run, so neither
    git nor DVC tracks it; MLflow has the same numbers)."""

    def on_start(self, run: Run) -> None:
        remove_stale_temp_files(layout.TRAIN_REPORTS)
        write_history(run.progress.history)  # what the checkpoint holds: nothing fresh, and no partial row on resume
        _write_csv(layout.TIMING, read_timing(run.kimg) if run.resumed else [], TIMING_KEYS)

    def on_step(self, run: Run, due: Due) -> None:
        if due.tick:
            append_history(due.row, due.timing)


class Grids(Hook):
    """The lecture's fixed-latent 8 x 8 grid, rendered with batch statistics at the clock's
    log-spaced points (a bounded count, however long the run); PNG and MLflow in the background.
    MLflow's image slider gets every few of them (it stores each twice, as PNG and WebP), at most
    ``MLFLOW_GRIDS`` and always the last; the video holds them all."""

    MLFLOW_GRIDS = 9

    def check(self, run: Run) -> None:
        refuse_link(layout.GRIDS)  # a fresh run empties it: before the history or MLflow run is touched

    def on_start(self, run: Run) -> None:
        self.z = fixed_latents(run.params.train.grid_seed, run.params.model.latent_size)
        points = sorted(run.clock.grids)
        self.to_mlflow = {*points[:: -(-len(points) // self.MLFLOW_GRIDS)], points[-1]}
        remove_stale_temp_files(layout.GRIDS)
        if run.resumed:  # an extended run's old grids off the new schedule go too (its last frame among them)
            keep = {s * run.clock.batch for s in run.clock.grids}
            for stale in layout.GRIDS.glob("images_*.png"):
                if (m := layout.GRID_FILE.search(stale.name)) and (
                    int(m.group(1)) > run.images or (run.extended and int(m.group(1)) not in keep)
                ):
                    stale.unlink()
        else:
            shutil.rmtree(layout.GRIDS, ignore_errors=True)
            self.draw(run, 0, 0)

    def on_step(self, run: Run, due: Due) -> None:
        if due.grid:
            self.draw(run, due.step, due.images)

    def draw(self, run: Run, step: int, images: int) -> None:
        grid = to_grid(generate(run.gan.generator_for_images, self.z, batch_stats=True))  # on the host from here
        run.writer.submit(save_png, grid, layout.grid_file(images))
        if step in self.to_mlflow:
            run.reports.image(grid, "fixed_latent_grid", images)


class Evaluation(Hook):
    """The cheap metrics every ``eval_kimg`` and at the end (0: never); keeps the generator best on ``best_metric``."""

    def check(self, run: Run) -> None:
        t = run.params.train
        if run.clock.evals:
            self.net, why = attributes.load(layout.ATTRIBUTES, run.device, run.dataset_sha)
            self.features = FeatureNet().to(run.device)
            self.reference = Reference(
                reference_features(self.features, layout.FEATURES, run.data.images, run.dataset_sha)
            )
            if self.net is None and t.best_metric.startswith("attr"):
                print(
                    f"note: best checkpoint by {t.best_metric} is unavailable ({why}); later stages get the last generator"
                )
            elif self.net is None and attributes.STALE in why:
                print(f"note: no attribute metrics in the evaluations: {why}")

    def on_start(self, run: Run) -> None:
        self.said_not_finite = False
        write_evals(run.progress.evals)  # a declared output, even when empty

    def on_step(self, run: Run, due: Due) -> Evaluated | None:
        t = run.params.train
        if not due.evaluate:
            return None
        start = time.perf_counter()
        G = run.gan.eval_generator(seed=t.grid_seed)
        result = evaluate_generator(
            G, run.data.images, t.eval_samples, t.eval_seed, self.features, self.reference, self.net
        )
        scores = result.metrics
        key = best_key(t.best_metric)
        value = scores.get(key)
        if (
            value is not None and not math.isfinite(value) and not self.said_not_finite
        ):  # once: a 1-image set gives NaN at every evaluation
            why = result.notes.get(key) or result.notes.get("fd") or "see reports/train/eval_history.csv"
            print(
                f"note: {key} is {value} at {due.kimg:g} kimg ({why}); a best generator is chosen from finite values only"
            )
            self.said_not_finite = True
        row = {"kimg": due.kimg, **scores}
        evals = [*run.progress.evals, row]
        write_evals(evals)
        logged, constants = eval_metrics(scores)
        logged["speed/eval_seconds"] = time.perf_counter() - start  # what the evaluation costs the run: MLflow only
        run.reports.metrics(logged, due.images)
        if len(evals) == 1 and constants:
            run.reports.params(constants)
        best = pick_best(evals, t.best_metric) == len(evals) - 1
        return Evaluated(row, (scores[key], state.generator_state(G)) if best else None)

    def on_end(self, run: Run, end: Ended) -> None:
        p, t = run.progress, run.params.train
        if p.generator_best is not None:
            run.reports.tags(state.best_tags(p.best_kimg, p.best_value, best_key(t.best_metric)))
            print(
                f"train: best generator at {p.best_kimg:g} kimg ({best_key(t.best_metric)}={p.best_value:.4g}, by {t.best_metric})"
            )
        elif p.evals and self.said_not_finite:
            print(
                f"note: no evaluation gave a finite {best_key(t.best_metric)}: no best generator; the later stages get the last one"
            )


class Checkpoints(Hook):
    """A resumable checkpoint every ``checkpoint_kimg``, copied to host memory and written in the
    background (atomically: a kill mid-write keeps the last good one), and the final one,
    marked complete only once everything else is written.

    A finished run is never resumed (``session.decide``), so the final file drops the
    optimizers' moments (2/3 of a resumable one: 120 of 210 MB at 128 px with the lecture's
    widths) and stores the eval generator's weights once, shared with the EMA (and with the best
    generator when the last is the best)."""

    def on_start(self, run: Run) -> None:
        remove_stale_temp_files(layout.CHECKPOINT.parent)

    def on_step(self, run: Run, due: Due) -> None:
        if due.checkpoint:
            run.writer.submit(run_checkpoint.save, host_copy(run.snapshot(due.noise_states)), layout.CHECKPOINT)
            run.reports.checkpoint(
                due.step, run.progress.seconds
            )  # after it: a resume never takes a later clock than its weights

    def on_end(self, run: Run, end: Ended) -> None:
        if len(set(end.digests)) > 1:
            raise RuntimeError(f"train: the {run.world} replicas ended with different weights: {list(end.digests)}")
        run.writer.drain()  # grids and earlier checkpoints first: the final file must be the last word
        final = run.snapshot(
            end.noise_states
        )  # first: building the eval generator draws from the global random states it keeps
        G_eval = run.gan.eval_generator(seed=run.params.train.grid_seed)
        final = final.finish(
            state.shared_eval_state(run.gan.generator_for_images, G_eval),
            list(end.digests),
            best_is_last=run.progress.generator_best is not None and run.progress.best_kimg == run.kimg,
        )
        run_checkpoint.save(final, layout.CHECKPOINT)
        run.reports.checkpoint(run.progress.step, run.progress.seconds)


def main_process_hooks() -> list[Hook]:
    return [Tracking(), Console(), History(), Grids(), Evaluation(), Checkpoints()]
