"""Where training batches come from: the whole data set on the device, or streamed.

A prepared data set that fits lives on the training device for the whole run and a batch is
an index into it. One that does not fit stays in the memory-mapped dataset file and each batch
is gathered on the host and copied over (pinned, non-blocking on CUDA). Both give the same
batches for the same permutation.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stages import checkpoint

DEVICE_SHARE = 0.4  # of free memory that the float32 data set may take before it streams


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
        import os

        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return nbytes < DEVICE_SHARE * free


def open_dataset(path: Path, device: torch.device, mode: str) -> DeviceData | StreamedData:
    """``mode``: auto (on the device if it fits), always, never (stream)."""
    images = checkpoint.load(path, mmap=True, missing="dataset not found (run `gan prepare` first)")["images"]
    on_device = mode == "always" or (mode == "auto" and fits(images.numel() * 4, device))
    return DeviceData(images, device) if on_device else StreamedData(images, device)
