"""Everything the training loop does besides the D and G steps, as named hooks.

The loop calls ``on_start``, ``on_epoch_end`` after every epoch, and ``on_end`` or
``on_failure``; the hooks run in list order at the start and in reverse order at the end (the
MLflow run is opened first and closed last). Only the main process has hooks.
"""

from __future__ import annotations

import csv
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from ganlab import layout
from ganlab.io import checkpoint
from ganlab.io.atomic import atomic_path, remove_stale_temp_files
from ganlab.io.tracking import TrainingRun, git_commit
from ganlab.metrics import attributes
from ganlab.metrics.evaluator import Reference, evaluate_generator, improves
from ganlab.metrics.features import FeatureNet, reference_features
from ganlab.metrics.sampler import fixed_latents, generate
from ganlab.params import Params, flatten
from ganlab.render.grids import save_png, to_grid, to_pil
from ganlab.training import state


class Run:
    """What the hooks see of a training run: its parts, its progress, and the MLflow run."""

    def __init__(self, params: Params, gan, data, streams: state.Streams, progress: state.Progress, fp: str, dataset_sha: str,
                 device: torch.device, world: int, resumed: bool):
        self.params, self.gan, self.data, self.streams, self.progress = params, gan, data, streams, progress
        self.fp, self.dataset_sha, self.device, self.world, self.resumed = fp, dataset_sha, device, world, resumed
        self.image_size = data.images.shape[-1]
        b = min(params.train.batch_size, len(data))
        self.images_per_epoch = (len(data) // b) * b
        self.noise_states: list = []  # every rank's noise stream, gathered where a checkpoint is due
        self.digests: list = []  # every rank's parameter hash, gathered at the end
        self.tracker: TrainingRun | None = None

    @property
    def last_epoch(self) -> bool:
        return self.progress.epoch == self.params.train.epochs

    def every(self, n: int) -> bool:
        """True every ``n`` epochs and at the last one."""
        return self.progress.epoch % n == 0 or self.last_epoch

    def snapshot(self) -> dict:
        return state.snapshot(self.gan, self.params, self.image_size, self.progress, self.noise_states, self.streams, self.fp)


class Hook:
    def on_start(self, run: Run) -> None: ...
    def on_epoch_end(self, run: Run) -> None: ...
    def on_end(self, run: Run) -> None: ...
    def on_failure(self, run: Run, error: BaseException) -> None: ...


class Hooks:
    def __init__(self, hooks: list[Hook]):
        self.hooks = hooks

    def on_start(self, run: Run) -> None:
        for h in self.hooks:
            h.on_start(run)

    def on_epoch_end(self, run: Run) -> None:
        for h in self.hooks:
            h.on_epoch_end(run)

    def on_end(self, run: Run) -> None:
        for h in reversed(self.hooks):
            h.on_end(run)

    def on_failure(self, run: Run, error: BaseException) -> None:
        for h in reversed(self.hooks):
            h.on_failure(run, error)


class Tracking(Hook):
    """One MLflow run per training, continued on resume; params, tags and per-epoch metrics."""

    def on_start(self, run: Run) -> None:
        p = run.params
        run.tracker = TrainingRun(p.tracking.experiment, run.progress.run_id)
        run.progress.run_id = run.tracker.run_id
        if not run.tracker.resumed:
            run.tracker.log_params(flatten(p), {
                "git_commit": git_commit(), "dataset_sha256": run.dataset_sha, "dataset_size": str(len(run.data)),
                "image_size": str(run.image_size), "device": str(run.device), "processes": str(run.world),
                "data": type(run.data).__name__})

    def on_epoch_end(self, run: Run) -> None:
        row = run.progress.history[-1]
        run.tracker.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=run.progress.epoch)

    def on_end(self, run: Run) -> None:
        if run.params.train.log_checkpoint:
            run.tracker.log_artifact(layout.CHECKPOINT, "checkpoint")
        run.tracker.log_artifact(layout.HISTORY)
        run.tracker.finish()

    def on_failure(self, run: Run, error: BaseException) -> None:
        if run.tracker is not None:
            run.tracker.finish("FAILED" if isinstance(error, Exception) else "KILLED")


class Console(Hook):
    """A progress bar with the epoch's losses and speed, and one summary line at the end."""

    def on_start(self, run: Run) -> None:
        if run.resumed:
            print(f"resuming from {layout.CHECKPOINT} at epoch {run.progress.epoch}")
        self.bar = tqdm(total=run.params.train.epochs, initial=run.progress.epoch, desc="train", unit="epoch", dynamic_ncols=True)

    def on_epoch_end(self, run: Run) -> None:
        row = run.progress.history[-1]
        self.bar.update()
        self.bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}", img_s=f"{row['images_per_s']:.0f}")
        if run.last_epoch:
            self.bar.close()  # before the other hooks' closing lines

    def on_end(self, run: Run) -> None:
        final = run.progress.history[-1]
        print("train: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()) + f" -> {layout.CHECKPOINT} (MLflow run {run.progress.run_id})")

    def on_failure(self, run: Run, error: BaseException) -> None:
        if hasattr(self, "bar"):  # absent when an earlier hook failed to start
            self.bar.close()


def write_history(history: list[dict[str, float]]) -> None:
    _write_csv(layout.HISTORY, history, ["epoch", "loss_d", "loss_g", "real_score", "fake_score", "images_per_s"])


def write_evals(evals: list[dict[str, float]]) -> None:
    _write_csv(layout.EVAL_HISTORY, evals, list(dict.fromkeys(k for row in evals for k in row)) or ["epoch"])


def _write_csv(path: Path, rows: list[dict[str, float]], keys: list[str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


class History(Hook):
    """``reports/train/history.csv``: the epoch means, the file that ``dvc plots`` reads."""

    def on_start(self, run: Run) -> None:
        remove_stale_temp_files(layout.TRAIN_REPORTS)

    def on_epoch_end(self, run: Run) -> None:
        write_history(run.progress.history)


class Grids(Hook):
    """The lecture's fixed-latent 8 x 8 grid, rendered with batch statistics every ``sample_every`` epochs."""

    def on_start(self, run: Run) -> None:
        self.z = fixed_latents(run.params.train.grid_seed, run.params.model.latent_size)
        remove_stale_temp_files(layout.GRIDS)
        if run.resumed:
            for stale in layout.GRIDS.glob("epoch_*.png"):
                if int(stale.stem.split("_")[1]) > run.progress.epoch:
                    stale.unlink()
        else:
            shutil.rmtree(layout.GRIDS, ignore_errors=True)
            self.save(run)

    def on_epoch_end(self, run: Run) -> None:
        if run.every(run.params.train.sample_every):
            self.save(run)

    def save(self, run: Run) -> None:
        grid = to_grid(generate(run.gan.generator_for_images, self.z, batch_stats=True))
        save_png(grid, layout.GRIDS / f"epoch_{run.progress.epoch:04d}.png")
        run.tracker.log_image(to_pil(grid), key="fixed_latent_grid", step=run.progress.epoch)


class Evaluation(Hook):
    """The cheap metrics every ``eval_every`` epochs (0: never); keeps the generator best on ``best_metric``."""

    def on_start(self, run: Run) -> None:
        t = run.params.train
        write_evals(run.progress.evals)  # a declared output, even when empty
        if t.eval_every:
            self.features = FeatureNet().to(run.device)
            self.reference = Reference(reference_features(self.features, layout.FEATURES, run.data.images, run.dataset_sha))
            self.net, why = attributes.load(layout.ATTRIBUTES, run.device)
            if self.net is None and t.best_metric.startswith("attr"):
                print(f"note: best checkpoint by {t.best_metric} is unavailable ({why}); later stages get the last generator")

    def on_epoch_end(self, run: Run) -> None:
        t, progress = run.params.train, run.progress
        if not t.eval_every or not run.every(t.eval_every):
            return
        start = time.perf_counter()
        G = run.gan.eval_generator(seed=t.grid_seed)
        scores = evaluate_generator(G, run.data.images, t.eval_samples, t.eval_seed, self.features, self.reference,
                                    self.net).metrics
        scores["eval_seconds"] = time.perf_counter() - start  # what the evaluation costs the run
        progress.evals.append({"epoch": progress.epoch, **scores})
        write_evals(progress.evals)
        run.tracker.log_metrics({f"eval.{k}": v for k, v in scores.items()}, step=progress.epoch)
        if improves(scores.get(t.best_metric), progress.best_value, t.best_metric):
            progress.best_value, progress.best_epoch = scores[t.best_metric], progress.epoch
            progress.best_generator = state.generator_state(G)

    def on_end(self, run: Run) -> None:
        p, t = run.progress, run.params.train
        if p.best_generator is not None:
            run.tracker.set_tags({"best_epoch": str(p.best_epoch), f"best_{t.best_metric}": f"{p.best_value:.6g}"})
            print(f"train: best generator at epoch {p.best_epoch} ({t.best_metric}={p.best_value:.4g})")


class Checkpoints(Hook):
    """A resumable checkpoint every ``checkpoint_every`` epochs, and the final one, marked complete."""

    def on_start(self, run: Run) -> None:
        remove_stale_temp_files(layout.CHECKPOINT.parent)

    def on_epoch_end(self, run: Run) -> None:
        if run.noise_states:  # gathered by the loop where a checkpoint is due
            checkpoint.save(run.snapshot(), layout.CHECKPOINT)

    def on_end(self, run: Run) -> None:
        if len(set(run.digests)) > 1:
            raise RuntimeError(f"train: the {run.world} replicas ended with different weights: {run.digests}")
        final = run.snapshot()
        G_eval = run.gan.eval_generator(seed=run.params.train.grid_seed)
        final.update(generator_eval=state.generator_state(G_eval), complete=True, replica_digests=run.digests)
        checkpoint.save(final, layout.CHECKPOINT)


def main_process_hooks() -> list[Hook]:
    return [Tracking(), Console(), History(), Grids(), Evaluation(), Checkpoints()]
