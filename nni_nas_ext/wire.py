"""The one wire format of a trial's parameter: plain JSON, versioned, authenticated by a per-experiment key.

What crosses the process boundary from a search to a trial is a :class:`TrialPayload`: the kind of job, the
job itself as JSON, and the settings the trial needs (the task: dataset, training, where checkpoints go). The
two payload kinds are the two job types of :mod:`nni_nas_ext.core.jobs` (in the core, so that the strategies
that propose them and the trial code that runs them share one definition): ``candidate``, a
:class:`~nni_nas_ext.core.jobs.Candidate` of the morphism searches, and ``fna_job``, a
:class:`~nni_nas_ext.core.jobs.FnaJob` of FNA's pipeline (``job`` is their ``to_dict()``; the trial reads it
back with ``from_dict``). On the wire it is::

    {"format": "nni-nas-ext/trial", "version": 1, "kind": "candidate",
     "job": {...}, "settings": {"task": {...}}, "signature": "<hex HMAC-SHA256>"}

Why a signature. NNI's REST API is unauthenticated: ``POST /api/v1/nni/trial-jobs`` ("customized trial")
starts a trial with any parameter the caller sends. A trial must run only what the experiment's own search
asked for, and files must go only where the experiment's settings say. So the dispatcher signs every
parameter with HMAC-SHA256 under a random 256-bit key that lives with the experiment (a file in the
experiment's folder, mode 0600; never in a parameter, a log or the REST API), over the canonical JSON of the
payload *and the parameter id NNI delivers with it*. A customized trial always reaches the trial with
``parameter_id: null`` (NNI's manager sets it, not the caller), so even a copy of a genuine signed payload
is refused; a trial that NNI itself re-runs (``nnictl resume``, the same parameter id) verifies as before.

Nothing here unpickles, imports ``nni`` or chooses a path from a parameter: :func:`decode_trial` checks the
envelope, the signature (constant-time) and the shapes before anything is built; every refusal is a
:class:`WireError` whose message names the field and what was expected.

Standard library only: the trial entry and the dispatcher import it before anything heavy.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "KEY_FILE_ENV",
    "KINDS",
    "WIRE_FORMAT",
    "WIRE_VERSION",
    "TrialPayload",
    "WireError",
    "canonical_json",
    "decode_trial",
    "encode_trial",
    "experiment_key_path",
    "is_wire_payload",
    "load_or_create_key",
    "read_key",
    "sign",
]

WIRE_FORMAT = "nni-nas-ext/trial"
WIRE_VERSION = 1

#: payload kinds (the job types of :mod:`nni_nas_ext.core.jobs`) and the settings each must carry
KINDS: Mapping[str, tuple[str, ...]] = {
    "candidate": ("task",),             # core.jobs.Candidate: a morphism search's (NASH, EAS, their baselines)
    "fna_job": ("task", "adaptation"),  # core.jobs.FnaJob: a job of FNA's pipeline (seed, adapt, param, baselines)
}

#: the key file's name inside the experiment folder's ``nni-nas-ext`` sub-folder
KEY_FILE_NAME = "trial-key"
KEY_DIR_NAME = "nni-nas-ext"

#: environment variable naming the key file explicitly (the trial command's environment, i.e. the
#: experiment's own configuration: for trials whose experiment folder is not the dispatcher's)
KEY_FILE_ENV = "NNI_NAS_EXT_TRIAL_KEY_FILE"

_KEY_BYTES = 32
_MAX_PAYLOAD_BYTES = 256 * 1024  # NNI caps its own pickled parameters at 64 KB; ours are far smaller


class WireError(ValueError):
    """A trial parameter that is not a valid, authentic payload of this experiment."""


@dataclass(frozen=True)
class TrialPayload:
    """What a trial is asked to run: ``kind``, the ``job`` (JSON) and its ``settings`` (JSON objects by name)."""

    kind: str
    job: dict[str, Any]
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise WireError(f"kind must be one of {sorted(KINDS)}, but got {self.kind!r}")
        if not isinstance(self.job, dict):
            raise WireError(f"job must be a JSON object, but got {type(self.job).__name__}")
        if not isinstance(self.settings, dict):
            raise WireError(f"settings must be a JSON object, but got {type(self.settings).__name__}")
        wanted = set(KINDS[self.kind])
        if set(self.settings) != wanted:
            raise WireError(f"settings of a {self.kind!r} payload must have exactly the keys {sorted(wanted)}, "
                            f"but got {sorted(self.settings)}")
        for name, value in self.settings.items():
            if not isinstance(value, dict):
                raise WireError(f"settings[{name!r}] must be a JSON object, but got {type(value).__name__}")

    def body(self) -> dict[str, Any]:
        """The signed part of the envelope."""
        return {"format": WIRE_FORMAT, "version": WIRE_VERSION, "kind": self.kind, "job": self.job,
                "settings": self.settings}


def _json_numbers(value: Any) -> Any:
    """``value`` with every integral float as an int: JavaScript has one number type, so a payload that NNI's
    manager parses and writes again (``nnictl resume`` does) comes back with ``1`` where it had ``1.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_numbers(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """One byte string per JSON value: sorted keys, no spaces, UTF-8, integral numbers as integers (the same
    bytes after any JSON parser and writer, JavaScript's included); NaN and infinities refused."""
    try:
        return json.dumps(_json_numbers(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise WireError(f"a trial payload must be finite JSON: {exc}") from None
    except TypeError as exc:
        raise WireError(f"a trial payload must be plain JSON: {exc}") from None


def sign(key: bytes, parameter_id: int, body: Mapping[str, Any]) -> str:
    """HMAC-SHA256 (hex) of the parameter id and the canonical JSON of ``body`` under ``key``."""
    if isinstance(parameter_id, bool) or not isinstance(parameter_id, int):
        raise WireError(f"parameter_id must be an integer, but got {parameter_id!r}")
    message = f"{WIRE_FORMAT}\n{parameter_id}\n".encode() + canonical_json(dict(body))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def encode_trial(payload: TrialPayload, parameter_id: int, key: bytes) -> dict[str, Any]:
    """The JSON envelope of ``payload`` for the trial that NNI will start with ``parameter_id``."""
    body = payload.body()
    size = len(canonical_json(body))
    if size > _MAX_PAYLOAD_BYTES:
        raise WireError(f"a trial payload must be at most {_MAX_PAYLOAD_BYTES} bytes of JSON, but this one is "
                        f"{size}: settings must hold names and paths, never data")
    return {**body, "signature": sign(key, parameter_id, body)}


def is_wire_payload(parameters: Any) -> bool:
    """Whether ``parameters`` claims to be one of ours (authentic or not: :func:`decode_trial` decides)."""
    return isinstance(parameters, dict) and parameters.get("format") == WIRE_FORMAT


def decode_trial(parameters: Any, parameter_id: Any, key: bytes) -> TrialPayload:
    """The payload of an authentic envelope, or :class:`WireError` saying why it is refused.

    Parameters
    ----------
    parameters
        The JSON-decoded ``parameters`` of the trial's parameter record.
    parameter_id
        The record's ``parameter_id`` as NNI delivered it (``None`` for a customized trial).
    key
        This experiment's key (:func:`read_key`).
    """
    if not is_wire_payload(parameters):
        raise WireError(f"the parameter is not an nni-nas-ext trial payload (field 'format' must be "
                        f"{WIRE_FORMAT!r})")
    if parameters.get("version") != WIRE_VERSION:
        raise WireError(f"payload version {parameters.get('version')!r} is not supported (this code reads "
                        f"version {WIRE_VERSION}); run the dispatcher and the trials with the same nni-nas-ext")
    if parameter_id is None:
        raise WireError("the trial has no parameter id: it was not created by the experiment's search (a "
                        "customized trial, e.g. POST /api/v1/nni/trial-jobs or the portal's 'add trial'); "
                        "refusing to run it")
    if isinstance(parameter_id, bool) or not isinstance(parameter_id, int):
        raise WireError(f"parameter_id must be an integer, but got {parameter_id!r}")
    signature = parameters.get("signature")
    if not isinstance(signature, str):
        raise WireError("the payload carries no signature; refusing to run it")
    expected_keys = {"format", "version", "kind", "job", "settings", "signature"}
    if set(parameters) != expected_keys:
        raise WireError(f"the payload must have exactly the fields {sorted(expected_keys)}, but got "
                        f"{sorted(parameters)}")
    body = {k: v for k, v in parameters.items() if k != "signature"}
    if not hmac.compare_digest(signature, sign(key, parameter_id, body)):
        raise WireError("the payload's signature does not match this experiment's key: it was not created by "
                        "this experiment's search (or was altered); refusing to run it")
    return TrialPayload(kind=body["kind"], job=body["job"], settings=body["settings"])


# ---- the experiment's key ---------------------------------------------------------------------------------

def experiment_key_path(env: Mapping[str, str] | None = None) -> Path:
    """Where this process finds the experiment's key, from NNI's environment (dispatcher or local trial).

    In order: ``$NNI_NAS_EXT_TRIAL_KEY_FILE``; the dispatcher's ``$NNI_LOG_DIRECTORY/../nni-nas-ext/trial-key``;
    a local trial's ``<experiment>/nni-nas-ext/trial-key``, where ``<experiment>`` is the ancestor of
    ``$NNI_OUTPUT_DIR`` named ``$NNI_EXP_ID`` (NNI 3.0: ``<experiment>/environments/<env>/trials/<trial id>``).

    Raises
    ------
    WireError
        None of these variables says where the experiment's folder is.
    """
    env = os.environ if env is None else env
    explicit = env.get(KEY_FILE_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_absolute():
            raise WireError(f"{KEY_FILE_ENV} must be an absolute path, but got {explicit!r}")
        return path
    if env.get("NNI_PLATFORM") == "remote":  # a trial on another host: its own folders hold no key
        raise WireError(f"this trial runs on a remote host (NNI_PLATFORM=remote) and {KEY_FILE_ENV} is not set: put "
                        f"{KEY_FILE_ENV}=<the experiment's key file on shared storage> in front of the trialCommand")
    log_dir = env.get("NNI_LOG_DIRECTORY")
    if log_dir:
        return Path(log_dir).parent / KEY_DIR_NAME / KEY_FILE_NAME
    output_dir = env.get("NNI_OUTPUT_DIR")
    if output_dir:
        # NNI 3.0's local training service: <experiment>/environments/<env>/trials/<trial>;
        # older: <experiment>/trials/<trial>
        exp_id = env.get("NNI_EXP_ID")
        for experiment_dir in Path(output_dir).parents:
            if exp_id and experiment_dir.name == exp_id:
                return experiment_dir / KEY_DIR_NAME / KEY_FILE_NAME
        raise WireError(f"cannot find the experiment's key: NNI_OUTPUT_DIR={output_dir!r} is not inside a folder "
                        f"named after the experiment (NNI_EXP_ID={exp_id!r}); set {KEY_FILE_ENV} in the trial "
                        "command's environment")
    raise WireError(f"cannot find the experiment's key: none of {KEY_FILE_ENV}, NNI_LOG_DIRECTORY, "
                    "NNI_OUTPUT_DIR is set (is this process started by NNI?)")


def read_key(path: str | os.PathLike[str]) -> bytes:
    """The key stored at ``path`` (64 hex digits). Raises :class:`WireError` naming the file."""
    target = Path(path)
    try:
        text = target.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise WireError(f"the experiment's key file {target} does not exist: the dispatcher creates it when the "
                        "experiment starts; this trial does not belong to an nni-nas-ext experiment") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise WireError(f"cannot read the experiment's key file {target}: {exc}") from None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != _KEY_BYTES:
        raise WireError(f"the experiment's key file {target} must hold {2 * _KEY_BYTES} hex digits")
    return key


def load_or_create_key(path: str | os.PathLike[str]) -> bytes:
    """The key at ``path``, created (random, 256 bits, mode 0600, atomically) when there is none yet.

    The dispatcher calls it at every start: a resumed experiment keeps its key, so NNI's re-runs verify.
    """
    target = Path(path)
    if target.exists():
        return read_key(target)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = secrets.token_bytes(_KEY_BYTES)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, target)  # never replaces a key another process created meanwhile
        except FileExistsError:
            return read_key(target)
    finally:
        tmp.unlink(missing_ok=True)
    return key
