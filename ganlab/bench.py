"""``gan bench``: how fast this project trains, measured honestly.

Two measurements, both on whatever device runs them:

- **steps**: pure training steps of this project's loop against the lecture's notebook loop,
  same model, batch and optimiser, in interleaved trials (notebook, ours, notebook, ours, ...)
  so that a busy machine slows both alike; medians and spreads, never one figure. The
  notebook loop is re-implemented faithfully: an ImageFolder DataLoader that decodes and
  transforms PNG files every epoch, Sigmoid + ``F.binary_cross_entropy``, fp32, and
  ``.item()`` after every step.
- **end to end**: the real ``gan train`` command in a temporary project with the shipped
  cadence (ticks, grids, evaluations, checkpoints, MLflow), on 220 and 1000 images for a
  fixed number of kimg: effective images/s, the pure-step images/s of the same settings,
  their ratio, and the bytes the run left in reports/, models/ and the MLflow store.

It lives in the package, not beside it as nanoGPT's ``bench.py`` does, because the installed
``gan bench`` command runs it (a top-level script would not be on an installed ``gan``'s path).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
import yaml
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from ganlab.data.dataset import DeviceData, to_tensor
from ganlab.data.demo_faces import write_demo_faces
from ganlab.device import autocast_for, resolve_device
from ganlab.io import run_checkpoint
from ganlab.io.mlflow_store import create_store
from ganlab.nets.dcgan import Discriminator, Generator, init_dcgan_
from ganlab.params import Params, parse_params
from ganlab.training import distributed
from ganlab.training.clock import Clock
from ganlab.training.loop import build, train_steps
from ganlab.training.state import Streams

CONFIGS = {  # name: (image size, G width, D width, batch size)
    "lecture-128": (128, 32, 64, 128),
    "demo-64": (64, 16, 32, 64),
}
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "4090": 165.0}


@dataclass
class Spread:
    """Median and range of repeated trials; ``spread`` is (max - min) / median."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(round(statistics.median(values), 2), round(min(values), 2), round(max(values), 2))

    @property
    def spread(self) -> float:
        return (self.high - self.low) / self.median if self.median else float("nan")

    def __str__(self) -> str:
        return f"{self.median:.1f} [{self.low:.1f}..{self.high:.1f}]"


@dataclass
class StepResult:
    config: str
    device: str
    image_size: int
    batch_size: int
    trials: int
    notebook_images_per_s: Spread
    ours_images_per_s: Spread
    speedup: Spread  # per trial, ours / notebook
    train_gflop_per_image: float
    ours_tflops: float
    sampling_images_per_s: float
    peak_share: float | None


@dataclass
class EndToEndResult:
    config: str
    device: str
    discriminator: str  # the networks and D of both measurements (the shipped ones unless --arch)
    images: int
    kimg: float
    pure_step_images_per_s: float  # median of trials, same model, batch and data set size
    end_to_end_images_per_s: float  # kimg over the wall time of the whole `gan train` process
    loop_images_per_s: float  # kimg over the training loop's own clock (timing.csv `seconds`): no process start
    ratio: float  # end to end / pure step
    megabytes_written: float  # reports/, models/, mlruns/ and mlflow.db after the run
    grids: int
    checkpoints: int


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds x 2 of every (transposed) convolution for one input, from layer shapes."""
    flops = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal flops
        k = m.kernel_size[0] * m.kernel_size[1]
        spatial = (
            inp[0].shape[-2] * inp[0].shape[-1] if isinstance(m, nn.ConvTranspose2d) else out.shape[-2] * out.shape[-1]
        )
        flops += 2 * m.in_channels * m.out_channels * k * spatial

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *input_shape))
    for h in handles:
        h.remove()
    return flops


def train_flops_per_image(G: Generator, D: Discriminator) -> int:
    """Per real image, one D step and one G step (backward ~ 2x forward):
    D step: G fwd, D fwd x2 (real, fake), D bwd x2; G step: G fwd, D fwd, D bwd, G bwd."""
    g, d = forward_flops(G, (G.latent_size,)), forward_flops(D, (3, D.image_size, D.image_size))
    return 4 * g + 9 * d


def _images(folder: Path, count: int, size: int) -> torch.Tensor:
    write_demo_faces(folder / "faces", count, seed=0, size=size)
    (folder / "faces" / "labels.csv").unlink()
    return to_tensor(
        np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted((folder / "faces").glob("*.png"))])
    )


class NotebookLoop:
    """The lecture notebook's loop, as written there (only the timing is ours); one trial is
    one epoch of ``steps`` batches, with the DataLoader's fresh workers as in the notebook."""

    def __init__(self, folder: Path, size: int, gw: int, dw: int, batch: int, device: torch.device):
        stats = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        ds = ImageFolder(
            str(folder), transform=T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(*stats)])
        )
        with warnings.catch_warnings():  # the notebook's 3 workers exceed a 2-core machine; keep them, quietly
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            self.train_dl = DataLoader(
                ds, batch, shuffle=True, num_workers=3, pin_memory=device.type == "cuda", drop_last=True
            )
        self.batch, self.device, self.latent_size = batch, device, 128
        torch.manual_seed(0)
        self.generator = Generator(self.latent_size, size, gw).to(device)
        self.discriminator = nn.Sequential(Discriminator(size, dw), nn.Sigmoid()).to(device)
        init_dcgan_(self.generator)
        init_dcgan_(self.discriminator)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def train_discriminator(self, real_images):
        device, batch = self.device, self.batch
        self.opt_d.zero_grad()
        real_preds = self.discriminator(real_images)
        real_targets = torch.ones(real_images.size(0), device=device)
        real_loss = F.binary_cross_entropy(real_preds, real_targets)
        real_score = torch.mean(real_preds).item()
        latent = torch.randn(batch, self.latent_size, 1, 1, device=device)
        fake_images = self.generator(latent)
        fake_targets = torch.zeros(fake_images.size(0), device=device)
        fake_preds = self.discriminator(fake_images)
        fake_loss = F.binary_cross_entropy(fake_preds, fake_targets)
        fake_score = torch.mean(fake_preds).item()
        loss = real_loss + fake_loss
        loss.backward()
        self.opt_d.step()
        return loss.item(), real_score, fake_score

    def train_generator(self):
        self.opt_g.zero_grad()
        latent = torch.randn(self.batch, self.latent_size, 1, 1, device=self.device)
        fake_images = self.generator(latent)
        preds = self.discriminator(fake_images)
        targets = torch.ones(self.batch, device=self.device)
        loss = F.binary_cross_entropy(preds, targets)
        loss.backward()
        self.opt_g.step()
        return loss.item()

    def epoch(self) -> float:
        """Images/s of one epoch, worker start-up included (the notebook pays it every epoch)."""
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="This DataLoader will create")
            for real_images, _ in self.train_dl:
                self.train_discriminator(real_images.to(self.device))
                self.train_generator()
        return len(self.train_dl) * self.batch / (time.perf_counter() - start)


class OurLoop:
    """This project's training steps (``loop.train_steps``) on a data set held on the device;
    against the notebook, with the notebook's model (the lecture's D)."""

    def __init__(
        self,
        data: torch.Tensor,
        gw: int,
        dw: int,
        batch: int,
        device: torch.device,
        discriminator: str = "dcgan",
        arch: str = "dcgan",
    ):
        model = {"g_width": gw, "d_width": dw, "discriminator": discriminator, "arch": arch}
        self.p = parse_params({"model": model, "train": {"batch_size": batch, "lr": 2e-4}})
        self.gan = build(self.p.model, self.p.train, data.shape[-1], device, 0)
        self.autocast = autocast_for(device, self.p.train.amp)
        self.streams = Streams.seeded(0, device)
        self.data = DeviceData(data, device)
        self.clock = Clock.of(self.p.train, len(self.data))
        self.step = 0

    def run(self, steps: int) -> float:
        start = time.perf_counter()
        log = train_steps(
            self.gan, self.data, self.p.train, self.clock, self.streams, self.step, self.step + steps, self.autocast
        )
        log.cpu()  # the one sync, as at a tick
        self.step += steps
        return steps * self.clock.batch / (time.perf_counter() - start)

    def sampling(self) -> float:
        G, device = self.gan.G.eval(), self.data.images.device
        z = torch.randn(256, G.latent_size, device=device)
        with torch.inference_mode(), self.autocast():
            G(z)
            _sync(device)
            start = time.perf_counter()
            for _ in range(4):
                G(z)
            _sync(device)
        G.train()
        return 4 * 256 / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"


def bench_steps(config: str, trials: int, steps: int, device: torch.device) -> StepResult:
    size, gw, dw, batch = CONFIGS[config]
    name = _device_name(device)
    with tempfile.TemporaryDirectory() as tmp:
        data = _images(Path(tmp), steps * batch, size)
        notebook, ours = NotebookLoop(Path(tmp), size, gw, dw, batch, device), OurLoop(data, gw, dw, batch, device)
        notebook.epoch(), ours.run(steps)  # warm-up: allocator, cuDNN autotuning, worker start-up
        nb, us = [], []
        for _ in range(trials):  # interleaved, so that a busy machine slows both alike
            nb.append(notebook.epoch())
            us.append(ours.run(steps))
    flops = train_flops_per_image(Generator(128, size, gw), Discriminator(size, dw))
    ours_rate = statistics.median(us)
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None) if device.type == "cuda" else None
    tflops = flops * ours_rate / 1e12
    return StepResult(
        config,
        name,
        size,
        batch,
        trials,
        Spread.of(nb),
        Spread.of(us),
        Spread.of([u / n for u, n in zip(us, nb)]),
        round(flops / 1e9, 3),
        round(tflops, 4),
        round(ours.sampling(), 1),
        round(tflops / peak, 4) if peak else None,
    )


def pure_steps(
    config: str, images: int, trials: int, steps: int, device: torch.device, discriminator: str, arch: str
) -> float:
    size, gw, dw, batch = CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        loop = OurLoop(_images(Path(tmp), images, size), gw, dw, batch, device, discriminator, arch)
    loop.run(steps)
    return statistics.median(loop.run(steps) for _ in range(trials))


SCOPES = ("D step", "G step")  # the loop's two profiler scopes (train_steps)


def _labelled(module: nn.Module, label: str) -> None:
    """Every forward pass of ``module`` as a profiler range named ``label`` (hooks, so the
    module, its parameter names and what the loop does with it stay as they are)."""
    open_ranges = []

    def enter(*_):
        open_ranges.append(torch.profiler.record_function(label).__enter__())

    def leave(*_):
        open_ranges.pop().__exit__(None, None, None)

    module.register_forward_pre_hook(enter)
    module.register_forward_hook(leave)


def _part(name: str) -> str | None:
    """What part of a step a profiler range is: a labelled forward pass, the backward pass, the optimizer."""
    if name in ("G forward", "D forward"):
        return name
    if name.startswith("autograd::engine::evaluate_function"):
        return "backward"
    if name.startswith("Optimizer."):
        return "optimizer"
    return None


def _breakdown(scope) -> dict[str, float]:
    """Microseconds of ``scope`` in each part (the outermost range of a part counts), the rest as "rest"."""
    parts: dict[str, float] = {}
    todo = list(scope.cpu_children)
    while todo:
        e = todo.pop()
        if (part := _part(e.name)) is not None:
            parts[part] = parts.get(part, 0.0) + e.cpu_time_total
        else:
            todo += e.cpu_children
    parts["rest"] = scope.cpu_time_total - sum(parts.values())
    return parts


def profile_steps(
    config: str, steps: int, device: torch.device, discriminator: str, arch: str = "dcgan"
) -> list[tuple[str, float]]:
    """Milliseconds per training step in the loop's D step and G step, each split here into G's
    and D's forward passes, the backward pass, the optimizer and the rest (augmentation, losses,
    the EMA), plus the data and "other" (the log, what no range covers): where a step's time goes,
    before choosing what to speed up. The loop itself carries two coarse ranges only, so that it
    reads as the algorithm; the finer labels are hooks added here. On CUDA the parts are the host's
    time to launch their work (the backward pass runs on the device's own thread: in "rest")."""
    size, gw, dw, batch = CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        loop = OurLoop(_images(Path(tmp), 4 * batch, size), gw, dw, batch, device, discriminator, arch)
    loop.run(2)  # warm-up: allocator, oneDNN kernels
    _labelled(distributed.unwrap(loop.gan.G), "G forward")
    _labelled(distributed.unwrap(loop.gan.D), "D forward")
    batch_of = loop.data.batch

    def data(idx):
        with torch.profiler.record_function("data"):
            return batch_of(idx)

    loop.data.batch = data
    os.environ.setdefault("KINETO_LOG_LEVEL", "5")  # the profiler's own start/stop lines, not ours to show
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        loop.run(steps)
        wall = (time.perf_counter() - start) * 1e3 / steps
    total: dict[str, float] = {}
    for e in prof.events():
        if e.name == "data":
            total["data"] = total.get("data", 0.0) + e.cpu_time_total
        elif e.name in SCOPES:
            for part, us in _breakdown(e).items():
                total[f"{e.name}: {part}"] = total.get(f"{e.name}: {part}", 0.0) + us
    rows = sorted(((k, us / 1e3 / steps) for k, us in total.items()), key=lambda r: -r[1])
    return [*rows, ("other", max(0.0, wall - sum(ms for _, ms in rows))), ("step (wall)", wall)]


def print_profile(
    configs: list[str] | None, steps: int, device: str, discriminator: str | None, arch: str | None = None
) -> None:
    dev = resolve_device(device)
    discriminator = discriminator or Params().model.discriminator
    arch = arch or Params().model.arch
    for config in configs or ["demo-64"]:
        rows = profile_steps(config, steps, dev, discriminator, arch)
        wall = rows[-1][1]
        print(
            f"{config}, {arch} nets, {discriminator} D, {_device_name(dev)}: ms per training step ({steps} steps profiled)"
        )
        for name, ms in rows:
            print(f"  {name:24} {ms:8.2f} ms {100 * ms / wall:5.1f}%")


def _folder_bytes(root: Path) -> int:
    paths = [root / "reports", root / "models", root / "mlruns", root / "mlflow.db"]
    return sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())


def end_to_end(
    config: str, images: int, kimg: float, device: torch.device, trials: int, steps: int, arch: str | None = None
) -> EndToEndResult:
    """``gan prepare`` and ``gan train`` in a temporary project with the shipped params but for
    the model, batch, length and device; the store exists first, as in any project after its first run."""
    size, gw, dw, batch = CONFIGS[config]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_demo_faces(root / "raw", images, seed=1, size=size)
        (root / "raw" / "labels.csv").unlink()  # own images: no labels, no attribute metrics
        shipped = Params().model_dump(mode="json")
        shipped["prepare"].update(source="raw", image_size=size)
        shipped["model"].update(g_width=gw, d_width=dw, arch=arch or shipped["model"]["arch"])
        shipped["train"].update(batch_size=batch, kimg=kimg)
        shipped["device"] = device.type
        (root / "params.yaml").write_text(yaml.safe_dump(shipped, sort_keys=False))
        create_store(root / "mlflow.db")
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        gan = [sys.executable, "-m", "stages.cli"]
        subprocess.run([*gan, "prepare"], cwd=root, env=env, check=True, capture_output=True)
        start = time.perf_counter()
        out = subprocess.run([*gan, "train"], cwd=root, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if out.returncode:
            raise RuntimeError(f"bench: gan train failed:\n{out.stderr[-2000:]}")
        timing = list(csv.DictReader(open(root / "reports/train/timing.csv")))
        shown = float(timing[-1]["kimg"]) * 1000
        written = _folder_bytes(root)
        grids = len(list((root / "reports/train/grids").glob("*.png")))
        checkpoints = len(run_checkpoint.load(root / "models/checkpoint.pt", "").checkpoints) + 1  # + the final one
    pure = pure_steps(
        config, images, trials, steps, device, shipped["model"]["discriminator"], shipped["model"]["arch"]
    )
    return EndToEndResult(
        config,
        _device_name(device),
        f"{shipped['model']['arch']} nets, {shipped['model']['discriminator']}",
        images,
        kimg,
        round(pure, 1),
        round(shown / wall, 1),
        round(shown / float(timing[-1]["seconds"]), 1),
        round(shown / wall / pure, 3),
        round(written / 1e6, 1),
        grids,
        checkpoints,
    )


def main(
    configs: list[str] | None = None,
    trials: int = 5,
    steps: int = 8,
    device: str = "auto",
    as_json: bool = False,
    end_to_end_sizes: tuple[int, ...] = (220, 1000),
    kimg: float | None = None,
    arch: str | None = None,
) -> None:
    dev = resolve_device(device)
    configs = configs or (
        list(CONFIGS) if dev.type == "cuda" else ["demo-64"]
    )  # lecture-128 on 2 CPU cores: minutes per trial
    kimg = kimg or (300.0 if dev.type == "cuda" else 40.0)
    results: list = [bench_steps(c, trials, steps, dev) for c in configs]
    if not as_json:
        print(f"pure training steps, {trials} interleaved trials of {steps} steps: median [min..max]")
        print(
            f"{'config':12} {'device':24} {'notebook img/s':>22} {'ours img/s':>24} {'ratio':>18} {'TFLOP/s':>8} {'sample img/s':>13}"
        )
        for r in results:
            print(
                f"{r.config:12} {r.device[:24]:24} {str(r.notebook_images_per_s):>22} {str(r.ours_images_per_s):>24} "
                f"{r.speedup.median:6.2f} [{r.speedup.low:.2f}..{r.speedup.high:.2f}] {r.ours_tflops:8.4f} {r.sampling_images_per_s:13.1f}"
                + (f"  ({r.peak_share:.1%} of bf16 peak)" if r.peak_share else "")
            )
    e2e = [end_to_end(configs[-1], n, kimg, dev, trials, steps, arch) for n in end_to_end_sizes]
    if as_json:
        print(
            json.dumps(
                [{**asdict(r), "kind": "steps"} for r in results] + [{**asdict(r), "kind": "end_to_end"} for r in e2e],
                indent=1,
            )
        )
        return
    if e2e:
        print(
            f"\nend to end: `gan train` with the shipped cadence, {e2e[0].discriminator} D, for {kimg:g} kimg ({configs[-1]})"
        )
        print(
            f"{'images':>7} {'device':24} {'pure-step img/s':>16} {'end-to-end img/s':>17} {'ratio':>6} {'loop img/s':>11} {'MB written':>11} {'grids':>6} {'ckpts':>6}"
        )
        for r in e2e:
            print(
                f"{r.images:7d} {r.device[:24]:24} {r.pure_step_images_per_s:16.1f} {r.end_to_end_images_per_s:17.1f} {r.ratio:6.2f} "
                f"{r.loop_images_per_s:11.1f} {r.megabytes_written:11.1f} {r.grids:6d} {r.checkpoints:6d}"
            )
