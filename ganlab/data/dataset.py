"""The prepared data set: one tensor file in [-1, 1], and where training batches come from.

A prepared data set that fits lives on the training device for the whole run and a batch is
an index into it. One that does not fit stays in the memory-mapped dataset file and each batch
is gathered on the host and copied over (pinned, non-blocking on CUDA). Both give the same
batches for the same permutation.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ganlab.errors import UserError
from ganlab.io import checkpoint
from ganlab.params import IMAGE_SIZES

# the one attribute of a folder of class subfolders: the dataset file's labels[CLASS], label_names[CLASS]

CLASS = "class"
DEVICE_SHARE = 0.4  # of free memory that the float32 data set may take before it streams


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float16 NCHW in [-1, 1]; float16 holds every 8-bit level to within 3e-4."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return (x / 127.5 - 1.0).to(torch.float16).contiguous()


def load_images(path: Path, mmap: bool = False) -> dict:
    """{"images": (N, 3, S, S) float16 on the CPU, "files": [...]}; checked (shape and count, not
    the pixels: a memory-mapped set stays unread), so that a damaged file is one line here, not
    a ZeroDivisionError or a shape error deep in training."""
    rebuild = "rebuild it with `gan prepare` (or `dvc repro`)"
    state = checkpoint.require(
        checkpoint.load(path, mmap=mmap, missing="dataset not found (run `gan prepare` first)"),
        path,
        ("images",),
        rebuild,
    )
    images = state["images"]
    if not isinstance(images, torch.Tensor) or not images.is_floating_point():
        raise UserError(f"{path}: its 'images' are not a float tensor ({type(images).__name__}); {rebuild}")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[2] != images.shape[3]:
        raise UserError(f"{path}: images of shape {tuple(images.shape)}, not (N, 3, S, S); {rebuild}")
    if len(images) == 0:
        raise UserError(f"{path}: no images in it; {rebuild}")
    if images.shape[2] not in IMAGE_SIZES:  # training's networks would end in a ValueError
        raise UserError(
            f"{path}: images of {images.shape[2]} px; the networks take {', '.join(map(str, IMAGE_SIZES))} px; {rebuild}"
        )
    return state


def dataset_sha(manifest: Path) -> str:
    """The prepared data set's identity, from ``gan prepare``'s manifest (one line if it is missing or damaged)."""
    try:
        return json.loads(manifest.read_text())["dataset_sha256"]
    except FileNotFoundError:
        raise UserError(f"{manifest}: not found (run `gan prepare` first)") from None
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        raise UserError(
            f"{manifest}: damaged ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); run `gan prepare` again"
        ) from None


class DeviceData:
    def __init__(self, images: torch.Tensor, device: torch.device):
        self.images = images.to(device=device, dtype=torch.float32)
        self.index_device = device

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        return self.images[idx]


class StreamedData:
    def __init__(self, images: torch.Tensor, device: torch.device):
        self.images, self.device = images, device  # float16, memory-mapped, on the host
        self.index_device = torch.device("cpu")

    def __len__(self) -> int:
        return self.images.shape[0]

    def batch(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.images[idx]
        if self.device.type == "cuda":
            x = x.pin_memory()
        return x.to(self.device, non_blocking=True).float()


def fits(nbytes: int, device: torch.device) -> bool:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return nbytes < DEVICE_SHARE * free


def open_dataset(path: Path, device: torch.device, mode: str) -> DeviceData | StreamedData:
    """``mode``: auto (on the device if it fits), always, never (stream)."""
    images = load_images(path, mmap=True)["images"]
    on_device = mode == "always" or (mode == "auto" and fits(images.numel() * 4, device))
    return DeviceData(images, device) if on_device else StreamedData(images, device)
