"""Atomic file writes: a reader sees the old file or the new one whole, never a partial one.

A write goes to a temporary file ``.<name>.<random>.tmp`` beside its target and is renamed into place. A
process killed while writing leaves that temporary file behind; :func:`remove_stale_temporaries` removes
such leftovers once they are older than any write in progress can be.

Standard library only (the nnictl bridge imports it before it may import anything heavy).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, NamedTuple

__all__ = ["STALE_TEMPORARY_AGE_S", "RemovedTemporaries", "atomic_write", "remove_stale_temporaries"]

_log = logging.getLogger(__name__)

#: Age (seconds since the last modification) after which a temporary file of :func:`atomic_write` is an
#: orphan. A write in progress modifies its file continuously (``torch.save`` streams into it; the rename
#: follows the final ``fsync`` at once), so its modification time stays seconds old even for the largest
#: checkpoints here (640 MB at a slow 10 MB/s: about a minute of writing, the file touched throughout). 15
#: minutes leaves a margin of more than ten times that for a stalled disk, a paused process or clocks of
#: hosts sharing the folder that disagree by a few minutes, while no orphan survives long.
STALE_TEMPORARY_AGE_S = 15 * 60

#: ``.<target name>.<mkstemp's random part>.tmp``, the names :func:`atomic_write` (and :func:`tempfile.mkstemp`
#: with that prefix and suffix) gives its temporary files.
_TEMPORARY = re.compile(r"\.[A-Za-z0-9][^/\x00]*\.[A-Za-z0-9_]{6,}\.tmp")


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *,
                 mode: int | None = None) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary file beside it, then rename it into place.

    The temporary file is flushed and fsynced first and removed if anything fails; ``mode`` sets the
    permissions of the result (default: those :func:`tempfile.mkstemp` gives, 0o600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


class RemovedTemporaries(NamedTuple):
    """What :func:`remove_stale_temporaries` removed."""

    files: int
    bytes: int


def remove_stale_temporaries(folder: str | os.PathLike[str], *, max_age: float = STALE_TEMPORARY_AGE_S,
                             now: float | None = None) -> RemovedTemporaries:
    """Remove the orphaned temporary files of :func:`atomic_write` directly in ``folder``; log what went.

    Only plain files named like :func:`atomic_write`'s temporaries (``.<name>.<random>.tmp``) whose last
    modification is more than ``max_age`` seconds before ``now`` (default: the current time) are removed;
    anything else -- checkpoints, fresh temporaries of writes in progress, subfolders, links -- is left
    alone. A folder that does not exist holds nothing to remove. A file that vanishes or cannot be removed
    meanwhile is skipped (another process may be cleaning the same folder).

    Returns
    -------
    RemovedTemporaries
        How many files and bytes were removed.
    """
    root = Path(folder)
    cutoff = (time.time() if now is None else now) - max_age
    files = size = 0
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return RemovedTemporaries(0, 0)
    for entry in entries:
        if not _TEMPORARY.fullmatch(entry.name):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode) or info.st_mtime > cutoff:
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        files += 1
        size += info.st_size
    if files:
        _log.info("removed %d stale temporary file(s), %d bytes, of interrupted writes in %s (unchanged for more "
                  "than %.0f s)", files, size, root, max_age)
    return RemovedTemporaries(files, size)
