"""Stage ``train``: the lecture's alternating updates, as on its slides.

Per iteration: ``d_steps`` (k) discriminator updates maximising log D(x) + log(1 - D(G(z))),
then one generator update maximising log D(G(z)). Data, noise and running metrics stay on the
training device; the host reads the metrics once per epoch, not once per step.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from stages import checkpoint, distributed, layout, tracking
from stages.atomic import atomic_path, remove_stale_temp_files
from stages.data import DeviceData, StreamedData, open_dataset
from stages.hardware import autocast_for
from stages.augment import diff_augment, random_flip
from stages.ema import make_ema, update_ema
from stages.loss import LOSSES, r1_penalty
from stages.networks import Discriminator, Generator, init_dcgan_, recalibrate_batchnorm
from stages.params import ModelParams, Params, ParamsError, TrainParams, flatten
from stages.sampling import batch_statistics, fixed_latents, save_png, to_grid

METRICS = ("loss_d", "loss_g", "real_score", "fake_score")


@dataclass
class GAN:
    G: torch.nn.Module  # a Generator, or DDP around one
    D: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    latent_size: int
    ema: torch.nn.Module | None = None  # moving average of G, when train.ema > 0

    @property
    def generator_for_images(self) -> torch.nn.Module:
        """What grids, samples and metrics show: the EMA generator when there is one."""
        return self.ema if self.ema is not None else distributed.unwrap(self.G)


@dataclass
class Streams:
    """The run's random streams: batch order (the same on every rank) and noise (per rank)."""

    perm: torch.Generator
    noise: torch.Generator

    @classmethod
    def seeded(cls, seed: int, device: torch.device, rank: int = 0, index_device: torch.device | None = None) -> Streams:
        return cls(torch.Generator(device=index_device or device).manual_seed(seed),
                   torch.Generator(device=device).manual_seed(seed + 1_000_003 * (rank + 1)))


@dataclass
class Progress:
    epoch: int = 0
    d_updates: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    run_id: str | None = None
    evals: list[dict[str, float]] = field(default_factory=list)
    best_value: float | None = None
    best_epoch: int = 0
    best_generator: dict[str, torch.Tensor] | None = None


def make_evaluator(params: Params, real: torch.Tensor):
    """The cheap metrics (attribute fidelity where labels exist, memorisation) as a function
    of an eval-mode generator; None when ``train.eval_every`` is 0."""
    if not params.train.eval_every:
        return None
    from stages import attributes
    from stages.evaluate import generate
    from stages.metrics import attribute_fidelity, memorisation

    net, why = attributes.load()
    if net is None and params.train.best_metric.startswith("attr"):
        print(f"note: best checkpoint by {params.train.best_metric} is unavailable ({why}); later stages get the last generator")

    def evaluate(G_eval: Generator) -> dict[str, float]:
        fake = generate(G_eval, params.train.eval_samples, params.evaluate.seed).float().cpu()
        scores = attribute_fidelity(net, fake, real) if net is not None else {}
        scores.update(memorisation(fake, real)[0])
        return scores

    return evaluate


def _improves(value: float | None, best: float | None, metric: str) -> bool:
    from stages.metrics import DIRECTIONS

    if value is None or not math.isfinite(value):
        return False
    return best is None or (value < best if DIRECTIONS[metric] == "min" else value > best)


def build(m: ModelParams, t: TrainParams, image_size: int, device: torch.device, seed: int, world: int = 1) -> GAN:
    torch.manual_seed(seed)
    G, D = Generator(m.latent_size, image_size, m.g_width), Discriminator(image_size, m.d_width, m.d_spectral_norm)
    init_dcgan_(G)
    init_dcgan_(D)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    G, D = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt)
    if t.compile:
        G, D = torch.compile(G), torch.compile(D)
    if world > 1:
        G, D = distributed.wrap(G, device, t.sync_batchnorm), distributed.wrap(D, device, t.sync_batchnorm)
    fused = device.type == "cuda"
    return GAN(
        G, D,
        torch.optim.Adam(G.parameters(), t.lr_g or t.lr, betas=t.betas, fused=fused or None),
        torch.optim.Adam(D.parameters(), t.lr_d or t.lr, betas=t.betas, fused=fused or None),
        m.latent_size,
        make_ema(distributed.unwrap(G)) if t.ema > 0 else None,
    )


def train_epoch(gan: GAN, data: DeviceData | StreamedData, t: TrainParams, streams: Streams, d_updates: int, autocast,
                rank: int = 0, world: int = 1) -> tuple[torch.Tensor, int]:
    """One pass over a fresh permutation; each rank trains on its shard of every batch.

    Returns a (steps, 4) device tensor of per-step METRICS (loss_g is NaN where G did not
    update) and the new D-update count. Nothing here waits for the device.
    """
    G, D, dev = gan.G, gan.D, streams.noise.device
    n = len(data)
    b = min(t.batch_size, n)  # a data set smaller than the batch trains on all of it
    perm = torch.randperm(n, device=data.index_device, generator=streams.perm)
    log = torch.full((n // b, len(METRICS)), float("nan"), device=dev)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    d_loss_fn, g_loss_fn = LOSSES[t.loss]
    rng = streams.noise

    def aug(x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, t.diffaugment, rng) if t.diffaugment else x

    for i in range(n // b):
        real = data.batch(perm[i * b : (i + 1) * b][rank::world]).contiguous(memory_format=fmt)
        if t.flip:
            real = random_flip(real, rng)
        m = real.shape[0]
        # Step 1: fix G, update D to maximise log D(x) + log(1 - D(G(z)))
        z = torch.randn(m, gan.latent_size, device=dev, generator=rng)
        with autocast():
            fake = G(z).detach()
            real_logits, fake_logits = D(aug(real)), D(aug(fake))
            loss_d = d_loss_fn(real_logits.float(), fake_logits.float())
        if t.r1_gamma and d_updates % t.r1_every == 0:  # lazy R1, in fp32 for a stable double backward
            real_r1 = real.detach().requires_grad_(True)
            loss_d = loss_d + (t.r1_gamma / 2 * t.r1_every) * r1_penalty(D(aug(real_r1)).float(), real_r1)
        gan.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        gan.opt_d.step()
        d_updates += 1
        log[i, 0] = loss_d.detach()
        log[i, 2:] = torch.stack([torch.sigmoid(real_logits.detach().float()).mean(), torch.sigmoid(fake_logits.detach().float()).mean()])
        if d_updates % t.d_steps:
            continue
        # Step 2: fix D, update G to maximise log D(G(z)) on fresh noise
        z = torch.randn(m, gan.latent_size, device=dev, generator=rng)
        with autocast():
            loss_g = g_loss_fn(D(aug(G(z))).float())
        gan.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        gan.opt_g.step()
        if gan.ema is not None:
            update_ema(gan.ema, distributed.unwrap(G), t.ema, d_updates // t.d_steps)
        log[i, 1] = loss_g.detach()
    return log, d_updates


def summarise(log: torch.Tensor, first_update: int, d_steps: int, epoch: int) -> dict[str, float]:
    """Epoch means from the per-step log (the one host sync of the epoch); a non-finite loss
    stops training with the exact step it first appeared at."""
    rows = log.cpu()
    updates = torch.arange(first_update + 1, first_update + 1 + len(rows))
    g_rows = updates % d_steps == 0
    bad = ~torch.isfinite(rows[:, 0]) | (g_rows & ~torch.isfinite(rows[:, 1]))
    if bad.any():
        i = int(bad.nonzero()[0])
        key, value = ("loss_d", rows[i, 0]) if not torch.isfinite(rows[i, 0]) else ("loss_g", rows[i, 1])
        raise FloatingPointError(f"train: {key} became {float(value)} at epoch {epoch}, step {int(updates[i])} "
                                 f"(batch {i + 1} of the epoch); the last good checkpoint is kept in {layout.CHECKPOINT}")
    means = {k: float(rows[:, j].mean()) for j, k in enumerate(METRICS)}
    means["loss_g"] = float(rows[g_rows, 1].mean()) if g_rows.any() else float("nan")
    return means


def fingerprint(params: Params, dataset_sha: str, world: int) -> str:
    """Identifies everything that shapes the weights; a checkpoint resumes only under the same one."""
    shaping = {"model": params.model.model_dump(mode="json"), "data": dataset_sha, "world": world}
    shaping["train"] = params.train.model_dump(mode="json", exclude={"checkpoint_every", "log_checkpoint"})
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:16]


def write_history(history: list[dict[str, float]]) -> None:
    with atomic_path(layout.HISTORY) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", *METRICS, "images_per_s"])
        writer.writeheader()
        writer.writerows(history)


def write_evals(evals: list[dict[str, float]]) -> None:
    keys = list(dict.fromkeys(k for row in evals for k in row)) or ["epoch"]  # a declared output even when empty
    with atomic_path(layout.EVAL_HISTORY) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(evals)


def save_grid(G: torch.nn.Module, z: torch.Tensor, epoch: int) -> torch.Tensor:
    with torch.no_grad(), batch_statistics(G) as G_batch:
        grid = to_grid(G_batch(z))
    save_png(grid, layout.GRIDS / f"epoch_{epoch:04d}.png")
    return grid


def _state(gan: GAN, params: Params, image_size: int, progress: Progress, noise_states: list, streams: Streams, fp: str) -> dict[str, Any]:
    return {
        "format": 1,
        "model": {**params.model.model_dump(), "image_size": image_size},
        "generator": distributed.unwrap(gan.G).state_dict(),
        "discriminator": distributed.unwrap(gan.D).state_dict(),
        "ema": gan.ema.state_dict() if gan.ema is not None else None,
        "opt_g": gan.opt_g.state_dict(),
        "opt_d": gan.opt_d.state_dict(),
        "epoch": progress.epoch,
        "d_updates": progress.d_updates,
        "history": progress.history,
        "rng": checkpoint.capture_rng({"perm": streams.perm.get_state(), "noise": noise_states}),
        "fingerprint": fp,
        "mlflow_run_id": progress.run_id,
        "evals": progress.evals,
        "best_value": progress.best_value,
        "best_epoch": progress.best_epoch,
        "generator_best": progress.best_generator,
        "complete": False,
    }


def _resumable(fp: str, device: torch.device, verbose: bool) -> dict[str, Any] | None:
    say = print if verbose else (lambda *_: None)
    if not layout.CHECKPOINT.is_file():
        return None
    try:
        state = checkpoint.load(layout.CHECKPOINT, device)
    except ParamsError as e:
        say(f"starting fresh: {e}")
        return None
    if state.get("fingerprint") != fp:
        say(f"starting fresh: {layout.CHECKPOINT} was made with other params or data")
        return None
    if state.get("complete"):
        say(f"starting fresh: {layout.CHECKPOINT} is a finished run")
        return None
    return state


def _restore(gan: GAN, state: dict[str, Any], streams: Streams, rank: int) -> Progress:
    distributed.unwrap(gan.G).load_state_dict(state["generator"])
    distributed.unwrap(gan.D).load_state_dict(state["discriminator"])
    if gan.ema is not None:
        gan.ema.load_state_dict(state["ema"])
    gan.opt_g.load_state_dict(state["opt_g"])
    gan.opt_d.load_state_dict(state["opt_d"])
    saved = checkpoint.restore_rng(state["rng"])
    streams.perm.set_state(_on(saved["perm"], streams.perm))
    streams.noise.set_state(_on(saved["noise"][rank], streams.noise))
    return Progress(state["epoch"], state["d_updates"], state["history"], state["mlflow_run_id"],
                    state["evals"], state["best_value"], state["best_epoch"], state["generator_best"])


def _on(rng_state: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return rng_state.cpu() if generator.device.type == "cpu" else rng_state


def run(params: Params) -> dict[str, float] | None:
    """Train; on rank 0 also checkpoint, render grids and log to MLflow. Returns the last
    epoch's metrics (rank 0) or None (other ranks)."""
    import mlflow

    t = params.train
    rank, world, device = distributed.setup(t.device)
    main = rank == 0
    data = open_dataset(layout.DATASET, device, t.data_on_device)
    manifest = json.loads(layout.MANIFEST.read_text())
    image_size = data.images.shape[-1]
    fp = fingerprint(params, manifest["dataset_sha256"], world)

    gan = build(params.model, t, image_size, device, t.seed, world)
    streams = Streams.seeded(t.seed, device, rank, data.index_device)
    resumed = _resumable(fp, device, main)
    progress = _restore(gan, resumed, streams, rank) if resumed else Progress()
    if main:
        for folder in (layout.GRIDS, layout.TRAIN_REPORTS, layout.CHECKPOINT.parent):
            remove_stale_temp_files(folder)
    if main and resumed:
        print(f"resuming from {layout.CHECKPOINT} at epoch {progress.epoch}")
        for stale in layout.GRIDS.glob("epoch_*.png"):
            if int(stale.stem.split("_")[1]) > progress.epoch:
                stale.unlink()
    elif main:
        shutil.rmtree(layout.GRIDS, ignore_errors=True)

    logged_through = 0
    if main:
        exp_id = tracking.experiment_id(params.tracking.experiment)
        active = mlflow.start_run(run_id=progress.run_id) if progress.run_id else mlflow.start_run(experiment_id=exp_id)
        progress.run_id = active.info.run_id
        # A resumed run recomputes, bit for bit on CPU, the epochs after its checkpoint; those
        # already in MLflow are not logged twice.
        logged_through = tracking.last_logged_step(progress.run_id, "loss_d") if resumed else 0
        if not resumed:
            tracking.log_params(flatten(params))
            mlflow.set_tags({"git_commit": tracking.git_commit(), "dataset_sha256": manifest["dataset_sha256"],
                             "dataset_size": str(len(data)), "image_size": str(image_size), "device": str(device),
                             "processes": str(world), "data": type(data).__name__})
        tracking.write_run_info(progress.run_id, exp_id)

    autocast = autocast_for(device, t.amp)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    z_grid = fixed_latents(t.grid_seed, params.model.latent_size).to(device)
    G_images = gan.generator_for_images
    evaluator = make_evaluator(params, data.images.float().cpu()) if main else None
    if main:
        write_evals(progress.evals)

    def eval_copy() -> Generator:
        return recalibrate_batchnorm(_copy_generator(G_images, params.model, image_size, device), seed=t.grid_seed)
    if main and progress.epoch == 0:
        mlflow.log_image(to_pil(save_grid(G_images, z_grid, 0)), key="fixed_latent_grid", step=0)

    b = min(t.batch_size, len(data))
    per_epoch = (len(data) // b) * b
    epochs = range(progress.epoch, t.epochs)
    bar = tqdm(epochs, initial=progress.epoch, total=t.epochs, desc="train", unit="epoch", dynamic_ncols=True, disable=not main)
    try:
        for epoch in bar:
            t0 = time.perf_counter()
            first_update = progress.d_updates
            log, progress.d_updates = train_epoch(gan, data, t, streams, progress.d_updates, autocast, rank, world)
            means = summarise(distributed.average(log, world), first_update, t.d_steps, epoch + 1)
            row = {"epoch": epoch + 1, **means, "images_per_s": per_epoch / (time.perf_counter() - t0)}
            progress.history.append(row)
            progress.epoch = epoch + 1
            last = epoch + 1 == t.epochs
            checkpointing = progress.epoch % t.checkpoint_every == 0 and not last
            noise_states = distributed.gather(streams.noise.get_state(), world) if checkpointing else []
            if not main:
                continue
            if progress.epoch > logged_through:
                mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}, step=progress.epoch)
            write_history(progress.history)
            bar.set_postfix(loss_d=f"{row['loss_d']:.3f}", loss_g=f"{row['loss_g']:.3f}", img_s=f"{row['images_per_s']:.0f}")
            if progress.epoch % t.sample_every == 0 or last:
                grid = save_grid(G_images, z_grid, progress.epoch)
                if progress.epoch > logged_through:
                    mlflow.log_image(to_pil(grid), key="fixed_latent_grid", step=progress.epoch)
            if evaluator and (progress.epoch % t.eval_every == 0 or last):
                G_eval = eval_copy()
                scores = evaluator(G_eval)
                progress.evals.append({"epoch": progress.epoch, **scores})
                write_evals(progress.evals)
                if progress.epoch > logged_through:
                    mlflow.log_metrics({f"eval.{k.replace('/', '.')}": v for k, v in scores.items() if math.isfinite(v)}, step=progress.epoch)
                if _improves(scores.get(t.best_metric), progress.best_value, t.best_metric):
                    progress.best_value, progress.best_epoch = scores[t.best_metric], progress.epoch
                    progress.best_generator = {k: v.detach().clone() for k, v in G_eval.state_dict().items()}
            if checkpointing:
                checkpoint.save(_state(gan, params, image_size, progress, noise_states, streams, fp), layout.CHECKPOINT)
    except BaseException as e:
        if main:
            mlflow.end_run("FAILED" if isinstance(e, Exception) else "KILLED")
        distributed.teardown(world)
        raise

    digests = distributed.gather(distributed.parameter_digest(gan.G) + distributed.parameter_digest(gan.D), world)
    noise_states = distributed.gather(streams.noise.get_state(), world)
    distributed.teardown(world)
    if not main:
        return None
    if len(set(digests)) > 1:
        mlflow.end_run("FAILED")
        raise RuntimeError(f"train: the {world} replicas ended with different weights: {digests}")
    state = _state(gan, params, image_size, progress, noise_states, streams, fp)
    G_eval = eval_copy()
    state.update(generator_eval=G_eval.state_dict(), complete=True, replica_digests=digests)
    if progress.best_generator is not None:
        mlflow.set_tags({"best_epoch": str(progress.best_epoch), f"best_{t.best_metric}": f"{progress.best_value:.6g}"})
        print(f"train: best generator at epoch {progress.best_epoch} ({t.best_metric}={progress.best_value:.4g})")
    checkpoint.save(state, layout.CHECKPOINT)
    _log_generator(G_eval.cpu().float().to(memory_format=torch.contiguous_format))
    if t.log_checkpoint:
        mlflow.log_artifact(str(layout.CHECKPOINT), "checkpoint")
    mlflow.log_artifact(str(layout.HISTORY))
    mlflow.end_run()
    final = progress.history[-1]
    print("train: " + ", ".join(f"{k}={v:.4g}" for k, v in final.items()) + f" -> {layout.CHECKPOINT} (MLflow run {progress.run_id})")
    return final


def _copy_generator(G: Generator, m: ModelParams, image_size: int, device: torch.device) -> Generator:
    copy = Generator(m.latent_size, image_size, m.g_width).to(device)
    copy.load_state_dict(G.state_dict())
    return copy


def to_pil(grid: torch.Tensor):
    from torchvision.transforms.functional import to_pil_image

    return to_pil_image(grid)


def _log_generator(G: Generator) -> None:
    """The generator as an MLflow model: z (N, latent) float32 -> images (N, 3, S, S) in [-1, 1]."""
    import mlflow.pytorch

    example = fixed_latents(0, G.latent_size, 2).numpy()
    mlflow.pytorch.log_model(G, name="generator", input_example=example,
                             pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"])
