"""What our commands print, and how they run ``nnictl``: plain text where no terminal reads it, NNI's
``pkg_resources`` deprecation warning kept out, and a pipe closed early (``... | head``) ending quietly."""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO, TypeVar

__all__ = ["ANSI", "colour", "nnictl_env", "plain", "quiet_broken_pipe"]

#: ANSI colour and style codes (``nnictl`` colours its INFO/ERROR prefixes)
ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: ``PYTHONWARNINGS`` entry that silences the warning every ``nnictl`` call prints with setuptools >= 67
#: ("pkg_resources is deprecated as an API"); NNI 3.0 imports ``pkg_resources`` at start-up
_PKG_RESOURCES = "ignore:pkg_resources is deprecated"

F = TypeVar("F", bound=Callable[..., int])


def colour(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default stdout) may get colour codes: a terminal, and ``NO_COLOR`` unset."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def plain(text: str, stream: TextIO | None = None) -> str:
    """``text`` as it should reach ``stream``: without colour codes unless :func:`colour` allows them."""
    return text if colour(stream) else ANSI.sub("", text)


def nnictl_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for an ``nnictl`` subprocess: ``env`` (default: ours) with the ``pkg_resources``
    warning silenced (other warning filters kept)."""
    out = dict(os.environ if env is None else env)
    current = out.get("PYTHONWARNINGS", "")
    if _PKG_RESOURCES not in current.split(","):
        out["PYTHONWARNINGS"] = f"{current},{_PKG_RESOURCES}" if current else _PKG_RESOURCES
    return out


def quiet_broken_pipe(main: F) -> F:
    """Wrap a command's ``main`` so that a reader that closes the pipe early (``| head``) ends it quietly
    (exit status 0, no traceback), as with ``cat``'s output cut by ``head``."""
    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> int:
        try:
            code = main(*args, **kwargs)
            sys.stdout.flush()  # a pipe closed while buffered output was pending raises here
            return code
        except BrokenPipeError:
            # Python's own advice (docs of the signal module): point stdout at devnull, so that the flush at
            # exit does not raise a second time
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
    return wrapper  # type: ignore[return-value]
