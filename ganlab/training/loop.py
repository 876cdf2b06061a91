"""The lecture's training loop: for every batch, k discriminator steps, then one generator step.

Step 1 fixes G and updates D to maximise log D(x) + log(1 - D(G(z))); step 2 fixes D and updates
G to maximise log D(G(z)). Everything else (history, grids, evaluation, checkpoints, MLflow)
hangs off named hooks (``hooks.py``), called at the points of the progress clock
(``clock.py``). Data, batch order, noise and per-step metrics stay on the training device; the
host reads the metrics once per tick, not once per step.
"""

from __future__ import annotations

import copy
import functools
import os
import random
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import nn
from torch.profiler import record_function as phase

from ganlab import layout
from ganlab.data.dataset import DeviceData, StreamedData, dataset_sha, open_dataset
from ganlab.device import autocast_for
from ganlab.errors import UserError
from ganlab.io import lock, run_record
from ganlab.io.tracking import finish_left_open, open_status
from ganlab.nets.dcgan import recalibrate_batchnorm
from ganlab.nets.factory import networks
from ganlab.params import ModelParams, Params, TrainParams
from ganlab.training import budget, distributed, session
from ganlab.training.augment import adapt_, diff_augment, random_flip, sign_agreement
from ganlab.training.best import plateaued
from ganlab.training.budget import out_of_time
from ganlab.training.clock import Clock
from ganlab.training.ema import make_ema, update_ema
from ganlab.training.events import Due, Ended, Hook, Hooks, Run
from ganlab.training.loss import Loss, gradient_penalty, objective
from ganlab.training.state import Progress, Streams, fingerprint, read, restore

METRICS = ("loss_d", "loss_g", "real_score", "fake_score", "augment_p", "r_t")


@dataclass
class GAN:
    G: nn.Module  # a Generator, or DDP / torch.compile around one
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    latent_size: int
    arch: str
    ema: nn.Module | None = None  # moving average of G, when train.ema > 0
    augment_p: torch.Tensor | None = None  # ADA's strength (0-dim, on the device), when train.ada_target is set

    @property
    def generator_for_images(self) -> nn.Module:
        """What grids, samples and metrics show: the EMA generator when there is one."""
        return self.ema if self.ema is not None else distributed.unwrap(self.G)

    def eval_generator(self, seed: int) -> nn.Module:
        """A copy of the image generator with BN statistics (if it has any) re-estimated for eval-mode
        sampling; in the default memory format, as the later stages load it (the same numbers)."""
        G = copy.deepcopy(self.generator_for_images).requires_grad_(True)
        return recalibrate_batchnorm(G.to(memory_format=torch.contiguous_format), seed=seed)


def build(m: ModelParams, t: TrainParams, image_size: int, device: torch.device, seed: int, world: int = 1) -> GAN:
    torch.manual_seed(seed)
    random.seed(seed)  # training draws only from its own streams; the global states are seeded so that
    np.random.seed(seed % 2**32)  # the checkpoint, which keeps them for exact resume, is the same bytes on every run
    G, D = networks(m.arch, m.discriminator, m.latent_size, image_size, m.g_width, m.d_width, m.d_spectral_norm)
    fmt = torch.channels_last if t.channels_last else torch.contiguous_format
    G, D = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt)
    if t.compile:
        G, D = torch.compile(G), torch.compile(D)
    if world > 1:
        G, D = distributed.wrap(G, device, t.sync_batchnorm), distributed.wrap(D, device, t.sync_batchnorm)
    fused = device.type == "cuda"
    return GAN(
        G,
        D,
        torch.optim.Adam(G.parameters(), t.lr_g or t.lr, betas=t.betas, fused=fused or None),
        torch.optim.Adam(
            [p for p in D.parameters() if p.requires_grad], t.lr_d or t.lr, betas=t.betas, fused=fused or None
        ),
        m.latent_size,
        m.arch,
        make_ema(distributed.unwrap(G)) if t.ema > 0 else None,
        torch.zeros((), device=device) if t.ada_target else None,
    )


@dataclass(frozen=True)
class Recipe:
    """What every step of a run shares: its loss and penalties, its augmentation, its noise."""

    t: TrainParams
    loss: Loss
    r1_gamma: float
    r2_gamma: float
    rng: torch.Generator  # the run's noise stream (Streams.noise): z, flips and augmentations
    p: torch.Tensor | None  # ADA's strength, adapted in place
    strength: torch.Tensor  # what the log shows of it: a view of p, or 1 or 0 for fixed DiffAugment
    autocast: Callable
    world: int

    @classmethod
    def of(cls, gan: GAN, t: TrainParams, streams: Streams, autocast, world: int = 1) -> Recipe:
        loss, r1_gamma, r2_gamma = objective(gan.arch, t)
        p = gan.augment_p
        strength = (
            p if p is not None else torch.tensor(float(bool(t.diffaugment)), device=streams.noise.device)
        ).reshape(1)
        return cls(t, loss, r1_gamma, r2_gamma, streams.noise, p, strength, autocast, world)

    def aug(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.t.diffaugment, self.rng, self.p) if self.t.diffaugment else x

    def noise(self, gan: GAN, m: int) -> torch.Tensor:
        return torch.randn(m, gan.latent_size, device=self.rng.device, generator=self.rng)


@dataclass
class DStep:
    loss: torch.Tensor
    real_in: torch.Tensor  # the reals as D saw them (augmented): G's step pairs its fakes with them
    real_logits: torch.Tensor
    fake_logits: torch.Tensor


def train_steps(
    gan: GAN,
    data: DeviceData | StreamedData,
    t: TrainParams,
    clock: Clock,
    streams: Streams,
    first: int,
    stop: int,
    autocast,
    rank: int = 0,
    world: int = 1,
) -> torch.Tensor:
    """Steps ``first`` .. ``stop - 1`` (a step is one D update); each rank trains on its shard of every batch.

    Returns a (steps, len(METRICS)) device tensor of per-step METRICS (loss_g is NaN where G did not
    update). Nothing here waits for the device.
    """
    r = Recipe.of(gan, t, streams, autocast, world)
    log = torch.full((stop - first, len(METRICS)), float("nan"), device=r.rng.device)
    batches = clock.batch_indices(first, stop, streams.perm, streams.seed)
    for i, (step, idx) in enumerate(zip(range(first, stop), batches)):
        real = real_batch(data, idx[rank::world], r)
        # Step 1: fix G, update D to maximise log D(x) + log(1 - D(G(z)))
        with phase("D step"):
            d = d_step(gan, real, r, penalties=step % t.r1_every == 0)
        log[i, 0], log[i, 2:] = d.loss.detach(), d_metrics(d, r, real.shape[0])
        if (step + 1) % t.d_steps:  # k D steps per G step
            continue
        # Step 2: fix D, update G to maximise log D(G(z)) on fresh noise
        with phase("G step"):
            log[i, 1] = g_step(gan, d.real_in, r, g_updates=(step + 1) // t.d_steps).detach()
    return log


def real_batch(data: DeviceData | StreamedData, idx: torch.Tensor, r: Recipe) -> torch.Tensor:
    fmt = torch.channels_last if r.t.channels_last else torch.contiguous_format
    real = data.batch(idx).contiguous(memory_format=fmt)
    return random_flip(real, r.rng) if r.t.flip else real


def d_step(gan: GAN, real: torch.Tensor, r: Recipe, penalties: bool) -> DStep:
    """One update of D on a batch of reals and as many fakes; R1 and R2 (lazy, every
    ``train.r1_every`` steps) in fp32, for a stable double backward."""
    G, D = gan.G, gan.D
    with r.autocast():
        with torch.no_grad():
            fake = G(r.noise(gan, real.shape[0]))
        real_in, fake_in = r.aug(real), r.aug(fake)
        real_logits, fake_logits = D(real_in), D(fake_in)
        loss_d = r.loss.d(real_logits.float(), fake_logits.float())
    if penalties:
        for gamma, images in ((r.r1_gamma, real), (r.r2_gamma, fake)):
            if gamma:
                x = images.detach().float().requires_grad_(True)  # fakes were drawn under autocast
                loss_d = loss_d + (gamma / 2 * r.t.r1_every) * gradient_penalty(D(r.aug(x)).float(), x)
    gan.opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    gan.opt_d.step()
    return DStep(loss_d, real_in, real_logits, fake_logits)


def d_metrics(d: DStep, r: Recipe, m: int) -> torch.Tensor:
    """The step's real_score, fake_score, augment_p and r_t; then ADA's strength moves (the row
    shows the strength this step trained with)."""
    r_t = distributed.average(sign_agreement(d.real_logits), r.world)
    row = torch.cat(
        [
            torch.sigmoid(d.real_logits.detach().float()).mean().reshape(1),
            torch.sigmoid(d.fake_logits.detach().float()).mean().reshape(1),
            r.strength,
            r_t.reshape(1),
        ]
    )
    if r.p is not None:
        adapt_(r.p, r_t, r.t.ada_target, m * r.world, r.t.ada_kimg)
    return row


def g_step(gan: GAN, real_in: torch.Tensor, r: Recipe, g_updates: int) -> torch.Tensor:
    """One update of G on fresh noise, D frozen (``frozen``); the pairing loss also reads D's
    scores of the D step's reals, as augmented there. Then the EMA follows G."""
    G, D = gan.G, gan.D
    with r.autocast():
        fake_in = r.aug(G(r.noise(gan, real_in.shape[0])))
        with frozen(D) if r.world == 1 else nullcontext():
            paired = D(real_in).float() if r.loss.pairs else None
            loss_g = r.loss.g(D(fake_in).float(), paired)
    gan.opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    gan.opt_g.step()
    if gan.ema is not None:
        update_ema(gan.ema, distributed.unwrap(G), r.t.ema, g_updates)
    return loss_g


@contextmanager
def frozen(D: nn.Module):
    """D's forward in G's step, recorded without gradients for D's weights.

    G's step needs D's gradient with respect to its input only; the weight gradients that the
    lecture's loop (and pytorch/examples' dcgan) also computes there are discarded by D's next
    zero_grad. Autograd records at each op whether a weight needs a gradient, so freezing D
    for the forward pass alone skips that half of D's backward, and G's update is the same to
    the last bit. Not under DDP (``world > 1``): its reducer waits for every weight's gradient.
    """
    weights = [w for w in D.parameters() if w.requires_grad]
    for w in weights:
        w.requires_grad_(False)
    try:
        yield
    finally:
        for w in weights:
            w.requires_grad_(True)


def summarise(log: torch.Tensor, first_step: int, d_steps: int, clock: Clock) -> dict[str, float]:
    """Tick means from the per-step log (the one host sync of the tick); a non-finite loss
    stops training with the exact step it first appeared at."""
    rows = log.cpu()
    updates = torch.arange(first_step + 1, first_step + 1 + len(rows))  # D updates, counted from 1
    g_rows = updates % d_steps == 0
    bad = ~torch.isfinite(rows[:, 0]) | (g_rows & ~torch.isfinite(rows[:, 1]))
    if bad.any():
        i = int(bad.nonzero()[0])
        key, value = ("loss_d", rows[i, 0]) if not torch.isfinite(rows[i, 0]) else ("loss_g", rows[i, 1])
        step = int(updates[i])
        raise FloatingPointError(
            f"train: {key} became {float(value)} at step {step} ({clock.kimg(step):g} kimg, "
            f"epoch {clock.epoch(step):.1f}); the last good checkpoint is kept in {layout.CHECKPOINT}"
        )
    means = {k: float(rows[:, j].mean()) for j, k in enumerate(METRICS)}
    means["loss_g"] = float(rows[g_rows, 1].mean()) if g_rows.any() else float("nan")
    return means


# the D loss at equilibrium is 2 ln 2 = 1.39 (BCE); above 10, D is confidently wrong on both kinds of image


DIVERGED_LOSS_D = 10.0


def divergence(history: list[dict[str, float]], lr: float, paired: bool = False) -> str | None:
    """Why the run has diverged, judged on its last two ticks, or None. A diverged run stops
    rather than spend its length on noise (train.lr 1 went on to loss_d 869 with both scores 0).
    ``paired``: the loss reads only the difference of D's real and fake scores (RpGAN), so their
    common level drifts freely: both near 0 is a healthy D there (a resize run on 200 photos sat at
    D(x) 0.002, D(G(z)) 0.0004, loss_d 0.31, and was stopped as diverged), and only loss_d counts."""
    if len(history) < 2:
        return None
    last = history[-2:]
    if all(r["loss_d"] > DIVERGED_LOSS_D for r in last):
        why = f"loss_d above {DIVERGED_LOSS_D:g} for two ticks"
    elif not paired and all(
        max(r["real_score"], r["fake_score"]) < 0.01 or min(r["real_score"], r["fake_score"]) > 0.99 for r in last
    ):
        why = "D gives real and generated images the same extreme score for two ticks"
    else:
        return None
    r = last[-1]
    return (
        f"train: diverged at {r['kimg']:g} kimg ({why}: loss_d={r['loss_d']:.4g}, mean D(x)={r['real_score']:.3g}, "
        f"mean D(G(z))={r['fake_score']:.3g}); the last checkpoint is kept in {layout.CHECKPOINT}; try a lower train.lr (now {lr:g})"
    )


def tick_rows(
    clock: Clock, progress: Progress, means: dict[str, float], tick_start: tuple[int, float]
) -> tuple[dict, dict]:
    """A history row (what the training computed: the same on every run) and a timing row
    (``seconds``: wall time since training began, hooks included, across resumes)."""
    step, seconds = tick_start
    kimg = clock.kimg(progress.step)
    return (
        {"kimg": kimg, "epoch": round(clock.epoch(progress.step), 3), **means},
        {
            "kimg": kimg,
            "images_per_s": (progress.step - step) * clock.batch / (progress.seconds - seconds),
            "seconds": progress.seconds,
        },
    )


def file_fault(e: OSError) -> UserError:
    """One line for a file the training could not write (a read-only folder, a full disk, ``ulimit -f``)."""
    name = e.filename
    if isinstance(name, str) and not (rel := os.path.relpath(name)).startswith(".."):
        name = rel
    where = f"{name}: cannot write" if name else "train: a file operation failed"
    kept = f"; the last checkpoint is kept in {layout.CHECKPOINT}" if layout.CHECKPOINT.is_file() else ""
    return UserError(f"{where} ({e.strerror or e}){kept}")


def training_loop(
    params: Params, hooks: Callable[[], list[Hook]], extend: bool | None = None
) -> dict[str, float] | None:
    """Train; returns the last tick's metrics on the main process, None on the others. ``hooks``
    makes the main process's hooks (``ganlab.hooks.main_process_hooks`` for a real run; a test
    passes its own). ``extend``: `gan train --extend` (True) or ``--fresh`` (False), over
    ``train.extend``. The main
    process holds the project's training lock from before it reads the checkpoint until the end.
    A file that cannot be written ends the run in one line (the hooks mark its MLflow run FAILED
    first); the checkpoint is written whole or not at all, so the last one is kept."""
    rank, world, device = distributed.setup(params.device)
    try:
        with lock.exclusive(layout.TRAIN_LOCK, "`gan train`") if rank == 0 else nullcontext():
            return _train(params, hooks, rank, world, device, extend)
    except OSError as e:
        raise file_fault(e) from None


def _train(
    params: Params,
    make_hooks: Callable[[], list[Hook]],
    rank: int,
    world: int,
    device: torch.device,
    extend: bool | None = None,
) -> dict[str, float] | None:
    run, done = _open_run(params, rank, world, device, extend)
    if run is None:  # nothing to train: the checkpoint already holds this run's result
        distributed.teardown(world)
        return done
    hooks = Hooks(make_hooks() if rank == 0 else [])  # rank 0 alone writes files and talks to MLflow
    try:
        hooks.on_start(run)
        _run_stops(run, hooks, rank)
        gan, streams = run.gan, run.streams
        end = Ended(
            tuple(distributed.gather(distributed.parameter_digest(gan.G) + distributed.parameter_digest(gan.D), world)),
            tuple(distributed.gather(streams.noise.get_state(), world)),
        )
        distributed.teardown(world)
        hooks.on_end(run, end)
    except BaseException as e:
        hooks.on_failure(run, e)
        distributed.teardown(world)
        raise
    return run.progress.history[-1] if rank == 0 else None


def _open_run(
    params: Params, rank: int, world: int, device: torch.device, extend: bool | None
) -> tuple[Run | None, dict[str, float] | None]:
    """The run to train as ``session.decide`` says what this start is; or (None, the result) when
    the checkpoint already holds it."""
    t = params.train
    data = open_dataset(layout.DATASET, device, t.data_on_device)
    if min(t.batch_size, len(data)) < world:  # torchrun; `gan train --nproc` says so before it starts the processes
        raise UserError(
            f"train: a step shows {min(t.batch_size, len(data))} images, fewer than the {world} processes that share it"
        )
    sha = dataset_sha(layout.MANIFEST)
    gan = build(params.model, t, data.images.shape[-1], device, t.seed, world)
    streams = Streams.seeded(t.seed, device, rank, data.index_device)
    fp, lineage = fingerprint(params, sha, world), fingerprint(params, sha, world, length=False)
    say = print if rank == 0 else lambda *_: None

    @functools.cache
    def planned() -> tuple[Clock, float | None, float]:
        plan, spent = _plan(t, gan, data, streams, fp, rank, world, device, say)
        return Clock.of(t, len(data), plan), plan, spent

    def left_open(run_id: str | None) -> str | None:  # rank 0 asks the store; every rank takes its answer
        status = open_status(run_id) if rank == 0 and run_id else None
        return (status or "open") if distributed.rank0_says(status is not None, world, device) else None

    existing = read(layout.CHECKPOINT, say)
    start = session.decide(existing, fp, lineage, t, extend, lambda: planned()[0], left_open)
    if start.kind == session.CLOSE and rank == 0:
        finish_left_open(start.mlflow_run, [layout.HISTORY, layout.TIMING], start.tags)
    if start.trains:
        planned()  # train.minutes measures here: its line comes before this start's
    if start.why:
        say(start.why)
    if not start.trains:
        return None, start.result if rank == 0 else None
    clock, plan, spent = planned()
    if start.checkpoint is None:
        progress = Progress(seconds=spent)
    else:
        progress = restore(gan, start.checkpoint, streams, rank)
        progress.seconds = start.seconds
        if start.kind == session.RESUME:
            progress.run_id = start.mlflow_run
        else:  # a new MLflow run: the old one's params (train.kimg, train.stop) stay true to what it ran
            progress.continues = start.mlflow_run
    start = replace(start, checkpoint=None)  # restored: a checkpoint is not held in memory for the whole run
    run = Run(params, gan, data, clock, streams, progress, fp, sha, device, world, start, lineage, planned_kimg=plan)
    return run, None


def _plan(
    t: TrainParams, gan: GAN, data, streams: Streams, fp: str, rank: int, world: int, device: torch.device, say
) -> tuple[float | None, float]:
    """(``train.minutes`` in kimg, the seconds spent finding out): the plan recorded for this run
    when it resumes, else measured now on rank 0 (budget.py); (None, 0) without ``train.minutes``."""
    if t.minutes is None:
        return None, 0.0
    kimg, spent = (run_record.plan(fp), 0.0) if rank == 0 else (0.0, 0.0)
    if rank == 0 and kimg is None:
        clock = Clock.of(t, len(data))  # its batch and batch order only
        autocast = autocast_for(device, t.amp)
        rate, spent = budget.measured_rate(
            lambda g, s, first, stop: train_steps(g, data, t, clock, s, first, stop, autocast), gan, clock, streams
        )
        kimg = budget.planned_kimg(t.minutes, rate * world, spent)
        say(
            f"train: train.minutes {t.minutes:g} at {rate * world:.0f} images/s (measured in {spent:.1f} s) "
            f"-> {kimg:.4g} kimg, {budget.HOOKS_SHARE:.0%} of the time left for evaluations, grids and checkpoints"
        )
    return distributed.rank0_number(kimg, world, device), spent


def _replan(run: Run, seconds: float) -> float | None:
    """``train.minutes`` planned again at an evaluation, from the pace the run has kept so far with
    its evaluations, grids and checkpoints (the start's measurement saw training steps only, on a
    machine whose speed may have drifted since); None when that is within 5% of the plan. Never
    before the next step: the run's end is always a stop still to come."""
    step, batch, plan = run.progress.step, run.clock.batch, run.planned_kimg
    kimg = max(budget.replanned_kimg(run.params.train.minutes, step * batch, seconds), (step + 1) * batch / 1000)
    kimg = distributed.rank0_number(kimg, run.world, run.device)  # rank 0's clock decides
    return kimg if plan is None or abs(kimg - plan) > 0.05 * plan else None


def _run_stops(run: Run, hooks: Hooks, rank: int) -> None:
    """Train from the run's step to its end or its train.stop, handing the hooks what is due at
    every stop of the clock."""
    t, clock, progress, gan, streams, world, device = (
        run.params.train,
        run.clock,
        run.progress,
        run.gan,
        run.streams,
        run.world,
        run.device,
    )
    autocast = autocast_for(device, t.amp)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    logs, tick_start, last = [], (progress.step, progress.seconds), time.perf_counter()
    stops = clock.stops(after=progress.step)
    while (stop := next(stops, None)) is not None:
        logs.append(train_steps(gan, run.data, t, clock, streams, progress.step, stop, autocast, rank, world))
        ticked = stop in clock.ticks  # the one host read of the losses since the last tick:
        means = (
            summarise(distributed.average(torch.cat(logs), world), tick_start[0], t.d_steps, clock) if ticked else {}
        )
        progress.step, progress.seconds, last = (
            stop,
            progress.seconds + time.perf_counter() - last,
            time.perf_counter(),
        )
        row = timing = None
        if ticked:
            row, timing = tick_rows(clock, progress, means, tick_start)
            progress.history.append(row)
            if why := divergence(progress.history, t.lr_d or t.lr, objective(gan.arch, t)[0].pairs):
                raise FloatingPointError(why)
            logs, tick_start = [], (stop, progress.seconds)
        noise_states = ()
        if stop in clock.checkpoints:
            noise_states = tuple(distributed.gather(streams.noise.get_state(), world))
            progress.checkpoints.append(clock.kimg(stop))
        evaluated, early = stop in clock.evals, stop < clock.total
        why = out_of_time(progress, t) if ticked and early else None
        ending = not early or why is not None  # the hooks evaluate and draw a grid at the end
        hooks.on_step(
            run,
            Due(
                stop,
                clock.kimg(stop),
                stop * clock.batch,
                row,
                timing,
                grid=stop in clock.grids or (ending and ticked),  # the last frame shows the last generator
                evaluate=bool(clock.evals) and (evaluated or ending),
                noise_states=noise_states,
                end=ending,
            ),
        )
        why = why or (plateaued(progress, t) if evaluated and early else None)  # after this step's evaluation
        # ticks and evaluations are the only stops where train.stop's answer can change: one broadcast each
        if (
            (t.stop.patience or t.budget)
            and (ticked or evaluated)
            and distributed.rank0_says(why is not None, world, device)
        ):
            if rank == 0:
                print(f"train: stopping at {clock.kimg(stop):g} of {clock.kimg(clock.total):g} kimg: {why}")
            if not ending:  # a plateau, known only after this step's evaluation: a last frame of the last generator
                hooks.on_step(
                    run, Due(stop, clock.kimg(stop), stop * clock.batch, grid=stop not in clock.grids, end=True)
                )
            return
        if t.minutes and evaluated and early and (kimg := _replan(run, progress.seconds + time.perf_counter() - last)):
            if rank == 0:
                print(
                    f"train: train.minutes {t.minutes:g}: {progress.seconds / 60:.1f} minutes for {clock.kimg(stop):g} kimg, "
                    f"so {kimg:.4g} kimg fit, not {run.planned_kimg:.4g}: planned again"
                )
            clock = run.replan(Clock.of(t, len(run.data), kimg), kimg)
            stops = clock.stops(after=stop)
