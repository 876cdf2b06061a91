"""Run lightweight-gan 1.2.1 (pip, unmodified) on a CPU: the peer of docs/quality_panel.md.

The package asserts a GPU at import and moves tensors with .cuda(rank) in ~15 places. Instead of
editing its files, this shim (1) answers is_available() = True only while the package imports,
(2) makes Tensor.cuda / Module.cuda return the CPU object, (3) gives the package's module a `torch`
whose device('cuda:N') is the CPU. Everything else (nets, losses, augmentation, EMA, schedule,
their in-training evaluate) is the package's own code with its CLI defaults.

In a separate venv (the peer is not a dependency of this project):
    python3 -m venv peer && peer/bin/pip install lightweight-gan==1.2.1
    peer/bin/python scripts/peer_cpu.py train IMAGES_DIR RUNS_DIR NAME SECONDS [image_size]
    peer/bin/python scripts/peer_cpu.py sample RUNS_DIR NAME OUT.pt [n]   -> n EMA samples in [-1, 1]
    peer/bin/python scripts/peer_cpu.py export data/prepared/dataset.pt IMAGES_DIR   (first: our prepared pixels as PNGs)
Then score the samples with this project's panel: python scripts/score_samples.py data/prepared/dataset.pt OUT.pt
"""

import sys
import time
import types

import torch
import torch.nn as nn

_avail = torch.cuda.is_available
torch.cuda.is_available = lambda: True
import lightweight_gan.lightweight_gan as lg  # noqa: E402
from lightweight_gan.lightweight_gan import Trainer  # noqa: E402

torch.cuda.is_available = _avail
torch.Tensor.cuda = lambda self, *a, **k: self
nn.Module.cuda = lambda self, *a, **k: self
proxy = types.ModuleType("torch_cpu")
proxy.__dict__.update(torch.__dict__)
_device = torch.device
proxy.device = lambda spec, *a: _device("cpu") if str(spec).startswith("cuda") else _device(spec, *a)
lg.torch = proxy


def trainer(root, name, image_size):
    # the CLI's defaults (cli.py train_from_folder), only image size, workers and paths set
    args = dict(
        name=name,
        results_dir=f"{root}/results",
        models_dir=f"{root}/models",
        batch_size=10,
        gradient_accumulate_every=4,
        image_size=image_size,
        network_capacity=None,
        fmap_max=512,
        transparent=False,
        greyscale=False,
        lr=2e-4,
        num_workers=1,
        save_every=1000,
        evaluate_every=1000,
        aug_prob=None,
        aug_types=["cutout", "translation"],
        dataset_aug_prob=0.0,
        attn_res_layers=[32],
        freq_chan_attn=False,
        disc_output_size=1,
        dual_contrast_loss=False,
        antialias=False,
        optimizer="adam",
        num_image_tiles=8,
        amp=False,
        calculate_fid_every=None,
        calculate_fid_num_images=12800,
        clear_fid_cache=False,
        load_strict=True,
    )
    args.pop("network_capacity")
    args.update(is_ddp=False, rank=0, world_size=1)
    return Trainer(**args, hparams=args, use_aim=False)


def train(data, root, name, seconds, image_size=64):
    torch.manual_seed(42)
    t = trainer(root, name, int(image_size))
    t.clear()
    t.set_data_src(data)
    t0 = time.time()
    while time.time() - t0 < float(seconds):
        t.train()
        if t.steps % 50 == 0:
            print(f"{time.time() - t0:7.0f}s step {t.steps} images {t.steps * 40}", flush=True)
            t.print_log()
    t.save(t.checkpoint_num)
    print(
        f"done: {t.steps} steps, {t.steps * 40} images, {time.time() - t0:.0f}s, checkpoint {t.checkpoint_num}",
        flush=True,
    )


@torch.no_grad()
def sample(root, name, out, n=256, image_size=64):
    t = trainer(root, name, int(image_size))
    t.load(-1)
    t.GAN.eval()
    g = torch.Generator().manual_seed(2024)
    z = torch.randn(int(n), t.GAN.latent_dim, generator=g)
    x = t.generate_(t.GAN.GE, z)  # [0, 1]
    torch.save({"images": x * 2 - 1, "steps": t.steps}, out)
    print(out, tuple(x.shape), t.steps)


def export(dataset, out):
    from pathlib import Path

    from torchvision.utils import save_image

    images = torch.load(dataset, weights_only=True)["images"].float()
    Path(out).mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_image(image * 0.5 + 0.5, f"{out}/{i:04d}.png")
    print(out, len(images))


if __name__ == "__main__":
    {"train": train, "sample": sample, "export": export}[sys.argv[1]](*sys.argv[2:])
