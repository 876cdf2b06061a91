"""Stage ``train``: the lecture's DCGAN training (``ganlab.training.loop``), logged to MLflow."""

from __future__ import annotations

import json

from ganlab import layout
from ganlab.errors import UserError
from ganlab.hooks import main_process_hooks
from ganlab.params import Params
from ganlab.training.loop import training_loop


def run(params: Params, extend: bool | None = None) -> dict[str, float] | None:
    return training_loop(params, main_process_hooks, extend)


def check_processes(params: Params, nproc: int) -> None:
    """Before ``--nproc`` starts its processes: each takes its share of every step's batch, and
    a process with no images trains on an empty batch, which ended as "loss_d became nan"."""
    try:
        count = int(json.loads(layout.MANIFEST.read_text())["count"])
    except (OSError, ValueError, KeyError, TypeError):
        return  # each process then reports the missing or damaged data set itself
    per_step = min(params.train.batch_size, count)
    if per_step < nproc:
        raise UserError(
            f"train --nproc {nproc}: a step shows {per_step} image{'s' * (per_step != 1)} ({count} in {layout.MANIFEST}, "
            f"train.batch_size {params.train.batch_size}), fewer than the processes that share it; use --nproc {per_step}"
        )
