"""The bridge's state file: a lossless JSON codec for a strategy's ``state_dict`` and :class:`BridgeState`.

The strategy's ``state_dict`` and one record per submitted model are checkpointed after each submission and
each result, as one JSON file written atomically (NNI's default checkpoint uses ``torch.load``, which fails
on torch >= 2.6; its JSON serializer cannot store the ``frozenset`` that NNI's own strategies keep). The file
is data only: nothing in it is pickled, imported or executed when it is read back on ``nnictl resume``.

Import-light: standard library only at import time (numpy when a numpy value is met).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nni_nas_ext.atomic import atomic_write

if TYPE_CHECKING:
    from nni.nas.strategy import Strategy

__all__ = [
    "RENAMED_STRATEGY_CLASSES",
    "STATE_FILE_NAME",
    "STATE_FORMAT",
    "STATE_VERSION",
    "BridgeState",
    "StateFileError",
    "decode_state",
    "encode_state",
    "plain_copy",
]

_log = logging.getLogger(__name__)

STATE_FILE_NAME = "nni_nas_ext_bridge_state.json"
"""Name of the bridge's checkpoint, in the experiment's ``checkpoint`` folder."""

STATE_FORMAT = "nni-nas-ext bridge state"
STATE_VERSION = 1

RENAMED_STRATEGY_CLASSES: dict[str, str] = {
    "nni_nas_ext.nni.strategy.MorphismStrategy": "nni_nas_ext.nni.nas_strategy.MorphismStrategy",
}
"""Strategy classes that moved after state files named them (``strategy_class``): old dotted name -> new one,
so that ``nnictl resume`` of an experiment started before the move still finds the same strategy."""

_TAG = "__nni_nas_ext__"


# --------------------------------------------------------------------------------------------------------
# JSON state codec
# --------------------------------------------------------------------------------------------------------

def encode_state(obj: Any, path: str = "state") -> Any:
    """Turn a strategy ``state_dict`` into plain JSON values, losslessly.

    JSON keeps ``None``, booleans, strings, finite numbers, lists and dicts with string keys as they are.
    Tuples, sets, frozensets, dicts with other keys, non-finite floats, bytes, numpy arrays and scalars
    (NNI's strategies keep a ``RandomState`` tuple and a ``frozenset`` history) become tagged objects that
    :func:`decode_state` turns back into the same types. Nothing is pickled: a state file is data only.

    Raises
    ------
    TypeError
        A value that none of these can store, named by its path in the state (``state['history'][3]``).
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int) and type(obj).__module__ == "builtins":
        return obj
    if isinstance(obj, float) and type(obj).__module__ == "builtins":
        return obj if math.isfinite(obj) else {_TAG: "float", "value": repr(obj)}
    if isinstance(obj, dict):
        if all(isinstance(key, str) for key in obj) and _TAG not in obj:
            return {key: encode_state(value, f"{path}[{key!r}]") for key, value in obj.items()}
        return {_TAG: "dict", "items": [[encode_state(key, f"{path}.key"), encode_state(value, f"{path}[{key!r}]")]
                                        for key, value in obj.items()]}
    if isinstance(obj, list):
        return [encode_state(value, f"{path}[{i}]") for i, value in enumerate(obj)]
    if isinstance(obj, tuple):
        return {_TAG: "tuple", "items": [encode_state(value, f"{path}[{i}]") for i, value in enumerate(obj)]}
    if isinstance(obj, (set, frozenset)):
        items = [encode_state(value, f"{path}{{...}}") for value in obj]
        items.sort(key=lambda item: json.dumps(item, sort_keys=True))  # deterministic files
        return {_TAG: type(obj).__name__, "items": items}
    if isinstance(obj, (bytes, bytearray)):
        return {_TAG: "bytes", "base64": base64.b64encode(bytes(obj)).decode("ascii")}
    if type(obj).__module__ == "numpy":
        import numpy as np

        if isinstance(obj, np.ndarray):
            if obj.dtype == object:
                raise TypeError(f"{path}: numpy arrays of dtype object cannot be stored in the JSON state file")
            return {_TAG: "ndarray", "dtype": obj.dtype.str, "shape": list(obj.shape),
                    "base64": base64.b64encode(np.ascontiguousarray(obj).tobytes()).decode("ascii")}
        if isinstance(obj, np.generic):
            return {_TAG: "numpy_scalar", "dtype": obj.dtype.str, "value": encode_state(obj.item(), path)}
    raise TypeError(f"{path}: a {type(obj).__qualname__} cannot be stored in the JSON state file (plain JSON, "
                    "tuples, sets, bytes and numpy values only; nothing is pickled); make state_dict() return "
                    "plain values")


_TAGS = ("float", "dict", "tuple", "set", "frozenset", "bytes", "ndarray", "numpy_scalar")


class StateFileError(ValueError):
    """A state file that is not what :func:`encode_state` writes: refused, naming the file and the key."""


def _items(obj: dict[str, Any], path: str, field: str = "items") -> list[Any]:
    items = obj.get(field)
    if not isinstance(items, list):
        raise StateFileError(f"{path}: a {obj[_TAG]!r} value needs a list {field!r}, but got {type(items).__name__}")
    return items


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], path: str) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise StateFileError(f"{path}: a {obj[_TAG]!r} value needs the field {name!r} of type "
                             f"{getattr(kind, '__name__', kind)}, but got {value!r:.80}")
    return value


def _hashable(value: Any, path: str) -> Any:
    try:
        hash(value)
    except TypeError:
        raise StateFileError(f"{path}: a set member or dict key must be hashable, but got a "
                             f"{type(value).__name__}") from None
    return value


def decode_state(obj: Any, path: str = "state") -> Any:
    """Inverse of :func:`encode_state`; plain JSON in, plain values out, nothing imported or unpickled.

    Raises
    ------
    StateFileError
        An unknown tag or a tagged value of the wrong shape, named by its path (``state['history'][3]``).
    """
    if isinstance(obj, list):
        return [decode_state(value, f"{path}[{i}]") for i, value in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    if _TAG not in obj:
        return {key: decode_state(value, f"{path}[{key!r}]") for key, value in obj.items()}
    tag = obj[_TAG]
    if tag not in _TAGS:
        raise StateFileError(f"{path}: unknown tag {tag!r}; known tags: {', '.join(_TAGS)} (nothing else is "
                             "ever loaded from a state file)")
    try:
        if tag == "float":
            text = _field(obj, "value", str, path)
            if text not in ("nan", "inf", "-inf"):
                raise StateFileError(f"{path}: a 'float' value is one of 'nan', 'inf', '-inf', but got {text!r:.40}")
            return float(text)
        if tag == "dict":
            pairs = _items(obj, path)
            if not all(isinstance(p, list) and len(p) == 2 for p in pairs):
                raise StateFileError(f"{path}: a 'dict' value's items must be [key, value] pairs")
            return {_hashable(decode_state(k, f"{path}.key"), path): decode_state(v, f"{path}[{i}]")
                    for i, (k, v) in enumerate(pairs)}
        if tag == "tuple":
            return tuple(decode_state(v, f"{path}[{i}]") for i, v in enumerate(_items(obj, path)))
        if tag in ("set", "frozenset"):
            members = [_hashable(decode_state(v, f"{path}{{...}}"), path) for v in _items(obj, path)]
            return set(members) if tag == "set" else frozenset(members)
        if tag == "bytes":
            return base64.b64decode(_field(obj, "base64", str, path), validate=True)
        import numpy as np

        if tag == "ndarray":
            dtype = np.dtype(_field(obj, "dtype", str, path))
            shape = _field(obj, "shape", list, path)
            if dtype.hasobject or not all(isinstance(n, int) and n >= 0 for n in shape):
                raise StateFileError(f"{path}: an 'ndarray' needs a numeric dtype and a shape of ints >= 0")
            data = base64.b64decode(_field(obj, "base64", str, path), validate=True)
            return np.frombuffer(data, dtype=dtype).reshape(shape).copy()
        dtype = np.dtype(_field(obj, "dtype", str, path))  # numpy_scalar
        if dtype.hasobject:
            raise StateFileError(f"{path}: a 'numpy_scalar' needs a numeric dtype, but got {dtype}")
        return dtype.type(decode_state(obj.get("value"), path))
    except StateFileError:
        raise
    except (TypeError, ValueError, binascii.Error) as exc:
        raise StateFileError(f"{path}: a {tag!r} value cannot be decoded: {exc}") from None


def plain_copy(obj: Any) -> Any:
    """A JSON-able copy of a sample or metric, for the bridge's own records."""
    try:
        return json.loads(json.dumps(obj, allow_nan=True))
    except (TypeError, ValueError):
        return encode_state(obj)


def _write_json_atomic(path: Path, data: Any) -> None:
    text = json.dumps(data, indent=1, allow_nan=True).encode("utf-8")
    atomic_write(path, lambda f: f.write(text), mode=0o644)


# --------------------------------------------------------------------------------------------------------
# The bridge's state file
# --------------------------------------------------------------------------------------------------------

class BridgeState:
    """What the bridge checkpoints: the strategy's ``state_dict`` and one record per submitted model.

    A record (``trials[str(parameter_id)]``) holds ``parameter_id``, what was sent, ``status`` (``submitted``,
    ``resumed``: NNI re-runs it after ``nnictl resume``, ``finished``, ``LOST``: sent just before a stop and
    never made a trial by NNI, or the final trial status such as ``FAILED``), and, once known, ``trial_job_id``
    and ``source`` (``metric``: heard live, ``import``: learned from NNI's ``ImportData`` on resume).

    One ledger: for our searches the strategy's state holds the candidates and their results (the search's
    ``job`` and ``result``), and a record only names the ``candidate`` sent. NNI's own strategies keep no such
    ledger, so for them a record also holds the ``sample`` sent and the final ``metric`` as the trial reported it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.strategy_state: Any = None
        self.strategy_class: str | None = None
        self.trials: dict[str, dict[str, Any]] = {}
        self.sessions: list[dict[str, Any]] = []
        self._state_warned = False  # warned once that the strategy has no state_dict() (not saved)

    @classmethod
    def load(cls, path: Path) -> BridgeState:
        """Read a state file.

        Raises
        ------
        FileNotFoundError
            No state file at ``path``.
        StateFileError
            The file is not a bridge state file of a version this code reads, or a key has the wrong shape
            or an unknown tag (the message names the file and the key). Nothing in it is ever executed.
        """
        with path.open(encoding="utf-8") as f:
            try:
                data = json.load(f)
            except ValueError as exc:
                raise StateFileError(f"{path} is not a JSON file ({exc}); remove it to start the search "
                                     "afresh") from None
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise StateFileError(f"{path} is not a bridge state file (field 'format' must be {STATE_FORMAT!r})")
        if data.get("version") != STATE_VERSION:
            raise StateFileError(f"{path}: state version {data.get('version')!r} is not supported "
                                 f"(this code reads version {STATE_VERSION})")
        known = {"format", "version", "saved_at", "strategy_class", "strategy_state", "sessions", "trials"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise StateFileError(f"{path}: unknown key(s) {unknown}; a state file has only {sorted(known)}")
        strategy_class = data.get("strategy_class")
        if strategy_class is not None and not isinstance(strategy_class, str):
            raise StateFileError(f"{path}: key 'strategy_class' must be a string, but got {strategy_class!r:.80}")
        trials = data.get("trials", {})
        if not isinstance(trials, dict):
            raise StateFileError(f"{path}: key 'trials' must be an object, but got {type(trials).__name__}")
        for key, record in trials.items():
            if not (isinstance(record, dict) and isinstance(record.get("parameter_id"), int)
                    and not isinstance(record.get("parameter_id"), bool) and str(record["parameter_id"]) == key):
                raise StateFileError(f"{path}: key 'trials'[{key!r}] must be an object whose 'parameter_id' is the "
                                     f"integer {key}, but got {record!r:.120}")
            if not isinstance(record.get("status", ""), str):
                raise StateFileError(f"{path}: key 'trials'[{key!r}]['status'] must be a string")
        sessions = data.get("sessions", [])
        if not (isinstance(sessions, list) and all(isinstance(x, dict) for x in sessions)):
            raise StateFileError(f"{path}: key 'sessions' must be a list of objects")
        try:
            decode_state(data.get("strategy_state"), "strategy_state")  # refuse a bad file before anything runs
        except StateFileError as exc:
            raise StateFileError(f"{path}: key {exc}") from None
        state = cls(path)
        state.strategy_state = data.get("strategy_state")
        state.strategy_class = strategy_class
        state.trials = {str(k): dict(v) for k, v in trials.items()}
        state.sessions = list(sessions)
        return state

    def save(self) -> None:
        _write_json_atomic(self.path, {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "saved_at": time.time(),
            "strategy_class": self.strategy_class,
            "strategy_state": self.strategy_state,
            "sessions": self.sessions,
            "trials": self.trials,
        })

    def record(self, parameter_id: int, **fields: Any) -> None:
        """Create or update the record of ``parameter_id``: each field is set unless it is None and the record
        already has it."""
        key = str(int(parameter_id))
        record = self.trials.setdefault(key, {"parameter_id": int(parameter_id)})
        for name, value in fields.items():
            if value is not None or name not in record:
                record[name] = value

    def checkpoint(self, strategy: Strategy) -> None:
        """Store ``strategy``'s ``state_dict`` and write the file atomically; never raises.

        A state that cannot be read or encoded keeps the previous one (logged); a strategy without
        ``state_dict()`` is warned about once (a resumed experiment restarts it afresh).
        """
        for attempt in range(3):
            try:
                self.strategy_state = encode_state(strategy.state_dict())
                break
            except NotImplementedError:
                if not self._state_warned:
                    _log.warning("Strategy %s has no state_dict(): a resumed experiment restarts it afresh",
                                 type(strategy).__name__)
                    self._state_warned = True
                break
            except RuntimeError:  # e.g. "set changed size during iteration": the strategy thread moved on
                if attempt == 2:
                    _log.warning("Could not read the strategy's state; keeping the previous one", exc_info=True)
                time.sleep(0.01)
            except TypeError:
                _log.exception("The strategy's state cannot be stored as JSON; keeping the previous one")
                break
        try:
            self.save()
        except OSError:
            _log.exception("Could not write the state file %s", self.path)

    def finished(self) -> dict[str, dict[str, Any]]:
        """Records of the models whose final metric is known."""
        return {k: v for k, v in self.trials.items() if v.get("status") == "finished"}
