"""The device: resolved once from params, read back from a network everywhere else.

Every stage resolves ``params.device`` with :func:`resolve_device` and moves its networks
there; from then on a tensor is born on the device of the network that reads it
(:func:`device_of`), never assumed to be the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from ganlab.errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device: 'cuda' requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_of(module: nn.Module) -> torch.device:
    """Where a network's weights live: the device its inputs must be created on."""
    return next(module.parameters()).device


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 convolutions run about 2x faster than fp32 here (measured);
    on CPUs without them bf16 is emulated and slower, so autocast stays off."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def autocast_for(device: torch.device, amp: bool) -> Callable[[], AbstractContextManager]:
    """bf16 autocast (fp32 master weights, BN and losses in fp32) where the hardware has bf16."""
    if amp and (device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())):
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext
