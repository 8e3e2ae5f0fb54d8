"""Register a bridge with ``nnictl algo register``, so that configs can say ``tuner: {name: ...}``.

A registered name is NNI's second way of naming a bridge in an experiment config (the first is
``className`` with ``codeDirectory``)::

    tuner:
      name: MyBuiltinName   # nnictl algo register --meta ...
      classArgs: {...}

``nnictl`` stores the bridge's dotted class name (``className``) and its ``classArgsValidator``; the class must
be importable where ``nnictl`` runs. Both functions are idempotent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nni_nas_ext.console import nnictl_env

__all__ = ["register_with_nnictl", "unregister_from_nnictl"]


def _qualified_name(obj: type | str) -> str:
    if isinstance(obj, str):
        if "." not in obj:
            raise ValueError(f"a class must be named with its module, like 'package.module.Class'; got {obj!r}")
        return obj
    return f"{obj.__module__}.{obj.__qualname__}"


def _nnictl_command() -> list[str]:
    candidate = Path(sys.executable).with_name("nnictl")
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("nnictl")
    if found:
        return [found]
    return [sys.executable, "-m", "nni.tools.nnictl.nnictl"]


def _nnictl(args: list[str], env: Mapping[str, str] | None) -> subprocess.CompletedProcess[str]:
    full_env = nnictl_env({**os.environ, **(env or {})})
    return subprocess.run(_nnictl_command() + args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=full_env, timeout=120)


def _registered_meta(builtin_name: str, env: Mapping[str, str] | None) -> dict[str, Any] | None:
    proc = _nnictl(["algo", "show", builtin_name], env)
    text = proc.stdout.strip()
    start = text.find("{")
    if proc.returncode != 0 or start < 0:
        return None
    try:
        return json.loads(text[start:])
    except ValueError:
        return None


def register_with_nnictl(builtin_name: str, class_name: type | str,
                         validator_class: type | str | None = None, *,
                         meta_path: str | os.PathLike[str] | None = None,
                         env: Mapping[str, str] | None = None) -> str:
    """Register a bridge with ``nnictl algo register`` so that configs can say ``tuner: {name: ...}``.

    Idempotent: nothing is done when the same name is registered with the same classes.

    Parameters
    ----------
    builtin_name
        The name configs use (NNI compares names case-insensitively).
    class_name
        The bridge class, or its dotted name; it must be importable where ``nnictl`` runs.
    validator_class
        Its ``classArgsValidator`` (e.g. a subclass of
        :class:`~nni_nas_ext.nni.dispatcher.bridge.BridgeClassArgsValidator`), or None.
    meta_path
        Where to write the meta YAML (kept); default: a temporary file, removed afterwards.
    env
        Extra environment for ``nnictl`` (``NNI_CONFIG_DIR`` selects where NNI keeps registrations).

    Returns
    -------
    str
        ``"unchanged"``, ``"registered"`` or ``"updated"``.

    Raises
    ------
    RuntimeError
        ``nnictl`` refused; its output is in the message.
    """
    import yaml

    meta: dict[str, Any] = {"algoType": "tuner", "builtinName": builtin_name, "className": _qualified_name(class_name)}
    if validator_class is not None:
        meta["classArgsValidator"] = _qualified_name(validator_class)
    old = _registered_meta(builtin_name, env)
    if old is not None and old.get("source") == "nni":
        raise RuntimeError(f"{builtin_name!r} is one of NNI's built-in algorithms; choose another name")
    if old is not None and old.get("className") == meta["className"] \
            and old.get("classArgsValidator") == meta.get("classArgsValidator"):
        return "unchanged"
    if meta_path is None:
        tmp_dir = tempfile.mkdtemp(prefix="nni-nas-ext-meta-")
        path = Path(tmp_dir) / f"{builtin_name}.yml"
    else:
        tmp_dir = None
        path = Path(meta_path)
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        proc = _nnictl(["algo", "register", "--meta", str(path)], env)
        output = (proc.stdout + proc.stderr).strip()
        if proc.returncode != 0 or "registered sucessfully" not in output:
            raise RuntimeError(f"nnictl algo register failed for {builtin_name!r}: {output}")
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return "registered" if old is None else "updated"


def unregister_from_nnictl(builtin_name: str, *, env: Mapping[str, str] | None = None) -> str:
    """Undo :func:`register_with_nnictl`; idempotent. Returns ``"unregistered"`` or ``"absent"``."""
    old = _registered_meta(builtin_name, env)
    if old is None:
        return "absent"
    if old.get("source") == "nni":
        raise RuntimeError(f"{builtin_name!r} is one of NNI's built-in algorithms and cannot be unregistered")
    proc = _nnictl(["algo", "unregister", builtin_name], env)
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "unregistered sucessfully" not in output:
        raise RuntimeError(f"nnictl algo unregister failed for {builtin_name!r}: {output}")
    return "unregistered"
