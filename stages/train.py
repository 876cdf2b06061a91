"""Stage ``train``: the lecture's DCGAN training (``ganlab.training.loop``), logged to MLflow."""

from __future__ import annotations

from ganlab.params import Params
from ganlab.training.loop import training_loop


def run(params: Params) -> dict[str, float] | None:
    return training_loop(params)
