"""An exponential moving average of the generator's weights.

GAN weights oscillate from step to step (see the loss curves); their running average gives
smoother, better images (Karras et al. 2018; Yazici et al. 2019) at no training cost.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def make_ema(generator: nn.Module) -> nn.Module:
    ema = copy.deepcopy(generator).eval()
    return ema.requires_grad_(False)


@torch.no_grad()
def update_ema(ema: nn.Module, generator: nn.Module, decay: float, step: int) -> None:
    """ema <- d * ema + (1 - d) * G, with d ramped up from 0 so that early EMA is not
    dominated by the random initial weights; buffers (BN statistics) are copied."""
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(generator.parameters()), 1 - d)
    for b_ema, b in zip(ema.buffers(), generator.buffers()):
        b_ema.copy_(b)
