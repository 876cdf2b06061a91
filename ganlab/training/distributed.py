"""Multi-process training: one process per GPU (or CPU workers on gloo), on one machine.

Every rank draws the same batch permutation and trains on its own shard of each batch with
its own noise; DistributedDataParallel averages gradients. Rank 0 alone writes files and
talks to MLflow.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from ganlab.device import resolve_device

RENDEZVOUS = "GAN_RENDEZVOUS_FILE"  # set by ``launch``: the processes meet through a file, not a TCP store


def loopback_env() -> dict[str, str]:
    """Keep the collectives' sockets on the loopback interface: one machine needs no other, and
    nothing unauthenticated should listen on the network."""
    lo = "lo0" if sys.platform == "darwin" else "lo"
    return {"GLOO_SOCKET_IFNAME": lo, "NCCL_SOCKET_IFNAME": lo, "MASTER_ADDR": "127.0.0.1"}


def launch(nproc: int, argv: list[str]) -> int:
    """Run ``argv`` (this same command) as ``nproc`` processes of one training on this machine.

    torchrun's rendezvous is a TCP store that listens on every interface without
    authentication; here the processes meet through a file in a private temp folder instead.
    Returns the first non-zero exit code (the others are then stopped), or 0."""
    with tempfile.TemporaryDirectory(prefix="gan-rendezvous-") as tmp:
        procs = [
            subprocess.Popen(
                argv,
                env={
                    **os.environ,
                    **loopback_env(),
                    RENDEZVOUS: str(Path(tmp) / "store"),
                    "RANK": str(r),
                    "LOCAL_RANK": str(r),
                    "WORLD_SIZE": str(nproc),
                },
            )
            for r in range(nproc)
        ]
        code = 0
        try:
            while any(p.poll() is None for p in procs) and not code:
                code = next((p.returncode for p in procs if p.returncode), 0)
                time.sleep(0.2)
            code = code or next((p.returncode for p in procs if p.returncode), 0)
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                p.wait()
        return code


def setup(device_name: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from ``launch``'s (or torchrun's) environment; (0, 1, device) without it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return 0, 1, device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if os.environ.get(RENDEZVOUS):
            dist.init_process_group(
                backend, init_method=f"file://{os.environ[RENDEZVOUS]}", rank=rank, world_size=world
            )
        else:
            dist.init_process_group(backend)
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


def rank0_says(flag: bool, world: int, device: torch.device) -> bool:
    """Rank 0's decision on every rank (only rank 0 evaluates, and wall clocks differ)."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, 0)
    return bool(t.item())


def rank0_number(value: float, world: int, device: torch.device) -> float:
    """Rank 0's number on every rank (a plan measured on rank 0's clock)."""
    if world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t.item())


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
