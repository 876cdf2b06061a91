"""Multi-process training under torchrun: one process per GPU (or CPU workers on gloo).

Every rank draws the same batch permutation and trains on its own shard of each batch with
its own noise; DistributedDataParallel averages gradients. Rank 0 alone writes files and
talks to MLflow.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
from torch import nn

from ganlab.device import resolve_device


def setup(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; (0, 1, device) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return 0, 1, device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def wrap(model: nn.Module, device: torch.device, sync_batchnorm: bool) -> nn.Module:
    if sync_batchnorm and device.type == "cuda":  # SyncBatchNorm has no CPU kernel
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain network inside DDP and/or torch.compile wrappers."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return getattr(model, "_orig_mod", model)


def average(tensor: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(tensor)
        tensor /= world
    return tensor


def gather(obj: object, world: int) -> list[object]:
    if world == 1:
        return [obj]
    out: list[object] = [None] * world
    dist.all_gather_object(out, obj)
    return out


def parameter_digest(model: nn.Module) -> str:
    """A hash of every parameter, to prove that the replicas did not drift apart."""
    h = hashlib.sha256()
    for p in unwrap(model).parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def teardown(world: int) -> None:
    if world > 1 and dist.is_initialized():
        dist.destroy_process_group()
