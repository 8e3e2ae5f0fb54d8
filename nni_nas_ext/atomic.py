"""Atomic file writes: a reader sees the old file or the new one whole, never a partial one.

Standard library only (the nnictl bridge imports it before it may import anything heavy).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_write"]


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
