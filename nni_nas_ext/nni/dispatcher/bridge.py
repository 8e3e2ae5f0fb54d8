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

See :func:`~nni_nas_ext.nni.dispatcher.nnictl.register_with_nnictl` for the second form. The bridge's parts:
the command loop (:mod:`.loop`, a mixin of :class:`StrategyBridge`), NNI's engine on the bridge's connection
(:mod:`.engine`) and the state file (:mod:`.state`).
"""

from __future__ import annotations

# Import-light on purpose: `python -m nni` imports this module and constructs the bridge, which must
# connect to the manager within 10 s. torch, nni.nas and the experiment REST client come after connecting.
import logging
import os
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from nni.runtime.msg_dispatcher_base import MsgDispatcherBase
from nni.runtime.tuner_command_channel import CommandType
from nni.utils import ClassArgsValidator

from nni_nas_ext.wire import encode_trial, experiment_key_path, load_or_create_key

from .budget import read_budget
from .engine import make_engine
from .loop import CommandLoop
from .state import RENAMED_STRATEGY_CLASSES, STATE_FILE_NAME, BridgeState, decode_state

if TYPE_CHECKING:
    from nni.experiment import Experiment
    from nni.nas.evaluator import Evaluator
    from nni.nas.execution import TrainingServiceExecutionEngine
    from nni.nas.nn.pytorch import ModelSpace
    from nni.nas.space import ExecutableModelSpace
    from nni.nas.strategy import Strategy

    from nni_nas_ext.strategies.base import Budget

__all__ = ["BridgeClassArgsValidator", "StrategyBridge"]

_log = logging.getLogger(__name__)


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

class StrategyBridge(CommandLoop, MsgDispatcherBase):
    """An NNI dispatcher ("advisor") that hosts an ``nni.nas`` strategy and NNI's training-service engine.

    Subclass it and override :meth:`build`; ``nnictl`` constructs the subclass with the config's
    ``classArgs`` as keyword arguments. The constructor only connects to the manager; everything heavy happens
    in :meth:`run`. The manager's commands are served by :class:`~.loop.CommandLoop`.

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
        key_env = self._remote_key_env()
        if self.trial_format == "nni-nas-ext":
            # the experiment's key: created at the first start, kept for resume (NNI's re-runs must verify)
            key_path = experiment_key_path(key_env)
            self._trial_key = load_or_create_key(key_path)
            _log.info("Trial parameters are signed with the experiment's key in %s", key_path)
        self.binding = self._make_binding()
        self.engine = make_engine(self.binding, self._channel, self)
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

    def _remote_key_env(self) -> dict[str, str] | None:
        """On NNI's remote training service: check what the search needs there (:mod:`..remote`; a problem raises
        ``ValueError``, which ends the experiment with it as the reason) and return the environment that names the
        key file of the trial command (on shared storage); None elsewhere (the key lives in the experiment folder)."""
        from ..remote import (KEY_VARIABLE, dispatcher_experiment_config, is_remote, key_file_from_trial_command,
                              remote_problems, remote_warnings)

        config = dispatcher_experiment_config()
        if config is None or not is_remote(config):
            return None
        problems = remote_problems(config, self.class_args)
        if problems:
            raise ValueError("this search cannot run on the remote training service: " + "; ".join(problems))
        for warning in remote_warnings(config):
            _log.warning("%s", warning)
        service = config["trainingService"]
        command = str(service.get("trialCommand") or config.get("trialCommand") or "")
        log_dir = os.environ.get("NNI_LOG_DIRECTORY")  # <experiment working directory>/<experiment id>/log
        exp_id = os.environ.get("NNI_EXP_ID") or (Path(log_dir).parent.name if log_dir else "")
        if not exp_id and "NNI_EXP_ID" in command:
            raise ValueError("the trialCommand's key file names $NNI_EXP_ID, but this dispatcher cannot tell the "
                             "experiment's id (neither NNI_EXP_ID nor NNI_LOG_DIRECTORY is set)")
        key_file = key_file_from_trial_command(command, exp_id)
        assert key_file is not None  # remote_problems checked it
        return {**os.environ, KEY_VARIABLE: key_file}

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
        saved_class = RENAMED_STRATEGY_CLASSES.get(saved.strategy_class or "", saved.strategy_class)
        if saved_class and saved_class != self.state.strategy_class:
            raise ValueError(f"the state file {path} was written by strategy {saved_class}, but this "
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

    # ---- what trials receive -----------------------------------------------------------------------------

    def trial_parameters(self, parameter_id: int, model: ExecutableModelSpace) -> Any:
        """What NNI sends to the trial for ``model``: the signed payload (:mod:`nni_nas_ext.wire`).

        With :attr:`trial_format` ``"nni"`` (NNI's own strategies, whose trials run NNI's trial command), the
        model itself, which NNI pickles.
        """
        if self.trial_format == "nni":
            return model
        from ..evaluator import trial_payload_of

        payload = trial_payload_of(model)
        if payload is None:
            raise TypeError(f"{type(self).__name__} sends signed nni-nas-ext payloads, but the model's evaluator "
                            f"{getattr(model, 'evaluator', None)!r} is not one of ours; set trial_format = 'nni' "
                            "for NNI's own models")
        assert self._trial_key is not None
        return encode_trial(payload, parameter_id, self._trial_key)

    # ---- the budget ---------------------------------------------------------------------------------------

    def budget_left(self) -> Budget | None:
        """What is left of the experiment's time and trials (:func:`~.budget.read_budget`); None when unknown."""
        return read_budget(self.binding, lambda: self._rest_get("/trial-jobs"),
                           len(self.state.trials) if self.state else 0)

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
            self._save_state()
            self.report_error(message)
            return
        _log.info("Strategy %r has finished", self.strategy)
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
            # one answer for both the count and the check: two GETs could straddle a new trial (CI stop 29 saw
            # the sixth trial listed by the second GET but not counted by the first: maxTrialNumber 5, not 6)
            trials = self._rest_get("/trial-jobs")
            listed = {int(p["parameter_id"]) for _, p in self.listed_parameters(trials)
                      if p.get("parameter_id") is not None}
            if self._sent_parameter_ids <= listed:
                count = len(trials)
                break
            time.sleep(0.25)  # a model sent is listed within a poll of the manager's: seconds at most
        if count < 0:
            _log.warning("Not all submitted models reached NNI's trial list; the budget is left open")
            return
        limit = self.binding.get_experiment_profile()["params"].get("maxTrialNumber")
        if limit is None or count < int(limit):
            _log.info("The search ended after %d trial(s): setting maxTrialNumber to %d so the experiment "
                      "ends DONE when they finish", count, count)
            self.binding.update_max_trial_number(count)

    # ---- checkpoints ---------------------------------------------------------------------------------------

    def _save_state(self) -> None:
        """Checkpoint the strategy's state and the records (atomically; never raises): every save of the
        state file goes through here."""
        state, strategy = self.state, self.strategy
        if state is None or strategy is None:
            return
        with self._lock:
            state.checkpoint(strategy)

    def _shutdown(self) -> None:
        self._save_state()
        if self.engine is not None:
            self.engine.shutdown()
        try:
            self._channel.disconnect()
        except Exception:  # noqa: BLE001
            pass
        _log.info("%s exited", type(self).__name__)

