"""Explicit, reversible edits of the installed NNI 3.0: parameter pairing, loopback bind, a failure's reason, the
remote workers' channels.

Each edit touches one file of ``nni_node`` (the NNI manager's JavaScript), only when that file is exactly
what ``nni==3.0`` ships (checked by SHA-256), keeps a backup next to it, is idempotent, reverts byte for byte
and says what it did. Each takes effect for experiments started afterwards.

1. ``pairing`` (``training_service/v3/compat.js``): NNI 3.0's first-in-first-out parameter bug, below.
2. ``bind`` (``rest_server/index.js``): NNI's manager serves the web portal and its unauthenticated REST API
   on every interface (``app.listen(port)``), and anyone who reaches the port can start trials, stop the
   experiment or read its parameters. Patched, it listens on ``$NNI_NAS_EXT_HOST`` when that variable is set
   (``python -m nni_nas_ext run --host ADDRESS`` sets it) and on 127.0.0.1 otherwise, and logs the address in
   ``nnimanager.log``. Trials of the local training service reach the manager at ``localhost``: unchanged.
3. ``reason`` (``core/nnimanager.js``): when the dispatcher reports an error (our bridge reports why a search
   could not start, e.g. an invalid ``classArgs`` value), NNI 3.0 logs it in ``nnimanager.log`` but shows
   only "Dispatcher stream error, tuner may have crashed." in the experiment's status; patched, the status
   (portal, ``nnictl experiment status``, REST ``check-status``) carries the dispatcher's own message.
4. ``workers`` (``training_service/remote_v3/remote.js``): NNI 3.0's remote workers (the trial keepers on the SSH
   hosts) connect back to ``ws://nniManagerIp:PORT/platform/<id>/<channel>``, i.e. to the REST server itself, which
   the ``bind`` edit keeps on loopback. Patched, the remote training service listens on ``nniManagerIp:PORT`` with
   a proxy that forwards only those WebSocket channels to the manager and answers 403 to everything else (the
   portal, the REST API): hosts on other machines work without exposing the REST API. Nothing changes when
   ``nniManagerIp`` is the manager's own listen address.

The first-in-first-out parameter bug:

The bug (field notes, bug 1; upstream issue #5726): the local training service's adapter
``nni_node/training_service/v3/compat.js`` (class ``V3asV1``) puts the parameter of every new trial in one
queue (``this.parameters.push``) and hands the oldest queued parameter to whichever trial process asks first
(``this.parameters.shift()``). With ``trialConcurrency > 1`` a trial may run another trial's architecture
while NNI records the one it meant: the web portal and ``export_top_models`` pair metrics with the wrong
parameters.

The fix allocates each parameter to the trial it was created for, with the map ``V3asV1`` already keeps for
resumed trials (``allocatedParameters``): the parameter is stored under the trial id as soon as
``createTrial()`` returns it, and a trial that asks before that (its process may start first) waits up to
10 s for its own parameter instead of taking the queue's head.

The edit is made only to the exact file NNI 3.0 ships (checked by SHA-256), keeps a backup next to it, is
idempotent and reverts byte for byte. It takes effect for experiments started afterwards.

Command line::

    python -m nni_nas_ext.nni.nni_patch status     # or --check; exit 0 patched, 1 not patched, 2 unexpected file
    python -m nni_nas_ext.nni.nni_patch apply
    python -m nni_nas_ext.nni.nni_patch revert     # or --revert
    ... [--fix pairing|bind|reason|workers|all]    # which edit (default: all)
    ... [--path FILE]                              # another copy of the file of one --fix (tests; default pairing)
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from nni_nas_ext.atomic import atomic_write

from .nni_patch_edits import (
    BIND, BIND_HOST_ENV, FIXES, ORIGINAL_SHA256, PAIRING, REASON, WORKERS, FilePatch,
)


__all__ = [
    "BIND_HOST_ENV",
    "BIND",
    "EXPECTED_NNI_VERSION",
    "FIXES",
    "FilePatch",
    "PAIRING",
    "REASON",
    "WORKERS",
    "ORIGINAL_SHA256",
    "PatchError",
    "PatchResult",
    "PatchStatus",
    "apply_all",
    "apply_patch",
    "compat_js_path",
    "main",
    "patch_status",
    "revert_patch",
]

EXPECTED_NNI_VERSION = "3.0"

BACKUP_SUFFIX = ".nni-nas-ext-orig"


class PatchError(RuntimeError):
    """The patch was refused: wrong NNI version, or a file that is neither NNI 3.0's nor its patched form."""


@dataclass(frozen=True)
class PatchStatus:
    """Where a ``compat.js`` stands: ``state`` is ``"patched"``, ``"unpatched"`` or ``"unexpected"``."""

    path: Path
    state: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class PatchResult:
    """What :func:`apply_patch` or :func:`revert_patch` did (``changed`` False: it was already so)."""

    path: Path
    state: str
    changed: bool
    message: str
    backup: Path | None = None

    def __str__(self) -> str:
        return self.message


def nni_node_path() -> Path:
    """The ``nni_node`` package of the NNI installed in this interpreter's environment (without importing nni)."""
    spec = importlib.util.find_spec("nni_node")
    if spec is None or not spec.submodule_search_locations:
        raise PatchError("package nni_node not found: is nni installed in this environment? (pip install nni==3.0)")
    return Path(list(spec.submodule_search_locations)[0])


def compat_js_path() -> Path:
    """``compat.js`` of the NNI installed in this interpreter's environment (found without importing nni)."""
    return PAIRING.path()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _unpatch_text(text: str, fix: FilePatch = PAIRING) -> str | None:
    """The original text if ``text`` is NNI 3.0's file with this patch applied, else None."""
    for original, patched in fix.edits:
        if text.count(patched) != 1:
            return None
        text = text.replace(patched, original)
    return text if _sha256(text.encode("utf-8")) == fix.original_sha256 else None


def _patch_text(text: str, fix: FilePatch = PAIRING) -> str:
    for original, patched in fix.edits:
        if text.count(original) != 1:  # cannot happen for the file with the original SHA-256
            raise PatchError(f"expected exactly one occurrence of {original.strip().splitlines()[0]!r}")
        text = text.replace(original, patched)
    if _unpatch_text(text, fix) is None:
        raise PatchError("internal error: the patched text does not revert to the original")
    return text


def _check_version() -> None:
    try:
        version = importlib.metadata.version("nni")
    except importlib.metadata.PackageNotFoundError as exc:
        raise PatchError("nni is not installed in this environment; the patch is for nni==3.0") from exc
    if version != EXPECTED_NNI_VERSION:
        raise PatchError(f"the patch is for nni=={EXPECTED_NNI_VERSION} but nni=={version} is installed; "
                         "it was left untouched (NNI's code may differ; check compat.js by hand)")


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError as exc:
        raise PatchError(f"{path} does not exist") from exc


def _state(text: str, fix: FilePatch = PAIRING) -> str:
    if _sha256(text.encode("utf-8")) == fix.original_sha256:
        return "unpatched"
    if _unpatch_text(text, fix) is not None:
        return "patched"
    return "unexpected"


def _write_atomic(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    data = text.encode("utf-8")
    atomic_write(path, lambda f: f.write(data), mode=mode)


_UNEXPECTED = ("{path} is neither NNI 3.0's {name} (sha256 {original}) nor its patched form "
               "(sha256 of this file: {actual}); nothing was changed. Reinstall nni==3.0 to get the original"
               "{backup_hint}.")


def _unexpected(path: Path, text: str, fix: FilePatch = PAIRING) -> str:
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    hint = f", or restore the backup {backup}" if backup.is_file() else ""
    return _UNEXPECTED.format(path=path, name=Path(fix.relpath).name, original=fix.original_sha256[:12],
                              actual=_sha256(text.encode())[:12], backup_hint=hint)


def _inspect(path: str | os.PathLike[str] | None, check_version: bool,
             fix: FilePatch = PAIRING) -> tuple[Path, str, str]:
    """(file, its text, its state) after the version check, for apply and revert."""
    if check_version:
        _check_version()
    target = Path(path) if path is not None else fix.path()
    text = _read(target)
    return target, text, _state(text, fix)


def patch_status(path: str | os.PathLike[str] | None = None, *, fix: FilePatch = PAIRING) -> PatchStatus:
    """Whether the file of ``fix`` (default: the installed one) carries it."""
    target = Path(path) if path is not None else fix.path()
    text = _read(target)
    state = _state(text, fix)
    if state == "patched":
        message = f"patched: {target}: {fix.applied}"
    elif state == "unpatched":
        message = (f"not patched: {target} is {fix.original}; "
                   "run `python -m nni_nas_ext.nni.nni_patch apply`")
    else:
        message = "unexpected file: " + _unexpected(target, text, fix)
    return PatchStatus(target, state, message)


def apply_patch(path: str | os.PathLike[str] | None = None, *, check_version: bool = True,
                fix: FilePatch = PAIRING) -> PatchResult:
    """Apply the fix to ``compat.js`` (default: the installed one); idempotent.

    The original is copied to ``compat.js.nni-nas-ext-orig`` first. Experiments started afterwards use the fix.

    Raises
    ------
    PatchError
        NNI is not version 3.0, or the file is neither NNI 3.0's original nor already patched.
    """
    target, text, state = _inspect(path, check_version, fix)
    if state == "patched":
        return PatchResult(target, "patched", False, f"already patched: {target} (nothing to do)")
    if state == "unexpected":
        raise PatchError("refusing to patch: " + _unexpected(target, text, fix))
    patched = _patch_text(text, fix)
    backup = target.with_name(target.name + BACKUP_SUFFIX)
    if not (backup.is_file() and _sha256(backup.read_bytes()) == fix.original_sha256):
        _write_atomic(backup, text)
    _write_atomic(target, patched)
    return PatchResult(target, "patched", True,
                       f"patched {target}: {fix.applied} (backup of the original: {backup}); restart running "
                       "experiments to use it", backup)


def apply_all(*, check_version: bool = True) -> list[PatchResult]:
    """:func:`apply_patch` of every fix of :data:`FIXES` to the installed NNI, in order."""
    return [apply_patch(check_version=check_version, fix=fix) for fix in FIXES.values()]


def revert_patch(path: str | os.PathLike[str] | None = None, *, check_version: bool = True,
                 fix: FilePatch = PAIRING) -> PatchResult:
    """Restore NNI 3.0's original ``compat.js`` byte for byte; idempotent.

    Raises
    ------
    PatchError
        NNI is not version 3.0, or the file is neither NNI 3.0's original nor its patched form.
    """
    target, text, state = _inspect(path, check_version, fix)
    if state == "unpatched":
        return PatchResult(target, "unpatched", False, f"not patched: {target} is already NNI 3.0's original")
    original = _unpatch_text(text, fix)
    if original is None:
        raise PatchError("refusing to revert: " + _unexpected(target, text, fix))
    _write_atomic(target, original)
    return PatchResult(target, "unpatched", True,
                       f"reverted {target} to NNI 3.0's original (sha256 {fix.original_sha256[:12]}...)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nni_nas_ext.nni.nni_patch",
        description="Apply (or undo) nni-nas-ext's edits of the installed NNI 3.0: 'pairing' fixes the "
                    "first-in-first-out parameter bug, 'bind' makes the portal and REST API listen on 127.0.0.1 "
                    f"(or ${BIND_HOST_ENV}), 'reason' shows a failed dispatcher's message in the experiment's status.",
        epilog="example: python -m nni_nas_ext.nni.nni_patch apply   (every edit; idempotent)")
    parser.add_argument("action", nargs="?", choices=("apply", "revert", "status"), default=None,
                        help="apply the fix, revert it, or report the status (default: status)")
    parser.add_argument("--revert", action="store_true", help="same as the action 'revert'")
    parser.add_argument("--check", action="store_true",
                        help="same as 'status'; exit code 0 patched, 1 not patched, 2 unexpected file")
    parser.add_argument("--fix", choices=(*FIXES, "all"), default=None,
                        help="which edit (default: all; with --path: pairing)")
    parser.add_argument("--path", help="a copy of the file of --fix to work on instead of the installed one")
    args = parser.parse_args(argv)

    requested = {a for a in (args.action, "revert" if args.revert else None, "status" if args.check else None) if a}
    if len(requested) > 1:
        parser.error(f"choose one action, got {sorted(requested)}")
    action = requested.pop() if requested else "status"
    name = args.fix or ("pairing" if args.path else "all")
    if name == "all" and args.path:
        parser.error("--path works on one file: name its --fix (pairing or bind)")
    fixes = list(FIXES.values()) if name == "all" else [FIXES[name]]
    codes = []
    for fix in fixes:
        try:
            if action == "status":
                status = patch_status(args.path, fix=fix)
                print(status.message)
                codes.append({"patched": 0, "unpatched": 1}.get(status.state, 2))
                continue
            result = apply_patch(args.path, fix=fix) if action == "apply" else revert_patch(args.path, fix=fix)
        except PatchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            codes.append(2)
            continue
        print(result.message)
        codes.append(0)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
