"""``gan bench``: training images/s of this project's loop against the lecture's notebook loop.

Both loops run in one process on the same machine, with the same model, batch size and
optimiser. The notebook loop is re-implemented faithfully: an ImageFolder DataLoader that
decodes and transforms PNG files every epoch, Sigmoid + ``F.binary_cross_entropy``, fp32,
and ``.item()`` after every step.
"""

from __future__ import annotations

import json
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms as T
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torchvision.datasets import ImageFolder

from ganlab.data.dataset import DeviceData, to_tensor
from ganlab.data.demo_faces import write_demo_faces
from ganlab.device import autocast_for, resolve_device
from ganlab.params import parse_params
from ganlab.training.loop import build, train_epoch
from ganlab.training.networks import Discriminator, Generator, init_dcgan_
from ganlab.training.state import Streams

CONFIGS = {  # name: (image size, G width, D width, batch size)
    "lecture-128": (128, 32, 64, 128),
    "demo-64": (64, 16, 32, 64),
}
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "A10": 125.0, "4090": 165.0}


@dataclass
class Result:
    config: str
    device: str
    image_size: int
    batch_size: int
    notebook_images_per_s: float
    ours_images_per_s: float
    speedup: float
    train_gflop_per_image: float
    ours_tflops: float
    sampling_images_per_s: float
    peak_share: float | None


def forward_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-adds x 2 of every (transposed) convolution for one input, from layer shapes."""
    flops = 0

    def hook(m: nn.Module, inp: tuple[torch.Tensor], out: torch.Tensor) -> None:
        nonlocal flops
        k = m.kernel_size[0] * m.kernel_size[1]
        spatial = inp[0].shape[-2] * inp[0].shape[-1] if isinstance(m, nn.ConvTranspose2d) else out.shape[-2] * out.shape[-1]
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
    return to_tensor(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted((folder / "faces").glob("*.png"))]))


def notebook_loop(folder: Path, size: int, gw: int, dw: int, batch: int, steps: int, warmup: int, device: torch.device) -> float:
    """The lecture notebook's loop, as written there (only the timing is ours)."""
    stats = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
    ds = ImageFolder(str(folder), transform=T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor(), T.Normalize(*stats)]))
    train_dl = DataLoader(ds, batch, shuffle=True, num_workers=3, pin_memory=device.type == "cuda", drop_last=True)
    latent_size = 128
    torch.manual_seed(0)
    generator = Generator(latent_size, size, gw).to(device)
    discriminator = nn.Sequential(Discriminator(size, dw), nn.Sigmoid()).to(device)
    init_dcgan_(generator)
    init_dcgan_(discriminator)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(generator.parameters(), lr=2e-4, betas=(0.5, 0.999))

    def train_discriminator(real_images):
        opt_d.zero_grad()
        real_preds = discriminator(real_images)
        real_targets = torch.ones(real_images.size(0), device=device)
        real_loss = F.binary_cross_entropy(real_preds, real_targets)
        real_score = torch.mean(real_preds).item()
        latent = torch.randn(batch, latent_size, 1, 1, device=device)
        fake_images = generator(latent)
        fake_targets = torch.zeros(fake_images.size(0), device=device)
        fake_preds = discriminator(fake_images)
        fake_loss = F.binary_cross_entropy(fake_preds, fake_targets)
        fake_score = torch.mean(fake_preds).item()
        loss = real_loss + fake_loss
        loss.backward()
        opt_d.step()
        return loss.item(), real_score, fake_score

    def train_generator():
        opt_g.zero_grad()
        latent = torch.randn(batch, latent_size, 1, 1, device=device)
        fake_images = generator(latent)
        preds = discriminator(fake_images)
        targets = torch.ones(batch, device=device)
        loss = F.binary_cross_entropy(preds, targets)
        loss.backward()
        opt_g.step()
        return loss.item()

    with warnings.catch_warnings():  # the notebook's 3 workers exceed a 2-core machine; keep them, quietly
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        it = iter(train_dl)
    for _ in range(warmup):
        real_images, _ = next(it)
        train_discriminator(real_images.to(device))
        train_generator()
    start = time.perf_counter()
    for _ in range(steps):
        real_images, _ = next(it)
        train_discriminator(real_images.to(device))
        train_generator()
    return steps * batch / (time.perf_counter() - start)


def our_loop(data: torch.Tensor, gw: int, dw: int, batch: int, steps: int, warmup: int, device: torch.device) -> tuple[float, float]:
    """Training images/s and sampling images/s of this project's code paths."""
    p = parse_params({"model": {"g_width": gw, "d_width": dw}, "train": {"batch_size": batch, "lr": 2e-4}})
    size = data.shape[-1]
    gan = build(p.model, p.train, size, device, 0)
    autocast = autocast_for(device, p.train.amp)
    streams = Streams.seeded(0, device)
    train_epoch(gan, DeviceData(data[: warmup * batch], device), p.train, streams, 0, autocast)[0].cpu()
    epoch = DeviceData(data[: steps * batch], device)
    start = time.perf_counter()
    log, _ = train_epoch(gan, epoch, p.train, streams, 0, autocast)
    log.cpu()  # the one sync, as in a real epoch
    train_rate = steps * batch / (time.perf_counter() - start)

    G = gan.G.eval()
    z = torch.randn(256, G.latent_size, device=device)
    with torch.inference_mode(), autocast():
        G(z)
        _sync(device)
        start = time.perf_counter()
        for _ in range(4):
            G(z)
        _sync(device)
    return train_rate, 4 * 256 / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_bench(configs: list[str], steps: int, warmup: int, device_name: str) -> list[Result]:
    device = resolve_device(device_name)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None) if device.type == "cuda" else None
    results = []
    for config in configs:
        size, gw, dw, batch = CONFIGS[config]
        with tempfile.TemporaryDirectory() as tmp:
            data = _images(Path(tmp), (steps + warmup) * batch, size)
            notebook = notebook_loop(Path(tmp), size, gw, dw, batch, steps, warmup, device)
        ours, sampling = our_loop(data, gw, dw, batch, steps, warmup, device)
        flops = train_flops_per_image(Generator(128, size, gw), Discriminator(size, dw))
        tflops = flops * ours / 1e12
        results.append(Result(config, name, size, batch, round(notebook, 1), round(ours, 1), round(ours / notebook, 2),
                              round(flops / 1e9, 3), round(tflops, 4), round(sampling, 1),
                              round(tflops / peak, 4) if peak else None))
    return results


def main(configs: list[str] | None = None, steps: int = 4, warmup: int = 1, device: str = "auto", as_json: bool = False) -> None:
    results = run_bench(configs or list(CONFIGS), steps, warmup, device)
    if as_json:
        print(json.dumps([asdict(r) for r in results], indent=1))
        return
    print(f"{'config':12} {'device':24} {'notebook img/s':>15} {'ours img/s':>11} {'ratio':>6} {'GFLOP/img':>10} {'TFLOP/s':>8} {'sample img/s':>13}")
    for r in results:
        print(f"{r.config:12} {r.device[:24]:24} {r.notebook_images_per_s:15.1f} {r.ours_images_per_s:11.1f} {r.speedup:6.2f} "
              f"{r.train_gflop_per_image:10.3f} {r.ours_tflops:8.4f} {r.sampling_images_per_s:13.1f}"
              + (f"  ({r.peak_share:.1%} of bf16 peak)" if r.peak_share else ""))
