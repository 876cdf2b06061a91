"""Host work off the training's hot path: one worker thread that writes files in order.

PNG encoding, checkpoint serialisation and MLflow uploads take the host tens to hundreds of
milliseconds; on a GPU that is many training steps. The loop hands them here and goes on.
Jobs run in submission order, at most ``depth`` wait (each may hold a host copy of a
checkpoint, so memory stays bounded), and an error in a job is raised in the training thread
at the next ``submit`` or at ``drain``, never lost.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch


class Writer:
    def __init__(self, depth: int = 2):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ganlab-writer")
        self.pending: deque[Future] = deque()
        self.depth = depth

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        while self.pending and (self.pending[0].done() or len(self.pending) >= self.depth):
            self.pending.popleft().result()  # re-raises the job's error here
        self.pending.append(self.pool.submit(job, *args))

    def drain(self) -> None:
        """Wait for every job; raise the first error."""
        while self.pending:
            self.pending.popleft().result()

    def close(self) -> None:
        """Finish every job, also on failure or Ctrl-C: a queued checkpoint is progress not to lose
        (and each file is renamed into place whole, or not at all). Errors here were already raised
        or are the failure being handled."""
        self.pool.shutdown(wait=True)
        self.pending.clear()


def host_copy(obj: Any) -> Any:
    """A deep copy with every tensor copied to host memory: what a background write may read
    while training goes on changing the originals in place."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: host_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(host_copy(v) for v in obj)
    return obj
