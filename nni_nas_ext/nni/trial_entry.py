"""A lean trial command for our searches: NNI's trial protocol, without importing ``nni.nas`` in the trial.

Use it as the experiment's trial command in place of NNI's ``python -m nni.nas.execution.training_service
trial``::

    trialCommand: .venv/bin/python -m nni_nas_ext.nni.trial_entry

NNI's command asks for its parameter with ``nni.get_next_parameter()``, which ``nni.load``\\ s the whole
frozen model space. For our searches that costs every trial the import of ``nni.nas`` and, through
``nni.nas.evaluator``, of pytorch_lightning, torchmetrics and torchvision (about 2 s of a 4.3-s digits
trial, measured with ``python -X importtime``), and about as long again when the interpreter tears that
module graph down at exit. None of it is used: our trial code needs the candidate and the task settings,
both plain JSON inside the parameter.

This entry does what NNI's does, through NNI's own API and channel:

1. it opens the trial command channel that NNI's ``get_default_trial_command_channel`` would open (NNI
   3.0's HTTP channel at ``NNI_TRIAL_COMMAND_CHANNEL``) and installs it as NNI's default channel;
2. it calls ``nni.get_next_parameter()``; the channel receives the parameter exactly as NNI's does and,
   when it is one of ours (a frozen :class:`~nni_nas_ext.nni.space.MorphismModelSpace` whose evaluator is
   ``FunctionalEvaluator(train_candidate, task=...)``), hands it over JSON-decoded instead of unpickled;
   any other parameter is ``nni.load``\\ ed as NNI does;
3. ours: ``run_candidate(candidate, TaskConfig.from_dict(task), reporter)``, reporting through
   ``nni.report_intermediate_result`` / ``nni.report_final_result`` (what ``train_candidate`` does);
   anything else: ``model.execute()``, NNI's own trial entry;
4. after a successful trial it ends the process without the interpreter's teardown (``os._exit(0)``,
   once logs and output are flushed): the checkpoint is on disk and the final result was delivered (the
   HTTP channel's PUT returns after NNI has it) before. A failing trial raises as with NNI's entry
   (exit code 1, traceback on stderr), so NNI marks it failed.

On a channel other than NNI 3.0's HTTP one (``import://`` channels, NNI's legacy file channel, no NNI
at all) it runs NNI's own entry, unchanged.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

__all__ = ["OUR_EVALUATOR_FUNCTION", "OUR_MODEL_SPACE", "RawParameterChannel", "main", "our_trial"]

_log = logging.getLogger(__name__)

#: How ``nni.dump`` names our model space and our evaluator's function in a trial parameter.
OUR_MODEL_SPACE = "path:nni_nas_ext.nni.space.MorphismModelSpace"
OUR_EVALUATOR_FUNCTION = "path:nni_nas_ext.nni.evaluator.train_candidate"
_FUNCTIONAL_EVALUATOR = "path:nni.nas.evaluator.functional.FunctionalEvaluator"
# space.ARCHITECTURE_LABEL, spelled out: importing space.py imports nni.nas (and pytorch_lightning)
_ARCHITECTURE_LABEL = "architecture"


def our_trial(parameters: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(candidate dict, task dict)`` if ``parameters`` (JSON-decoded) is a trial of our searches, else None.

    Ours: ``nni.dump`` of a frozen ``SimplifiedModelSpace`` of :class:`MorphismModelSpace` whose evaluator is
    ``FunctionalEvaluator(train_candidate, task=...)`` -- what :func:`~nni_nas_ext.nni.evaluator.make_evaluator`
    builds and our strategies submit. The candidate is the sample's ``architecture`` value, which
    :class:`~nni_nas_ext.nni.space.CandidateMutable` validated when the strategy froze it.
    """
    if not isinstance(parameters, dict) or parameters.get("status") != "frozen":
        return None
    symbol = parameters.get("model_symbol")
    evaluator = parameters.get("evaluator")
    sample = parameters.get("sample")
    if not (isinstance(symbol, dict) and symbol.get("__nni_type__") == OUR_MODEL_SPACE):
        return None
    if not (isinstance(evaluator, dict) and evaluator.get("__symbol__") == _FUNCTIONAL_EVALUATOR):
        return None
    kwargs = evaluator.get("__kwargs__")
    if not isinstance(kwargs, dict) or set(kwargs) != {"function", "task"}:
        return None
    function = kwargs["function"]
    if not (isinstance(function, dict) and function.get("__nni_type__") == OUR_EVALUATOR_FUNCTION):
        return None
    if not isinstance(sample, dict) or not isinstance(sample.get(_ARCHITECTURE_LABEL), dict) or \
            not isinstance(kwargs["task"], dict):
        return None
    return sample[_ARCHITECTURE_LABEL], kwargs["task"]


def _channel_class() -> type:
    from nni.runtime.trial_command_channel.v3 import TrialCommandChannelV3

    class RawParameterChannel(TrialCommandChannelV3):
        """NNI 3.0's HTTP trial command channel, handing our parameters over JSON-decoded.

        The request and the reply are NNI's (``TrialCommandChannelV3.receive_parameter``); only the decoding
        differs for a parameter of ours (:func:`our_trial`): ``json.loads`` in place of ``nni.load``, so the
        model space is not unpickled. Metrics go out by NNI's own ``send_metric``.
        """

        def receive_parameter(self) -> Any:
            import nni

            self._channel.send({"type": "request_parameter"})
            res = self._channel.receive()
            if res is None:
                _log.error("Trial command channel is closed")
                return None
            if res.get("type") != "parameter":
                raise RuntimeError(f"the trial command channel answered a parameter request with {res.get('type')!r}"
                                   " instead of 'parameter'")
            record = json.loads(res["parameter"])
            if isinstance(record, dict) and our_trial(record.get("parameters")) is not None:
                return record
            return nni.load(res["parameter"])

    return RawParameterChannel


def __getattr__(name: str) -> Any:  # RawParameterChannel without importing nni at this module's import
    if name == "RawParameterChannel":
        return _channel_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _nni_entry() -> None:
    from nni.nas.execution.training_service import trial_entry

    trial_entry()


def run() -> bool:
    """Receive this trial's parameter from NNI and run it; True when the lean path ran (our trial)."""
    import nni
    from nni.runtime.env_vars import trial_env_vars
    from nni.runtime.trial_command_channel import set_default_trial_command_channel

    url = trial_env_vars.NNI_TRIAL_COMMAND_CHANNEL
    if not (isinstance(url, str) and url.startswith("http://")):
        _nni_entry()
        return False
    set_default_trial_command_channel(_channel_class()(url))
    params = nni.get_next_parameter()
    ours = our_trial(params)
    if ours is None:
        from nni.nas.space import ExecutableModelSpace

        if not isinstance(params, ExecutableModelSpace):
            raise RuntimeError(f"the trial's parameter should be an ExecutableModelSpace, but NNI sent "
                               f"{type(params).__name__}: is this trial command used with an nni.nas strategy?")
        params.execute()  # NNI's own trial entry
        return False
    candidate, task = ours
    from nni_nas_ext.strategies.candidate import Candidate
    from nni_nas_ext.trial_code.trial import TaskConfig, run_candidate

    from .evaluator import NniReporter, _log_to_stdout

    _log_to_stdout()
    run_candidate(Candidate.from_dict(candidate), TaskConfig.from_dict(task), NniReporter())
    return True


def main() -> None:
    """The trial command: run the trial, then leave without the interpreter's teardown."""
    run()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
