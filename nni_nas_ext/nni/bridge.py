"""Run an ``nni.nas`` strategy under ``nnictl``: the dispatcher bridge.

``nnictl create`` cannot start a NAS experiment by itself in NNI 3.0: the NNI manager always starts
``python -m nni --exp_params ...`` with the config's ``tuner`` and a YAML file cannot carry a model space,
an evaluator or a strategy. ``python -m nni`` runs any tuner that subclasses NNI's ``MsgDispatcherBase`` by
calling its ``run()``. :class:`StrategyBridge` is such a class: it builds the search in the dispatcher
process (:meth:`StrategyBridge.build`) and hosts NNI's own ``TrainingServiceExecutionEngine`` and an
``nni.nas`` strategy there, as ``NasExperiment`` does in a Python script.

What the bridge adds to NNI's own code, each a fix of something NNI 3.0 gets wrong under ``nnictl``:

* it connects to the manager's command channel before anything heavy is imported (the manager waits 10 s);
* one command loop serves the engine: NNI's engine would open a second connection, which replaces the
  first one at the manager, and its listener thread dies on the ``ImportData`` and
  ``AddCustomizedTrialJob`` commands that ``nnictl resume`` sends;
* the strategy's ``state_dict`` and every trial's result are checkpointed after each submission and each
  result, as one JSON file written atomically (NNI's default checkpoint uses ``torch.load``, which fails
  on torch >= 2.6; its JSON serializer cannot store the ``frozenset`` that NNI's own strategies keep);
* on ``nnictl resume`` the strategy is restored from that file, results that reached NNI but not the
  strategy are replayed to it, and trials that NNI re-runs are routed back to it;
* after the strategy ends it tells the manager ``NoMoreTrialJobs`` and stays until ``Terminate``
  (leaving early marks the experiment ERROR); a search that ends before ``maxTrialNumber`` closes the
  budget so the experiment ends DONE;
* a build that fails (e.g. invalid ``classArgs``) ends the experiment at once in ERROR with the message in
  the dispatcher log, on stderr (``nnictl_stderr.log``) and in ``nnimanager.log``.

Both ways of naming the bridge in an experiment config work::

    tuner:                                  tuner:
      codeDirectory: /path/to/code            name: MyBuiltinName   # nnictl algo register --meta ...
      className: my_module.MyBridge           classArgs: {...}
      classArgs: {...}

See :func:`register_with_nnictl` for the second form.
"""

from __future__ import annotations

# Import-light on purpose: `python -m nni` imports this module and constructs the bridge, which must
# connect to the manager within 10 s. torch, nni.nas and the experiment REST client come after connecting.
import base64
import binascii
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from nni.runtime.msg_dispatcher_base import MsgDispatcherBase
from nni.runtime.tuner_command_channel import CommandType
from nni.utils import ClassArgsValidator

from nni_nas_ext.atomic import atomic_write
from nni_nas_ext.console import nnictl_env
from nni_nas_ext.wire import encode_trial, experiment_key_path, load_or_create_key

if TYPE_CHECKING:
    from nni.experiment import Experiment
    from nni.nas.evaluator import Evaluator
    from nni.nas.execution import TrainingServiceExecutionEngine
    from nni.nas.nn.pytorch import ModelSpace
    from nni.nas.space import ExecutableModelSpace
    from nni.nas.strategy import Strategy

__all__ = [
    "STATE_FILE_NAME",
    "StrategyBridge",
    "BridgeClassArgsValidator",
    "BridgeState",
    "StateFileError",
    "encode_state",
    "decode_state",
    "register_with_nnictl",
    "unregister_from_nnictl",
]

_log = logging.getLogger(__name__)

STATE_FILE_NAME = "nni_nas_ext_bridge_state.json"
"""Name of the bridge's checkpoint, in the experiment's ``checkpoint`` folder."""

STATE_FORMAT = "nni-nas-ext bridge state"
STATE_VERSION = 1

_TAG = "__nni_nas_ext__"
_FINAL_TRIAL_STATUSES = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")


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


def _plain(obj: Any) -> Any:
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

    A record (``trials[str(parameter_id)]``) holds ``parameter_id``, ``sample``, ``status`` (``submitted``,
    ``resumed``: NNI re-runs it after ``nnictl resume``, ``finished``, or the final trial status such as
    ``FAILED``), and, once known, ``trial_job_id``, ``metric`` (the final metric as the trial reported it) and
    ``source`` (``metric``: heard live, ``import``: learned from NNI's ``ImportData`` on resume).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.strategy_state: Any = None
        self.strategy_class: str | None = None
        self.trials: dict[str, dict[str, Any]] = {}
        self.sessions: list[dict[str, Any]] = []

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
                raise StateFileError(f"{path} is not a JSON file ({exc}); remove it to start the search afresh") from None
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

    def finished(self) -> dict[str, dict[str, Any]]:
        """Records of the models whose final metric is known."""
        return {k: v for k, v in self.trials.items() if v.get("status") == "finished"}


# --------------------------------------------------------------------------------------------------------
# classArgs validation
# --------------------------------------------------------------------------------------------------------

class BridgeClassArgsValidator(ClassArgsValidator):
    """Base of the ``classArgsValidator`` of a bridge; subclasses override :meth:`validate`.

    The bridge runs its validator (:attr:`StrategyBridge.class_args_validator`) itself before
    :meth:`StrategyBridge.build`, so a validator registered with ``nnictl algo register`` can never accept what
    the bridge rejects. Note that NNI 3.0's ``nnictl create`` never runs a registered validator for the
    current (v2) config format: only its legacy v1 path does (``nni/tools/nnictl/config_schema.py``).
    ``nnictl algo register`` only checks that the class imports.
    """

    def validate(self, class_args: dict[str, Any]) -> None:
        """Raise ``ValueError`` naming the bad argument, its value and what is allowed."""

    def validate_class_args(self, **kwargs: Any) -> None:
        self.validate(dict(kwargs))


# --------------------------------------------------------------------------------------------------------
# The bridge
# --------------------------------------------------------------------------------------------------------

class StrategyBridge(MsgDispatcherBase):
    """An NNI dispatcher ("advisor") that hosts an ``nni.nas`` strategy and NNI's training-service engine.

    Subclass it and override :meth:`build`; ``nnictl`` constructs the subclass with the config's
    ``classArgs`` as keyword arguments. The constructor only connects to the manager; everything heavy happens
    in :meth:`run`.

    Parameters
    ----------
    **class_args
        The config's ``classArgs``, passed to :attr:`class_args_validator` and :meth:`build` as one dict.
    """

    class_args_validator: type[BridgeClassArgsValidator] | None = None
    """Validator run on ``classArgs`` before :meth:`build` (also usable as ``classArgsValidator`` in an
    ``nnictl algo`` meta file)."""

    end_experiment_when_search_ends: bool = True
    """When the strategy ends before the trial budget is spent, set the experiment's ``maxTrialNumber`` to the
    number of trials submitted, so that NNI marks it DONE once they finish (NNI 3.0 otherwise leaves a search
    that ends early in ``TUNER_NO_MORE_TRIAL`` for ever)."""

    model_format: str = "simplified"
    """How models are sent to trials: ``simplified`` (NNI's default for ``nni.nas`` model spaces) or ``raw``."""

    state_file_name: str = STATE_FILE_NAME

    trial_format: str = "nni-nas-ext"
    """What trials receive: ``"nni-nas-ext"``, the signed JSON payload of :mod:`nni_nas_ext.wire` (our searches;
    trial command ``python -m nni_nas_ext.nni.trial_entry``), or ``"nni"``, NNI's pickled model (NNI's own
    strategies; their trial command must be NNI's, which unpickles whatever the REST API hands it)."""

    def __init__(self, **class_args: Any) -> None:
        # MsgDispatcherBase.__init__ connects to the manager's command channel: first thing, on purpose.
        super().__init__()
        self.class_args: dict[str, Any] = dict(class_args)
        self.model_space: ModelSpace | None = None
        self.evaluator: Evaluator | None = None
        self.strategy: Strategy | None = None
        self.engine: TrainingServiceExecutionEngine | None = None
        self.binding: Experiment | None = None
        self.state: BridgeState | None = None
        self._lock = threading.RLock()
        self._strategy_thread: threading.Thread | None = None
        self._initialized = False
        self._terminated = False
        # models NNI re-runs after a resume: the engine only keeps weak references, the bridge keeps them alive
        self._resumed_models: dict[int, ExecutableModelSpace] = {}
        self._sent_parameter_ids: set[int] = set()
        self._received: dict[str, int] = {}  # trial job id -> parameter id the trial reported with
        self._state_warned = False
        self._exec_space: ExecutableModelSpace | None = None
        self._trial_key: bytes | None = None

    # ---- for subclasses ----------------------------------------------------------------------------------

    def build(self, class_args: dict[str, Any]) -> tuple[ModelSpace, Evaluator, Strategy]:
        """Build the search from the config's ``classArgs``: ``(model_space, evaluator, strategy)``.

        Raise ``ValueError`` for invalid arguments: the experiment then ends at once in ERROR and the
        message appears in the dispatcher log and in ``nnictl_stderr.log``.
        """
        raise NotImplementedError(f"{type(self).__name__} must override build(class_args)")

    def on_resume(self, state: BridgeState, imported: list[dict[str, Any]]) -> None:
        """Hook called once after ``nnictl resume`` has told the bridge what NNI knows.

        ``state`` holds the restored records (finished ones included, imported ones merged); ``imported`` is
        NNI's ``ImportData``: one ``{"parameter", "value", "trialJobId"}`` per trial with a final metric.
        The default logs a summary.
        """
        finished = state.finished()
        pending = [k for k, v in state.trials.items() if v.get("status") in ("submitted", "resumed")]
        _log.info("Resume: %d finished trial(s) known (%d reported by NNI's ImportData); parameter ids still "
                  "without a result: %s", len(finished), len(imported), ", ".join(pending) or "none")

    # ---- the dispatcher ----------------------------------------------------------------------------------

    @property
    def resuming(self) -> bool:
        return os.environ.get("NNI_MODE") == "resume"

    @property
    def state_path(self) -> Path:
        directory = os.environ.get("NNI_CHECKPOINT_DIRECTORY")
        if not directory:
            log_dir = os.environ.get("NNI_LOG_DIRECTORY")
            directory = str(Path(log_dir).parent / "checkpoint") if log_dir else "."
        return Path(directory) / self.state_file_name

    def run(self) -> None:
        """Build the search, start the strategy, serve the manager's commands until ``Terminate``."""
        _log.info("%s started (mode: %s)", type(self).__name__, os.environ.get("NNI_MODE"))
        try:
            self._start()
        except Exception as exc:  # noqa: BLE001 - any failure to start must end the experiment visibly
            self._fail_to_start(exc)
            raise SystemExit(1) from None
        try:
            self._serve()
        finally:
            self._shutdown()

    # ---- starting ----------------------------------------------------------------------------------------

    def _start(self) -> None:
        if self.class_args_validator is not None:
            self.class_args_validator().validate(dict(self.class_args))
        model_space, evaluator, strategy = self.build(dict(self.class_args))
        self.model_space, self.evaluator, self.strategy = model_space, evaluator, strategy

        if self.trial_format not in ("nni-nas-ext", "nni"):
            raise ValueError(f"trial_format must be 'nni-nas-ext' or 'nni', got {self.trial_format!r}")
        if self.trial_format == "nni-nas-ext":
            # the experiment's key: created at the first start, kept for resume (NNI's re-runs must verify)
            key_path = experiment_key_path()
            self._trial_key = load_or_create_key(key_path)
            _log.info("Trial parameters are signed with the experiment's key in %s", key_path)
        self.binding = self._make_binding()
        self.engine = _make_engine(self.binding, self._channel, self)
        exec_space = self._executable_model_space(model_space, evaluator)
        self._exec_space = exec_space
        strategy.initialize(exec_space, self.engine)
        if getattr(strategy, "budget_source", False) is None:  # a MorphismStrategy: tell it the budget left
            strategy.budget_source = self.budget_left  # type: ignore[attr-defined]

        self.state = BridgeState(self.state_path)
        self.state.strategy_class = f"{type(strategy).__module__}.{type(strategy).__qualname__}"
        if self.resuming:
            self._restore()
        self.state.sessions.append({"mode": os.environ.get("NNI_MODE") or "start", "started_at": time.time()})
        self._save_state()
        _log.info("Search built: strategy %r, state file %s", strategy, self.state.path)

    def _make_binding(self) -> Experiment:
        from nni.experiment import Experiment

        url = urlparse(os.environ["NNI_TUNER_COMMAND_CHANNEL"])  # ws://localhost:PORT[/prefix]/tuner
        binding = Experiment(None)
        binding.port = url.port
        prefix = url.path.rsplit("/tuner", 1)[0].strip("/")
        binding.url_prefix = prefix or None
        binding.id = os.environ.get("NNI_EXP_ID") or binding.id
        return binding

    def _executable_model_space(self, model_space: ModelSpace, evaluator: Evaluator) -> ExecutableModelSpace:
        from nni.nas.space import RawFormatModelSpace, SimplifiedModelSpace

        if self.model_format == "simplified":
            return SimplifiedModelSpace.from_model(model_space, evaluator)
        if self.model_format == "raw":
            return RawFormatModelSpace.from_model(model_space, evaluator)
        raise ValueError(f"model_format must be 'simplified' or 'raw', got {self.model_format!r}")

    def _restore(self) -> None:
        assert self.state is not None and self.strategy is not None
        path = self.state.path
        try:
            saved = BridgeState.load(path)
        except FileNotFoundError:
            _log.warning("Resume: no state file at %s; the strategy starts afresh (finished trials stay in NNI, "
                         "but the strategy does not know them)", path)
            return
        self.state.trials = saved.trials
        self.state.sessions = saved.sessions
        if saved.strategy_class and saved.strategy_class != self.state.strategy_class:
            raise ValueError(f"the state file {path} was written by strategy {saved.strategy_class}, but this "
                             f"experiment now builds {self.state.strategy_class}; resume needs the same strategy")
        if saved.strategy_state is not None:
            self.strategy.load_state_dict(decode_state(saved.strategy_state))
            self.state.strategy_state = saved.strategy_state
        _log.info("Resume: strategy state and %d trial record(s) restored from %s", len(saved.trials), path)

    def _fail_to_start(self, exc: BaseException) -> None:
        if isinstance(exc, ValueError):
            message = f"{type(self).__name__}: invalid experiment: {exc}"
            _log.error(message)
        else:
            message = f"{type(self).__name__}: the search could not be built: {type(exc).__name__}: {exc}"
            _log.error("%s\n%s", message, traceback.format_exc())
        print(f"ERROR: {message}", file=sys.stderr, flush=True)
        # The manager listens for errors only after it sent Initialize; an error sent earlier would reach
        # an EventEmitter without an 'error' listener. Wait for Initialize (it comes within ~1 s).
        initialized = threading.Event()

        def wait_for_initialize() -> None:
            while True:
                command, _ = self._channel._receive()
                if command is None or command in (CommandType.Initialize, CommandType.Terminate):
                    initialized.set()
                    return

        threading.Thread(target=wait_for_initialize, daemon=True).start()
        initialized.wait(15)
        # The manager marks the experiment ERROR and logs "Dispatcher error: <message>" in nnimanager.log.
        self.report_error(message)
        try:
            self._channel.disconnect()
        except Exception:  # noqa: BLE001
            pass

    # ---- serving commands --------------------------------------------------------------------------------

    def _serve(self) -> None:
        assert self.engine is not None

        while True:
            command, raw = self._channel._receive()
            if command is None or command is CommandType.Terminate:
                _log.info("Terminate received: saving state and exiting")
                self._terminated = True
                return
            try:
                self._handle(command, raw)
            except Exception:  # noqa: BLE001 - one bad command must not kill the dispatcher
                _log.exception("Failed to handle command %s", command)

    def _handle(self, command: CommandType, raw: str) -> None:
        from nni.runtime.tuner_command_channel.command_type import ReportMetricData, RequestTrialJobs, TrialEnd

        engine = self.engine
        assert engine is not None
        if command is CommandType.Ping:
            return
        _log.debug("Command %s: %.300s", command, raw)
        if command is CommandType.Initialize:
            self._channel.send_initialized()
            if not self._initialized:
                self._initialized = True
                if not self.resuming:
                    self._send_search_space()
                self._start_strategy()
        elif command is CommandType.RequestTrialJobs:
            engine._request_trial_jobs_callback(RequestTrialJobs(int(json.loads(raw))))
        elif command is CommandType.ReportMetricData:
            data = json.loads(raw)  # JSON only: a metric is data, never unpickled
            if "value" in data:
                data["value"] = _load_metric(data["value"])
            fields = ("parameter_id", "type", "sequence", "value", "trial_job_id", "parameter_index")
            metric = ReportMetricData(**{k: data[k] for k in fields if k in data})
            if not self._is_ours(metric.parameter_id):
                _log.warning("Ignoring a metric of trial %s with parameter id %r: the search never sent that "
                             "parameter (a customized trial?)", metric.trial_job_id, metric.parameter_id)
                return
            with self._lock:
                if metric.trial_job_id is not None:
                    self._received[metric.trial_job_id] = int(metric.parameter_id)
                if metric.type == "FINAL":
                    self._record(metric.parameter_id, status="finished", metric=_plain(metric.value),
                                 trial_job_id=metric.trial_job_id, source="metric")
                engine._report_metric_data_callback(metric)
                if metric.type == "FINAL":
                    self._save_state()
        elif command is CommandType.TrialEnd:
            data = json.loads(raw)
            trial_job_id = data["trial_job_id"]
            parameter_id = json.loads(data["hyper_params"]).get("parameter_id")
            with self._lock:
                if not self._is_ours(self._received.get(trial_job_id, parameter_id)):
                    _log.info("Trial %s (parameter id %r) ended %s; the search did not create it (a customized "
                              "trial), so nothing is recorded", trial_job_id, parameter_id, data.get("event"))
                    return
                # NNI pairs the trial with the parameter it meant to send; a metric of the trial names the one
                # it really received (they differ under NNI 3.0's FIFO bug, see nni_patch)
                received = self._received.get(trial_job_id)
                if received is not None and received != parameter_id:
                    _log.warning("Trial %s ran parameter %d but NNI pairs it with parameter %s (NNI 3.0 FIFO "
                                 "parameter bug; `python -m nni_nas_ext.nni.nni_patch apply` fixes it)",
                                 trial_job_id, received, parameter_id)
                    parameter_id = received
                end = TrialEnd(trial_job_id=trial_job_id, parameter_ids=[parameter_id], event=data["event"])
                record = self.state.trials.get(str(parameter_id)) if self.state else None
                if record is not None:
                    record.setdefault("trial_job_id", end.trial_job_id)
                    record["end_event"] = end.event
                    if record.get("status") != "finished":
                        record["status"] = end.event
                engine._trial_end_callback(end)
                self._save_state()
        elif command is CommandType.ImportData:
            self._handle_import_data(json.loads(raw))
        elif command is CommandType.AddCustomizedTrialJob:
            self._handle_resumed_trials(json.loads(raw))
        elif command is CommandType.UpdateSearchSpace:
            pass  # the search space on the portal is informative only; the strategy owns the space
        else:
            _log.warning("Ignoring unsupported command %s", command)

    def _send_search_space(self) -> None:
        """Show the space on the web portal, as NasExperiment does (informative only)."""
        assert self.model_space is not None and self.binding is not None
        legacy: dict[str, Any] = {}
        try:
            for label, mutable in self.model_space.simplify().items():
                try:
                    legacy[label] = mutable.as_legacy_dict()
                except NotImplementedError:
                    legacy[label] = {"_type": "choice", "_value": [type(mutable).__name__]}
            self.binding.update_search_space(legacy)
        except Exception:  # noqa: BLE001
            _log.warning("Could not show the search space on the web portal", exc_info=True)

    # ---- resume --------------------------------------------------------------------------------------------

    def _handle_import_data(self, entries: list[dict[str, Any]]) -> None:
        """``ImportData``: every trial NNI knows with a final metric, ``{parameter, value, trialJobId}``.

        Results the strategy has not heard (the trial finished while the experiment was stopping) are recorded
        and replayed to it as final-metric events. The parameter id is taken from the metric record, which
        carries the id of the parameter the trial really received (NNI's trial/parameter pairing can be
        wrong, field notes bug 1).
        """
        assert self.state is not None and self.binding is not None and self.engine is not None
        from nni.nas.execution.event import FinalMetricEvent, TrainingEndEvent
        from nni.nas.space import ModelStatus

        known = {rec.get("trial_job_id") for rec in self.state.finished().values()}
        unknown = [e["trialJobId"] for e in entries if e.get("trialJobId") not in known]
        _log.info("ImportData: %d finished trial(s) from NNI, %d not yet in the bridge's records",
                  len(entries), len(unknown))
        if unknown:
            finals: dict[str, dict[str, Any]] = {}
            for metric in self._rest_get("/metric-data"):
                if metric.get("type") == "FINAL":
                    finals[metric["trialJobId"]] = metric
            for trial_job_id in unknown:
                final = finals.get(trial_job_id)
                if final is None:
                    continue
                parameter_id = int(final["parameterId"])
                value = _load_metric(final["data"])
                with self._lock:
                    record = self.state.trials.get(str(parameter_id))
                    replay = record is not None and record.get("status") != "finished"
                    self._record(parameter_id, status="finished", metric=_plain(value),
                                 trial_job_id=trial_job_id, source="import")
                    model = self._model_for(parameter_id) if replay else None
                    if model is not None:
                        _log.info("Replaying the result of trial %s (parameter %d) to the strategy",
                                  trial_job_id, parameter_id)
                        model.status = ModelStatus.Training
                        self.engine.dispatch_model_event(FinalMetricEvent(model, value))
                        self.engine.dispatch_model_event(TrainingEndEvent(model, ModelStatus.Trained))
                    self._save_state()
        self.on_resume(self.state, entries)

    def _handle_resumed_trials(self, entries: list[dict[str, Any]]) -> None:
        """``AddCustomizedTrialJob``: trials that were running at ``nnictl stop`` and that NNI now re-runs with
        their old parameter ids; route their results to the strategy like those of fresh submissions."""
        assert self.state is not None and self.engine is not None
        from nni.nas.space import ModelStatus

        for entry in entries:
            parameter_id = entry.get("parameter_id")
            if parameter_id is None:
                continue
            parameter_id = int(parameter_id)
            model = self._model_for(parameter_id)
            with self._lock:
                if model is not None:
                    model.status = ModelStatus.Training
                    self._resumed_models[parameter_id] = model
                    self.engine._models[parameter_id] = weakref.ref(model)
                record = self.state.trials.get(str(parameter_id))
                if record is None or record.get("status") != "finished":
                    self._record(parameter_id, status="resumed",
                                 sample=_plain(getattr(model, "sample", None)) if model is not None else None)
        _log.info("NNI re-runs %d trial(s) of the stopped experiment: parameter ids %s", len(entries),
                  [e.get("parameter_id") for e in entries])
        with self._lock:
            self._save_state()

    def _rest_get(self, api: str) -> Any:
        """GET from the manager's REST API (raw JSON: ``Experiment.list_trial_jobs`` fails on trials without
        a start time)."""
        from nni.experiment import rest

        assert self.binding is not None
        return rest.get(self.binding.port, api, self.binding.url_prefix)

    def _trial_parameters(self) -> list[tuple[str, dict[str, Any]]]:
        """``(trial_job_id, packed parameter)`` for every parameter of every trial NNI lists."""
        result = []
        for trial in self._rest_get("/trial-jobs"):
            for text in trial.get("hyperParameters") or []:
                try:
                    result.append((trial["trialJobId"], json.loads(text)))
                except (TypeError, ValueError):
                    continue
        return result

    def budget_left(self) -> Any:
        """What is left of ``maxExperimentDuration`` (NNI's ``execDuration`` counts running time only, so a
        stopped and resumed experiment keeps its budget) and of ``maxTrialNumber``; None where unlimited or
        unknown."""
        from nni_nas_ext.strategies.nash_async import Budget

        try:
            profile = self.binding.get_experiment_profile() if self.binding is not None else {}
            params = profile.get("params") or {}
            seconds_left = None
            limit = duration_seconds(params.get("maxExperimentDuration"))
            if limit is not None:
                seconds_left = max(0.0, limit - float(profile.get("execDuration") or 0.0))
            trials_left = None
            if params.get("maxTrialNumber") is not None:
                used = max(len(self._rest_get("/trial-jobs")), len(self.state.trials) if self.state else 0)
                trials_left = max(0, int(params["maxTrialNumber"]) - used)
        except Exception:  # noqa: BLE001 - the budget is advice; never stop the search for want of it
            _log.warning("Could not read the experiment's budget from NNI", exc_info=True)
            return None
        return Budget(seconds_left=seconds_left, trials_left=trials_left)

    def _is_ours(self, parameter_id: Any) -> bool:
        """Whether the search sent ``parameter_id`` (this session or, after a resume, an earlier one)."""
        if isinstance(parameter_id, bool) or not isinstance(parameter_id, int):
            return False
        return parameter_id in self._sent_parameter_ids or \
            (self.state is not None and str(parameter_id) in self.state.trials)

    def _model_for(self, parameter_id: int) -> ExecutableModelSpace | None:
        """The model of a parameter the search sent, rebuilt from the sample in the bridge's own records.

        Never from what NNI's REST API lists: that would trust whoever posted it (and NNI's format would have to
        be unpickled)."""
        record = self.state.trials.get(str(parameter_id)) if self.state is not None else None
        sample = record.get("sample") if record else None
        if not isinstance(sample, dict) or self._exec_space is None:
            return None
        try:
            return self._exec_space.freeze(sample)
        except Exception:  # noqa: BLE001
            _log.warning("Could not rebuild the model of parameter %d from its recorded sample", parameter_id,
                         exc_info=True)
            return None

    def trial_parameters(self, parameter_id: int, model: ExecutableModelSpace) -> Any:
        """What NNI sends to the trial for ``model``: the signed payload (:mod:`nni_nas_ext.wire`).

        With :attr:`trial_format` ``"nni"`` (NNI's own strategies, whose trials run NNI's trial command), the
        model itself, which NNI pickles.
        """
        if self.trial_format == "nni":
            return model
        from .evaluator import trial_payload_of

        payload = trial_payload_of(model)
        if payload is None:
            raise TypeError(f"{type(self).__name__} sends signed nni-nas-ext payloads, but the model's evaluator "
                            f"{getattr(model, 'evaluator', None)!r} is not one of ours; set trial_format = 'nni' "
                            "for NNI's own models")
        assert self._trial_key is not None
        return encode_trial(payload, parameter_id, self._trial_key)

    # ---- the strategy --------------------------------------------------------------------------------------

    def _start_strategy(self) -> None:
        self._strategy_thread = threading.Thread(target=self._run_strategy, name="nni-nas-ext-strategy",
                                                 daemon=True)
        self._strategy_thread.start()

    def _run_strategy(self) -> None:
        assert self.strategy is not None
        try:
            self.strategy.run()
        except Exception as exc:  # noqa: BLE001
            if self._terminated:
                _log.debug("Strategy stopped by termination: %r", exc)
                return
            message = f"{type(self).__name__}: the strategy failed: {type(exc).__name__}: {exc}"
            _log.error("%s\n%s", message, traceback.format_exc())
            print(f"ERROR: {message}", file=sys.stderr, flush=True)
            with self._lock:
                self._save_state()
            self.report_error(message)
            return
        _log.info("Strategy %r has finished", self.strategy)
        with self._lock:
            self._save_state()
        if not self._terminated:
            try:
                self._end_search()
            except Exception:  # noqa: BLE001
                _log.warning("Could not tell NNI that the search ended", exc_info=True)

    def _end_search(self) -> None:
        """Tell the manager the search is over; close the trial budget if the search ended before it."""
        assert self.binding is not None
        status = self.binding.get_status()
        if status not in ("INITIALIZED", "RUNNING"):
            _log.info("Experiment status is %s: the trial budget ended the search", status)
            return
        self._channel.send_no_more_trial_jobs()
        if not self.end_experiment_when_search_ends:
            return
        # Every model sent must be in NNI's trial list before the budget closes, or NNI would drop it.
        deadline = time.monotonic() + 120
        count = -1
        while time.monotonic() < deadline and not self._terminated:
            trials = self._rest_get("/trial-jobs")
            listed = {int(p["parameter_id"]) for _, p in self._trial_parameters()
                      if p.get("parameter_id") is not None}
            if self._sent_parameter_ids <= listed:
                count = len(trials)
                break
            time.sleep(1)
        if count < 0:
            _log.warning("Not all submitted models reached NNI's trial list; the budget is left open")
            return
        limit = self.binding.get_experiment_profile()["params"].get("maxTrialNumber")
        if limit is None or count < int(limit):
            _log.info("The search ended after %d trial(s): setting maxTrialNumber to %d so the experiment "
                      "ends DONE when they finish", count, count)
            self.binding.update_max_trial_number(count)

    # ---- records and checkpoints -----------------------------------------------------------------------

    def _on_submitted(self, parameter_id: int, model: ExecutableModelSpace) -> None:
        """Called by the engine in the strategy's thread right after a model is sent to NNI."""
        with self._lock:
            self._sent_parameter_ids.add(parameter_id)
            self._record(parameter_id, status="submitted", sample=_plain(getattr(model, "sample", None)))
            self._save_state()

    def _record(self, parameter_id: int, **fields: Any) -> None:
        assert self.state is not None
        key = str(int(parameter_id))
        record = self.state.trials.setdefault(key, {"parameter_id": int(parameter_id)})
        for name, value in fields.items():
            if value is not None or name not in record:
                record[name] = value

    def _save_state(self) -> None:
        """Checkpoint the strategy's state and the records (atomically; never raises)."""
        state, strategy = self.state, self.strategy
        if state is None or strategy is None:
            return
        with self._lock:
            for attempt in range(3):
                try:
                    state.strategy_state = encode_state(strategy.state_dict())
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
                state.save()
            except OSError:
                _log.exception("Could not write the state file %s", state.path)

    def _shutdown(self) -> None:
        with self._lock:
            self._save_state()
        if self.engine is not None:
            self.engine.shutdown()
        try:
            self._channel.disconnect()
        except Exception:  # noqa: BLE001
            pass
        _log.info("%s exited", type(self).__name__)


def duration_seconds(value: Any) -> float | None:
    """Seconds of an NNI duration (``maxExperimentDuration``): ``"30m"``, ``"1.5h"``, ``"2d"``, ``"90s"`` or a
    number of seconds; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        return None


def _load_metric(data: Any) -> Any:
    """A metric as the manager passes it on: the trial's ``nni.dump`` text (JSON for the plain values that
    trials report), possibly JSON-encoded once more by the REST API. Decoded with ``json`` only: anything that
    is not JSON stays a string; nothing is unpickled."""
    value = data
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value


def _make_engine(binding: Any, channel: Any, bridge: StrategyBridge) -> TrainingServiceExecutionEngine:
    """NNI's ``TrainingServiceExecutionEngine`` on the bridge's command channel (defined here: its base class
    imports ``nni.nas`` and torch, which the bridge imports only after connecting)."""
    from nni.nas.execution import TrainingServiceExecutionEngine
    from nni.nas.execution.engine import ExecutionEngine

    class BridgeExecutionEngine(TrainingServiceExecutionEngine):
        """NNI's training-service engine without its own connection to the manager.

        The parent's constructor would open a second connection (which replaces the bridge's at the manager)
        and start a listener thread that dies on commands it does not know. This constructor sets the same
        fields; the bridge feeds the parent's callbacks. Everything else is NNI's code.
        """

        def __init__(self) -> None:
            ExecutionEngine.__init__(self)
            self.nodejs_binding = binding
            self.fetch_intermediates = True
            self._models = {}
            self._submitted_cache = {}
            self._current_parameter_id = None
            self._workers = 0
            self._channel = channel
            self._stopped = False

        def submit_models(self, *models: Any) -> None:
            """NNI's ``submit_models``, except for what is sent: :meth:`StrategyBridge.trial_parameters`."""
            from nni.nas.space import ModelStatus

            self._check_running()
            for model in models:
                parameter_id = self._next_parameter_id()
                parameters = bridge.trial_parameters(parameter_id, model)
                self._models[parameter_id] = weakref.ref(model)
                self._submitted_cache[parameter_id] = model
                self._channel.send_trial(parameter_id=parameter_id, parameters=parameters)
                model.status = ModelStatus.Training
                self._workers -= 1
                bridge._on_submitted(parameter_id, model)

        def _next_parameter_id(self) -> int:
            # NNI's guesses from the REST trial list, where a customized trial has no id (TypeError in max())
            if self._current_parameter_id is None:
                known = [int(k) for k in (bridge.state.trials if bridge.state else {})]
                known += [p["parameter_id"] for _, p in bridge._trial_parameters()
                          if isinstance(p.get("parameter_id"), int)]
                self._current_parameter_id = max(known, default=-1)
            self._current_parameter_id += 1
            return self._current_parameter_id

        def list_models(self, status: Any = None) -> Any:
            """The search's own models, from the bridge's records (NNI's version unpickles the parameters that
            the REST API lists, customized trials included)."""
            from nni.nas.space import ModelStatus

            records = dict(bridge.state.trials) if bridge.state else {}
            for key, record in records.items():
                parameter_id = int(key)
                model = self._find_reference_model(parameter_id)
                if model is None:
                    model = bridge._model_for(parameter_id)
                    if model is None:
                        continue
                    if record.get("status") == "finished":
                        model.status = ModelStatus.Trained
                        model.metrics.final = record.get("metric")
                    elif record.get("status") in ("submitted", "resumed"):
                        model.status = ModelStatus.Training
                    else:
                        model.status = ModelStatus.Failed
                if status is None or model.status == status:
                    yield model

        def budget_available(self) -> bool:
            # after Terminate the strategy ends quietly instead of failing on a stopped engine
            return not self._stopped and super().budget_available()

        def shutdown(self) -> None:
            self._stopped = True

    return BridgeExecutionEngine()


# --------------------------------------------------------------------------------------------------------
# nnictl algo registration
# --------------------------------------------------------------------------------------------------------

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
        Its ``classArgsValidator`` (e.g. :class:`BridgeClassArgsValidator` subclass), or None.
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
