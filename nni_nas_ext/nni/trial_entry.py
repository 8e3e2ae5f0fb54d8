"""The trial command of our searches: NNI's trial protocol, plain-JSON parameters, nothing unpickled.

Use it as the experiment's trial command (every config of this project does)::

    trialCommand: .venv/bin/python -m nni_nas_ext.nni.trial_entry

What it does, through NNI's own API and channel:

1. it opens the trial command channel that NNI's ``get_default_trial_command_channel`` would open (NNI
   3.0's HTTP channel at ``NNI_TRIAL_COMMAND_CHANNEL``) and installs it as NNI's default channel;
2. it asks for the trial's parameter and decodes it as JSON, never with ``nni.load``: the parameter must be
   a payload of :mod:`nni_nas_ext.wire`, signed with this experiment's key for the parameter id NNI
   delivered. Anything else is refused and the trial fails before it builds, trains or writes anything:
   a customized trial (``POST /api/v1/nni/trial-jobs``, the portal's "add trial"; NNI gives it no parameter
   id), a forged or altered payload, NNI's pickled format. The checkpoint store and the dataset come from
   the signed settings, which only the experiment's dispatcher can produce;
3. ``candidate``: :func:`~nni_nas_ext.trial_code.trial.run_candidate`; ``fna_job``:
   :func:`~nni_nas_ext.trial_code.fna_trial.run_fna_job`; both report through ``nni.report_*``;
4. after a successful trial it ends the process without the interpreter's teardown (``os._exit(0)``, once
   logs and output are flushed): the checkpoint is on disk and the final result was delivered (the HTTP
   channel's PUT returns after NNI has it). A failing trial raises (exit code 1, the reason on stderr and in
   ``trial.log``), so NNI marks it FAILED.

NNI's own pickled parameters (the benchmark's baselines run NNI's strategies) are accepted only when the
trial command says so explicitly, ``--allow-nni-format``; NNI's own trial command
(``python -m nni.nas.execution.training_service trial``) always unpickles them. Neither is used by our
searches: see the README's "Security".

Not importing ``nni.nas`` also saves every trial the import of pytorch_lightning, torchmetrics and
torchvision (about 2 s of a 4.3-s digits trial, and about as long again at exit).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from nni_nas_ext.wire import TrialPayload, WireError, decode_trial, experiment_key_path, is_wire_payload, read_key

# RawParameterChannel is served by the module __getattr__ below (built on first use, so importing this module
# does not import nni)
__all__ = ["ALLOW_NNI_FORMAT_FLAG", "RawParameterChannel", "TrialRefused", "main", "receive_payload", "run"]  # noqa: F822

_log = logging.getLogger(__name__)

#: the trial-command flag that lets NNI's pickled parameters through (NNI's own strategies only)
ALLOW_NNI_FORMAT_FLAG = "--allow-nni-format"


class TrialRefused(RuntimeError):
    """The trial's parameter is not one this trial may run; nothing was built, trained or written."""


def receive_payload(record: Any, key_path: Any = None) -> TrialPayload:
    """The authentic payload of a parameter record ``{"parameter_id", "parameters", ...}``, or :class:`TrialRefused`.

    ``key_path``: the experiment's key file (default: :func:`~nni_nas_ext.wire.experiment_key_path` of this
    process's environment).
    """
    if not isinstance(record, dict):
        raise TrialRefused(f"the trial's parameter record must be a JSON object, but got {type(record).__name__}")
    try:
        key = read_key(key_path if key_path is not None else experiment_key_path())
        return decode_trial(record.get("parameters"), record.get("parameter_id"), key)
    except WireError as exc:
        source = record.get("parameter_source")
        raise TrialRefused(f"refusing to run this trial (parameter_id={record.get('parameter_id')!r}, "
                           f"source={source!r}): {exc}") from None


def _channel_class() -> type:
    from nni.runtime.trial_command_channel.v3 import TrialCommandChannelV3

    class RawParameterChannel(TrialCommandChannelV3):
        """NNI 3.0's HTTP trial command channel that hands the parameter record over as parsed JSON.

        The request and the reply are NNI's (``TrialCommandChannelV3.receive_parameter``); only the decoding
        differs: ``json.loads`` in place of ``nni.load``, so nothing is unpickled. Metrics go out by NNI's own
        ``send_metric``.
        """

        allow_nni_format = False

        def receive_parameter(self) -> Any:
            self._channel.send({"type": "request_parameter"})
            res = self._channel.receive()
            if res is None:
                _log.error("Trial command channel is closed")
                return None
            if res.get("type") != "parameter":
                raise RuntimeError(f"the trial command channel answered a parameter request with {res.get('type')!r}"
                                   " instead of 'parameter'")
            text = res.get("parameter")
            try:
                record = json.loads(text)
            except (TypeError, ValueError) as exc:
                raise TrialRefused(f"the trial's parameter is not JSON ({exc}); refusing to run it") from None
            if isinstance(record, dict) and is_wire_payload(record.get("parameters")):
                return record
            if self.allow_nni_format:
                import nni

                return nni.load(text)  # NNI's own format, asked for by the trial command
            raise TrialRefused(
                "refusing to run this trial: its parameter is not a signed nni-nas-ext payload (parameter_id="
                f"{record.get('parameter_id') if isinstance(record, dict) else None!r}). This trial command "
                "never unpickles NNI's format; a trial the experiment's search did not create (e.g. POST "
                f"/api/v1/nni/trial-jobs) is not run. Only for NNI's own strategies add {ALLOW_NNI_FORMAT_FLAG} "
                "to the trial command.")

    return RawParameterChannel


def __getattr__(name: str) -> Any:  # RawParameterChannel without importing nni at this module's import
    if name == "RawParameterChannel":
        return _channel_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _run_payload(payload: TrialPayload) -> None:
    from .evaluator import NniReporter, _log_to_stdout

    _log_to_stdout()
    if payload.kind == "candidate":
        from nni_nas_ext.core.jobs import Candidate
        from nni_nas_ext.trial_code.trial import TaskConfig, run_candidate

        run_candidate(Candidate.from_dict(payload.job), TaskConfig.from_dict(payload.settings["task"]),
                      NniReporter())
    else:  # "fna_job" (TrialPayload admits no other kind)
        from nni_nas_ext.core.jobs import FnaJob
        from nni_nas_ext.trial_code.fna_trial import FnaTaskConfig, run_fna_job

        run_fna_job(FnaJob.from_dict(payload.job), FnaTaskConfig.from_dict(payload.settings["task"]),
                    dict(payload.settings["adaptation"]), NniReporter())


def run(argv: list[str] | None = None) -> bool:
    """Receive this trial's parameter from NNI and run it; True when it was one of ours.

    Raises
    ------
    TrialRefused
        The parameter is not an authentic payload of this experiment (and NNI's format was not allowed).
    """
    parser = argparse.ArgumentParser(prog="python -m nni_nas_ext.nni.trial_entry",
                                     description="Run one trial of an nni-nas-ext search (started by NNI).")
    parser.add_argument(ALLOW_NNI_FORMAT_FLAG, action="store_true",
                        help="also run NNI's own pickled parameters (only for NNI's built-in strategies; "
                             "anyone who can reach NNI's REST API can then run code in a trial)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    import nni
    from nni.runtime.env_vars import trial_env_vars
    from nni.runtime.trial_command_channel import set_default_trial_command_channel

    url = trial_env_vars.NNI_TRIAL_COMMAND_CHANNEL
    if not (isinstance(url, str) and url.startswith("http://")):
        raise TrialRefused(f"this trial command speaks NNI 3.0's HTTP trial channel, but NNI_TRIAL_COMMAND_CHANNEL "
                           f"is {url!r}; use NNI's own trial command with NNI's legacy channels")
    channel_class = _channel_class()
    channel = channel_class(url)
    channel.allow_nni_format = args.allow_nni_format
    set_default_trial_command_channel(channel)
    # nni.get_next_parameter() keeps NNI's bookkeeping (the parameter id that metrics carry)
    nni.get_next_parameter()
    import nni.trial

    record = nni.trial._params  # the whole record just received: its parameter_id is what NNI delivered

    if isinstance(record, dict) and is_wire_payload(record.get("parameters")):
        _run_payload(receive_payload(record))
        return True
    from nni.nas.space import ExecutableModelSpace

    params = record.get("parameters") if isinstance(record, dict) else None
    if not isinstance(params, ExecutableModelSpace):
        raise TrialRefused(f"the trial's parameter should be an nni-nas-ext payload or (with "
                           f"{ALLOW_NNI_FORMAT_FLAG}) an NNI model, but NNI sent {type(params).__name__}")
    params.execute()  # NNI's own trial entry
    return False


def main() -> None:
    """The trial command: run the trial, then leave without the interpreter's teardown."""
    try:
        run()
    except TrialRefused as exc:
        logging.shutdown()
        print(f"nni-nas-ext trial: {exc}", file=sys.stderr, flush=True)
        print(f"nni-nas-ext trial: {exc}", file=sys.stdout, flush=True)  # trial.log, shown by the portal
        sys.stdout.flush()
        os._exit(2)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
