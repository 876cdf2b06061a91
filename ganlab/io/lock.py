"""One writer per project folder: two `gan train` in one folder would interleave one run's
checkpoint with the other's MLflow run."""

from __future__ import annotations

import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ganlab.errors import UserError
from ganlab.io.atomic import open_no_link


@contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold ``path`` locked while the block runs, or fail at once naming the holder. The kernel
    drops the lock when its process dies (even by SIGKILL), so a crash never leaves it stale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_no_link(path, os.O_RDWR | os.O_CREAT)  # truncated and written below: a link's target would be
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"{path}: is not a regular file; remove it, then run again")
    with os.fdopen(fd, "r+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UserError(
                f"{path}: another {what} is running in this folder ({holder}); wait for it, or stop it, then run again"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
