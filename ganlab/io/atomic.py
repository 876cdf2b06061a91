"""Whole-or-nothing file writes: a killed stage never leaves a truncated file behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto ``target`` only on success.

    The temp file keeps the target's suffix so that writers choosing a format by extension
    (Pillow, OpenCV, torch) behave as they would for the real name.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode open() would
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(target: Path | str) -> Iterator[Path]:
    """Yield an empty temp folder beside ``target``; on success it replaces ``target`` whole, on
    any error it is deleted and ``target`` keeps its old contents (a bad param never empties
    the last good outputs). Folders a killed writer left are removed first."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    new = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        yield new
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    if target.exists():
        os.replace(target, old / "previous")  # two renames: target is missing only between them
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def remove_stale_temp_files(folder: Path | str) -> int:
    """Delete temp files that a killed writer left (SIGKILL gives ``atomic_path`` no chance to
    clean up); run before resuming in a folder that DVC keeps between runs."""
    removed = 0
    for stale in Path(folder).glob(".*.tmp*"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


def write_text(target: Path | str, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
