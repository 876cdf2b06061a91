"""Which device to train on and which speed-ups it supports, decided once per run."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

import torch

from stages.params import ParamsError


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ParamsError("train.device: 'cuda' requested but no CUDA device is available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


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
