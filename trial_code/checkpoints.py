"""A checkpoint store keyed by candidate id: where a trial leaves its weights for its children.

Every trained candidate (an architecture together with the weights one trial gave it) has an id made by
the strategy, ``f"{architecture.id}-{serial:04d}"`` (e.g. ``0123456789abcdef-0003``). Its checkpoint
``<root>/<id>.pt`` holds the architecture's JSON, its ``state_dict`` and a small JSON ``meta`` dict (for
example the validation accuracy it reached).

* Writes are atomic (:func:`nni_nas_ext.atomic.atomic_write`): the file is written to a temporary file
  ``.<id>.pt.<random>.tmp`` in the same folder, flushed to disk, and moved over the target with
  ``os.replace``; a reader sees the old checkpoint or the new one whole, never a partial file, and the
  temporary file is removed when writing fails. A trial killed while saving leaves its temporary file
  behind: :meth:`CheckpointStore.open` removes such files once they are stale (no write in progress can
  be that old) and logs how many files and bytes it removed.
* The store's folder must be absolute and not a system folder (:func:`checkpoint_dir_error`, used by the
  task configurations) and, before a search starts, a folder this user can write or create
  (:func:`checkpoint_dir_unusable`).
* Reads use ``torch.load(weights_only=True)``: a file holding anything but tensors and plain containers
  is refused (no code in it can run).
* Ids that are not plain file names (path separators, ``.``/``..``, control characters, empty, longer
  than 128 characters) are refused, so that no id can reach outside the store.
* Networks that are not :class:`Architecture` values (the NNI baselines' CNN-stage samples) keep their
  weights with :meth:`CheckpointStore.save_weights` (the same file, written and read the same way, without
  an architecture; ``meta`` says how to rebuild the network) and read them with
  :meth:`CheckpointStore.load_weights`.

Every failure is a :class:`CheckpointError` that names the id or the file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nni_nas_ext.atomic import RemovedTemporaries, atomic_write, remove_stale_temporaries
from nni_nas_ext.core import Architecture

__all__ = ["CHECKPOINT_FORMAT", "SYSTEM_FOLDERS", "Checkpoint", "CheckpointError", "CheckpointStore", "Weights",
           "checkpoint_dir_error", "checkpoint_dir_unusable"]

#: Version of the payload layout, stored in every checkpoint.
CHECKPOINT_FORMAT = 1
_SUFFIX = ".pt"
_MAX_ID = 128
_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{_MAX_ID - 1}}}")
_LISTED = 10  # ids named when a checkpoint is missing

#: Folders a checkpoint store may never be: the root and the system's own folders. The first three are
#: refused with everything beneath them (kernel and device file systems); the others only themselves.
SYSTEM_FOLDERS = ("/proc", "/sys", "/dev", "/", "/etc", "/bin", "/boot", "/lib", "/usr", "/sbin", "/var", "/run")
_SYSTEM_TREES = ("/proc", "/sys", "/dev")


class CheckpointError(RuntimeError):
    """A checkpoint is missing or unreadable, or its id or contents are not allowed."""


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """An architecture, its trained weights, and a small JSON-able ``meta`` dict."""

    architecture: Architecture
    state_dict: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Weights:
    """Trained weights of a network that is not an :class:`Architecture` value, and the JSON ``meta`` that
    says how to rebuild it (e.g. the NNI baselines' ``sample``)."""

    state_dict: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def _check_id(candidate_id: object) -> str:
    if not isinstance(candidate_id, str) or not _ID.fullmatch(candidate_id) or ".." in candidate_id:
        raise CheckpointError(
            f"checkpoint id {candidate_id!r} is not allowed: use 1-{_MAX_ID} letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, without '..' (candidate ids look like '0123456789abcdef-0003')")
    return candidate_id


class CheckpointStore:
    """Checkpoints as ``<root>/<candidate id>.pt``.

    Parameters
    ----------
    root
        An absolute folder; created on the first :meth:`save`.

    Raises
    ------
    CheckpointError
        If ``root`` is not absolute (a relative path would depend on each trial's working directory).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        path = Path(root)
        if not path.is_absolute():
            raise CheckpointError(f"the checkpoint store needs an absolute path, but got {os.fspath(root)!r}; "
                                  f"e.g. {str(path.resolve())!r}")
        self.root = path
        self.removed_temporaries = RemovedTemporaries(0, 0)  # what :meth:`open` cleaned up

    @classmethod
    def open(cls, root: str | os.PathLike[str]) -> CheckpointStore:
        """The store at ``root``, with the stale temporary files of interrupted saves removed (and logged).

        What a trial uses: a trial killed while saving leaves ``.<id>.pt.<random>.tmp`` behind (hundreds of
        MB with larger networks); files unchanged for :data:`~nni_nas_ext.atomic.STALE_TEMPORARY_AGE_S`
        belong to no write in progress and are removed. Nothing else in the folder is touched.
        """
        store = cls(root)
        store.removed_temporaries = remove_stale_temporaries(store.root)
        return store

    def __repr__(self) -> str:
        return f"CheckpointStore({str(self.root)!r})"

    def path(self, candidate_id: str) -> Path:
        """Where the checkpoint of ``candidate_id`` lives; refuses ids that could escape the store."""
        return self.root / f"{_check_id(candidate_id)}{_SUFFIX}"

    def __contains__(self, candidate_id: object) -> bool:
        return self.path(candidate_id).is_file()  # type: ignore[arg-type]

    def ids(self) -> list[str]:
        """Ids of the checkpoints in the store, sorted (temporary files of unfinished writes excluded)."""
        if not self.root.is_dir():
            return []
        return sorted(p.name[: -len(_SUFFIX)] for p in self.root.iterdir()
                      if p.name.endswith(_SUFFIX) and _ID.fullmatch(p.name[: -len(_SUFFIX)]) and p.is_file())

    def save(self, candidate_id: str, architecture: Architecture, state_dict: Mapping[str, Tensor],
             meta: Mapping[str, Any] | None = None) -> Path:
        """Write a checkpoint atomically and return its path.

        A reader sees the old file or the new one whole, never a partial one; on failure the temporary
        file is removed and the old checkpoint (if any) is left as it was.

        Raises
        ------
        CheckpointError
            On a bad id, a ``state_dict`` that is not ``str -> Tensor``, or a ``meta`` that is not a JSON
            object (finite numbers only).
        """
        if not isinstance(architecture, Architecture):
            raise CheckpointError(f"checkpoint {candidate_id!r}: architecture must be an Architecture, "
                                  f"but got {type(architecture).__name__}")
        return self._write(candidate_id, {"architecture": architecture.to_json()}, state_dict, meta)

    def save_weights(self, key: str, state_dict: Mapping[str, Tensor], meta: Mapping[str, Any] | None = None) -> Path:
        """Write the weights of a network that is not an :class:`Architecture` value (NNI's baselines), atomically
        and in the same safe format as :meth:`save`; ``meta`` must say how to rebuild the network. Returns the path.

        Raises
        ------
        CheckpointError
            As :meth:`save` (bad id, state_dict, meta).
        """
        return self._write(key, {}, state_dict, meta)

    def _write(self, candidate_id: str, head: Mapping[str, Any], state_dict: Mapping[str, Tensor],
               meta: Mapping[str, Any] | None) -> Path:
        target = self.path(candidate_id)
        bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, Tensor)]
        if bad:
            raise CheckpointError(f"checkpoint {candidate_id!r}: state_dict must map names to tensors, but "
                                  f"{bad[:3]!r} do not")
        try:
            meta_json = json.dumps(dict(meta or {}), allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {candidate_id!r}: meta must be a JSON object with finite numbers, "
                                  f"but {exc}") from exc
        payload = {"format": CHECKPOINT_FORMAT, **head, "meta": meta_json,
                   "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}}
        atomic_write(target, lambda handle: torch.save(payload, handle))
        self._sync_folder()
        return target

    def _sync_folder(self) -> None:
        """Make the rename durable (best effort: not every platform can fsync a folder)."""
        try:
            fd = os.open(self.root, os.O_RDONLY)
        except OSError:  # pragma: no cover
            return
        try:
            os.fsync(fd)
        except OSError:  # pragma: no cover
            pass
        finally:
            os.close(fd)

    def load(self, candidate_id: str) -> Checkpoint:
        """Read a checkpoint with ``weights_only=True`` (no code in the file can run), onto the CPU.

        Raises
        ------
        CheckpointError
            On a bad id, a missing file (the message names the path and some ids the store holds), or a
            file that is damaged, holds objects other than tensors, or lacks a part.
        """
        path, payload = self._read(candidate_id)
        try:
            missing = [k for k in ("architecture", "state_dict") if k not in payload]
            if missing:
                raise ValueError(f"it lacks {missing}")
            arch = Architecture.from_json(payload["architecture"])
            state, meta = _state_and_meta(payload)
        except Exception as exc:  # noqa: BLE001 - any inconsistency is reported with the file
            raise CheckpointError(f"checkpoint {candidate_id!r} at {path} is not a valid checkpoint: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return Checkpoint(arch, state, meta)

    def load_weights(self, key: str) -> Weights:
        """Read the weights and ``meta`` of any file of the store (:meth:`save_weights`'s, or a checkpoint's
        without its architecture), with ``weights_only=True``, onto the CPU.

        Raises
        ------
        CheckpointError
            As :meth:`load`.
        """
        path, payload = self._read(key)
        try:
            if "state_dict" not in payload:
                raise ValueError("it lacks ['state_dict']")
            state, meta = _state_and_meta(payload)
        except Exception as exc:  # noqa: BLE001 - any inconsistency is reported with the file
            raise CheckpointError(f"checkpoint {key!r} at {path} is not a valid checkpoint: "
                                  f"{type(exc).__name__}: {exc}") from exc
        return Weights(state, meta)

    def _read(self, candidate_id: str) -> tuple[Path, dict[str, Any]]:
        """The file of ``candidate_id`` and its payload (a dict), read with ``weights_only=True``."""
        path = self.path(candidate_id)
        if not path.is_file():
            known = self.ids()
            listed = ", ".join(known[:_LISTED]) + (f", ... ({len(known)} in all)" if len(known) > _LISTED else "")
            raise CheckpointError(
                f"no checkpoint {candidate_id!r}: looked for {path}; the store holds "
                + (listed if known else "no checkpoints") + " (a child must start after its parent's trial saved)")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - damaged files and refused objects alike
            raise CheckpointError(f"checkpoint {candidate_id!r} at {path} could not be read "
                                  f"({type(exc).__name__}: {_first_line(exc)}); it is damaged or not written by "
                                  "CheckpointStore (only tensors and plain containers are loaded): retrain the "
                                  "candidate") from exc
        if not isinstance(payload, dict):
            raise CheckpointError(f"checkpoint {candidate_id!r} at {path} is not a valid checkpoint: ValueError: "
                                  f"the file holds a {type(payload).__name__}, not a dict")
        return path, payload


def _state_and_meta(payload: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A payload's ``state_dict`` and ``meta``, checked (ValueError says what is wrong)."""
    state = payload["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()):
        raise ValueError("its state_dict is not a dict of tensors")
    meta = json.loads(payload.get("meta", "{}"))
    if not isinstance(meta, dict):
        raise ValueError("its meta is not a JSON object")
    return dict(state), meta


def _first_line(exc: Exception) -> str:
    """The informative line of an exception (torch's weights-only refusal names the global on a later line)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    named = [line for line in lines if "global" in line.lower()]
    return (named or lines or [""])[0][:300]


def _system_folder(path: str) -> str | None:
    """The entry of :data:`SYSTEM_FOLDERS` that ``path`` (absolute, normalised) is or lies in, if any."""
    for folder in SYSTEM_FOLDERS:
        if path == folder or folder in _SYSTEM_TREES and path.startswith(folder + "/"):
            return folder
    return None


def _normalised(path: str) -> str:
    """``path`` without ``.``/``..`` steps, repeated or trailing slashes (no file-system access)."""
    return "/" + os.path.normpath(path).lstrip("/")


def checkpoint_dir_error(path: str) -> str | None:
    """What is wrong with ``path`` as a checkpoint folder, judged from the path alone; ``None`` if nothing.

    The text continues "checkpoint_dir ..." in a message: "must be ..., but got ...; remedy". The folder
    must be absolute (a relative one would depend on each trial's working directory) and not one of
    :data:`SYSTEM_FOLDERS` (nor under ``/proc``, ``/sys``, ``/dev``).
    """
    if not os.path.isabs(path):
        return f"must be an absolute path, but got {path!r}; e.g. {str(Path(path).resolve())!r}"
    folder = _system_folder(_normalised(path))
    if folder is not None:
        inside = "" if _normalised(path) == folder else f" (it lies in {folder})"
        return (f"must not be a system folder ({', '.join(SYSTEM_FOLDERS)}, or anything under "
                f"{', '.join(_SYSTEM_TREES)}), but got {path!r}{inside}; give a folder of your own, e.g. "
                f"{str(Path.home() / 'nni-checkpoints')!r}")
    return None


def _suggestion(folder: Path) -> str:
    """``folder`` as an example to give, unless it is itself a system folder (then one in the home folder)."""
    return str(folder) if _system_folder(str(folder.parent)) is None else str(Path.home() / "nni-checkpoints")


def checkpoint_dir_unusable(path: str) -> str | None:
    """What keeps this user from keeping checkpoints in ``path``, checked on the file system; ``None`` if nothing.

    Beyond :func:`checkpoint_dir_error`: the folder, with links resolved, is not a system folder; it is
    not an existing file (or other non-folder); it is writable, or, if it does not exist yet, its nearest
    existing parent is a writable folder (the store creates it on the first save). Nothing is created.
    The text continues "checkpoint_dir ..." in a message, like :func:`checkpoint_dir_error`'s.
    """
    problem = checkpoint_dir_error(path)
    if problem is not None:
        return problem
    resolved = str(Path(path).resolve())
    if resolved != _normalised(path) and _system_folder(resolved) is not None:
        return (f"must not be a system folder, but got {path!r}, which leads to {resolved!r}; give a folder of "
                f"your own, e.g. {str(Path.home() / 'nni-checkpoints')!r}")
    target = Path(path)
    if target.exists() and not target.is_dir():
        kind = "a file" if target.is_file() else "not a folder"
        return (f"must be a folder (or not exist yet), but got {path!r}, which is {kind}; remove it or choose "
                f"another folder, e.g. {_suggestion(target.parent / 'checkpoints')!r}")
    existing = target
    while not existing.exists() and existing != existing.parent:  # the nearest existing ancestor
        existing = existing.parent
    if not existing.is_dir():
        return (f"must be a folder that can be created, but got {path!r}, and {str(existing)!r} on its way is "
                f"not a folder; choose another folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == target else f"cannot be created: {str(existing)!r} is not writable"
        return (f"must be a folder this user can write, but got {path!r}, which {what} by this user; fix its "
                f"permissions or choose another folder")
    return None
