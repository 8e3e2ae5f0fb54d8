"""What our commands print, and how they run ``nnictl``: plain text where no terminal reads it, NNI's
``pkg_resources`` deprecation warning kept out, and a pipe closed early (``... | head``) ending quietly."""

from __future__ import annotations

import functools
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO, TypeVar

__all__ = ["ANSI", "TORCH_ALIAS_WARNINGS", "colour", "nnictl_env", "plain", "quiet_broken_pipe", "torch_alias_filters"]

#: ANSI colour and style codes (``nnictl`` colours its INFO/ERROR prefixes)
ANSI = re.compile(r"\x1b\[[0-9;]*m")

#: ``PYTHONWARNINGS`` entry that silences the warning every ``nnictl`` call prints with setuptools >= 67
#: ("pkg_resources is deprecated as an API"); NNI 3.0 imports ``pkg_resources`` at start-up
_PKG_RESOURCES = "ignore:pkg_resources is deprecated"

#: the starts of the two warnings that ``import nni.nas`` gives on the locked torch for torch.nn classes that are
#: not modules and that NNI re-exports as they are, correctly (``Buffer``, ``LinearCrossEntropyOptions``): noise
#: that says "your PyTorch version might not be supported". Literal text: :func:`torch_alias_filters` makes the
#: ``warnings`` filters of it, :func:`nnictl_env` the ``PYTHONWARNINGS`` entries for NNI's processes (the
#: dispatcher, NNI's own trial command), tests/conftest.py pytest's.
TORCH_ALIAS_WARNINGS = ("<class 'torch.nn.parameter.Buffer'> is found to be not a nn.Module",
                        "<class 'torch.nn.modules.linear_cross_entropy_options.LinearCrossEntropyOptions'> "
                        "is found to be not a nn.Module")


def torch_alias_filters() -> list[tuple[str, str, type[Warning]]]:
    """``(action, message regex, category)`` for each of :data:`TORCH_ALIAS_WARNINGS`, as
    ``warnings.filterwarnings`` takes them (the message a regular expression matching the start)."""
    return [("ignore", re.escape(message), RuntimeWarning) for message in TORCH_ALIAS_WARNINGS]


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
    warning and the two :data:`TORCH_ALIAS_WARNINGS` silenced (other warning filters kept; ``PYTHONWARNINGS``
    takes literal message starts)."""
    out = dict(os.environ if env is None else env)
    entries = [e for e in out.get("PYTHONWARNINGS", "").split(",") if e]
    wanted = [_PKG_RESOURCES] + [f"ignore:{message}:RuntimeWarning" for message in TORCH_ALIAS_WARNINGS]
    out["PYTHONWARNINGS"] = ",".join(entries + [w for w in wanted if w not in entries])
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


def log_to_stdout() -> None:
    """Trial logs go to stdout, which NNI keeps as the trial's log (``trial.log`` in its folder)."""
    root = logging.getLogger("nni_nas_ext")
    if not any(getattr(h, "_nni_nas_ext", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("[%(asctime)s] %(levelname)s %(name)s: %(message)s"))
        handler._nni_nas_ext = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(logging.INFO)
