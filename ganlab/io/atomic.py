"""Whole-or-nothing file writes: a killed stage never leaves a truncated file behind."""

from __future__ import annotations

import configparser
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ganlab import layout
from ganlab.errors import UserError


def _is_a_link(path: Path) -> UserError:
    return UserError(
        f"{path}: is a symbolic link; the project makes this path itself and never writes through a link: remove it, then run again"
    )


def refuse_link(path: Path | str) -> Path:
    """``path`` unless it is a symbolic link: for a folder a stage replaces or empties whole. A link
    to a folder on the way to an output (``models``, ``reports``) is followed, since the outputs keep
    their own names inside it; but a linked output folder would be either replaced, silently undoing
    the link, or emptied through it, in whatever folder it names (one a repository could point at
    the user's files)."""
    path = Path(path)
    if path.is_symlink():
        raise UserError(
            f"{path}: is a symbolic link; a stage replaces this folder whole, never through a link: "
            "remove the link (a link in place of the folder above it is followed), then run again"
        )
    return path


def open_no_link(path: Path | str, flags: int, mode: int = 0o666) -> int:
    """``os.open`` that refuses a symbolic link as the last component (O_NOFOLLOW), in one step
    with the open: a check before a plain ``open()`` leaves a window, and ``open()`` would write
    into whatever file a planted link names."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise _is_a_link(Path(path)) from None
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it; it is set straight back)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it onto ``target`` only on success.

    The temp file keeps the target's suffix so that writers choosing a format by extension
    (Pillow, OpenCV, torch) behave as they would for the real name. The rename replaces a link
    at ``target`` rather than writing through it: with DVC's symlink or hardlink cache every
    output is one, and writing into it would change a cache file under its hash.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the mode open() would
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
    the last good outputs). Folders a killed writer left are removed first. Links into DVC's
    cache inside ``target`` are unlinked, their cache files untouched; a ``target`` that is itself
    a link is refused (``refuse_link``)."""
    target = refuse_link(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        shutil.rmtree(stale, ignore_errors=True)
    new = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    os.chmod(new, 0o777 & ~_umask())  # mkdtemp makes 0700: a folder others could not read, of files they could
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
    clean up); run before resuming in a folder that DVC keeps between runs. A linked folder is
    followed: only names that ``atomic_path`` makes are deleted."""
    removed = 0
    for stale in Path(folder).glob(".*.tmp*"):
        stale.unlink(missing_ok=True)
        removed += 1
    return removed


def write_text(target: Path | str, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def dvc_output_folders_inside() -> None:
    """Under `dvc repro` in a git repository, the folders of DVC's cached outputs resolve inside it
    (the working folder: DVC runs a stage at the root, a temp or queued experiment in its own copy,
    while DVC_ROOT names the project it came from). DVC writes a .gitignore beside each output and
    refuses one outside the repository ("... is outside of git repository"), but only once the stage
    has run: a linked ``models`` would cost a whole training first. Run directly, ``gan`` follows such
    links."""
    root = Path.cwd().resolve()
    config = configparser.ConfigParser()
    try:
        config.read(root / ".dvc" / "config")
        if config.getboolean("core", "no_scm", fallback=False):
            return  # `dvc init --no-scm`: no .gitignore, and DVC takes outputs through links
    except (configparser.Error, ValueError):
        pass  # a config DVC reads and configparser does not: as with git, the usual case
    for folder in layout.DVC_OUTPUT_FOLDERS:
        if not (root / folder).resolve().is_relative_to(root):
            raise UserError(
                f"{folder}: leads outside the repository through a link, where DVC refuses outputs once the stage has run; "
                "to keep outputs on another disk, move DVC's cache there instead (dvc cache dir DIR; dvc config cache.type symlink)"
            )
