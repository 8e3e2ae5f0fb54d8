"""The trial command of our searches: NNI's trial protocol, plain-JSON parameters, nothing unpickled.

Use it as the experiment's trial command (every config of this project does)::

    trialCommand: .venv/bin/python -m nni_nas_ext.nni.trial_entry

What it does, speaking NNI 3.0's trial protocol itself (:class:`TrialChannel`; it does not import ``nni``):

1. it opens the trial command channel that NNI's ``get_default_trial_command_channel`` would open (NNI
   3.0's HTTP channel at ``NNI_TRIAL_COMMAND_CHANNEL``);
2. it asks for the trial's parameter and decodes it as JSON, never with ``nni.load``: the parameter must be
   a payload of :mod:`nni_nas_ext.wire`, signed with this experiment's key for the parameter id NNI
   delivered. Anything else is refused and the trial fails before it builds, trains or writes anything:
   a customized trial (``POST /api/v1/nni/trial-jobs``, the portal's "add trial"; NNI gives it no parameter
   id), a forged or altered payload, NNI's pickled format. The checkpoint store and the dataset come from
   the signed settings, which only the experiment's dispatcher can produce;
3. ``candidate``: :func:`~nni_nas_ext.trial_code.trial.run_candidate`; ``fna_job``:
   :func:`~nni_nas_ext.trial_code.fna_trial.run_fna_job`; both report over the same channel what
   ``nni.report_*`` would send (:class:`ChannelReporter`);
4. after a successful trial it ends the process without the interpreter's teardown (``os._exit(0)``, once
   logs and output are flushed): the checkpoint is on disk and the final result was delivered (the HTTP
   channel's PUT returns after NNI has it). A failing trial raises (exit code 1, the reason on stderr and in
   ``trial.log``), so NNI marks it FAILED.

NNI's own pickled parameters (the benchmark's baselines run NNI's strategies) are accepted only when the
trial command says so explicitly, ``--allow-nni-format``; NNI's own trial command
(``python -m nni.nas.execution.training_service trial``) always unpickles them. Neither is used by our
searches: see the README's "Security".

Not importing ``nni.nas`` saves every trial the import of pytorch_lightning, torchmetrics and torchvision (about
2 s of a 4.3-s digits trial, and about as long again at exit); not importing ``nni`` at all (scipy.stats, pandas)
saves about one more second (``make bench``: "process start + imports"). Only ``--allow-nni-format`` with a
parameter in NNI's format imports ``nni``, to run NNI's own trial.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from nni_nas_ext.console import log_to_stdout
from nni_nas_ext.results import portal_result
from nni_nas_ext.wire import TrialPayload, WireError, decode_trial, experiment_key_path, is_wire_payload, read_key

__all__ = ["ALLOW_NNI_FORMAT_FLAG", "ChannelReporter", "TrialChannel", "TrialRefused", "main", "open_trial_log",
           "parse_record", "receive_payload", "run"]

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


class TrialChannel:
    """NNI 3.0's HTTP trial command channel, spoken without importing ``nni``.

    The protocol is the NNI manager's (``nni_node/common/command_channel/http.js``; NNI's own
    ``nni.runtime.command_channel.http.HttpChannel`` and ``trial_command_channel.v3`` speak it): the trial PUTs a
    JSON command (``request_parameter``, ``metric``) to its channel URL and GETs the next command for it; a GET
    answers 408 while nothing is ready (ask again) and 410 once the channel is closed. A metric goes out as NNI
    sends it: ``{"type": "metric", "metric": <JSON text of {parameter_id, trial_job_id, type, sequence, value:
    <JSON text of the value>}>}``.
    """

    def __init__(self, url: str, trial_job_id: str | None, timeout: float = 600.0) -> None:
        self.url = url
        self.trial_job_id = trial_job_id
        self.timeout = timeout

    def send(self, command: dict[str, Any]) -> None:
        request = urllib.request.Request(self.url, data=json.dumps(command).encode("utf-8"), method="PUT",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:  # NNI's own channel ignores the answer to a PUT; we log it
            _log.error("NNI's trial channel answered %s to a %r command", exc.code, command.get("type"))

    def receive(self) -> dict[str, Any] | None:
        """The next command for this trial; None once NNI closed the channel."""
        while True:
            try:
                with urllib.request.urlopen(self.url, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                if exc.code == 408:  # nothing for this trial yet
                    continue
                if exc.code == 410:
                    return None
                raise OSError(f"NNI's trial channel {self.url} answered {exc.code} to a GET") from None

    def receive_parameter_text(self) -> str | None:
        """Ask for this trial's parameter: its text as NNI holds it (None: the channel is closed)."""
        self.send({"type": "request_parameter"})
        res = self.receive()
        if res is None:
            _log.error("Trial command channel is closed")
            return None
        if res.get("type") != "parameter":
            raise RuntimeError(f"the trial command channel answered a parameter request with {res.get('type')!r}"
                               " instead of 'parameter'")
        text = res.get("parameter")
        if not isinstance(text, str):
            raise TrialRefused(f"the trial's parameter is not JSON text but {type(text).__name__}; refusing to run it")
        return text

    def send_metric(self, kind: str, parameter_id: Any, sequence: int, value: Any) -> None:
        metric = {"parameter_id": parameter_id, "trial_job_id": self.trial_job_id, "type": kind,
                  "sequence": sequence, "value": metric_json(value)}
        self.send({"type": "metric", "metric": json.dumps(metric)})


def metric_json(value: Any) -> str:
    """A metric as JSON text, as ``nni.dump`` writes plain values (NaN allowed); numpy scalars become numbers."""

    def plain(obj: Any) -> Any:
        if getattr(obj, "shape", None) == () and callable(getattr(obj, "item", None)):
            return obj.item()
        raise TypeError(f"a metric must be plain JSON, but it holds a {type(obj).__name__}")

    return json.dumps(value, allow_nan=True, default=plain)


class ChannelReporter:
    """A trial's results over :class:`TrialChannel`, numbered as ``nni.report_*`` numbers them: intermediate
    results from 0, the final one 0, each with the parameter id NNI delivered."""

    def __init__(self, channel: TrialChannel, parameter_id: Any) -> None:
        self.channel = channel
        self.parameter_id = parameter_id
        self._sequence = 0

    def intermediate(self, metric: dict[str, Any]) -> None:
        self.channel.send_metric("PERIODICAL", self.parameter_id, self._sequence, metric)
        self._sequence += 1

    def final(self, metric: dict[str, Any]) -> None:
        """The final result in its portal form (:func:`nni_nas_ext.results.portal_result`), as ``NniReporter``."""
        self.channel.send_metric("FINAL", self.parameter_id, 0, portal_result(metric))


def _carries_payload(record: Any) -> bool:
    """Whether a parameter record holds a payload of ours (to be verified by :func:`receive_payload`)."""
    return isinstance(record, dict) and is_wire_payload(record.get("parameters"))


def parse_record(text: str, allow_nni_format: bool = False) -> Any:
    """The parameter record NNI delivered, decoded as JSON, never with ``nni.load``: a record whose parameters are
    not a payload of ours is refused, unless NNI's format is allowed (then NNI's own ``nni.load`` reads it)."""
    try:
        record = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise TrialRefused(f"the trial's parameter is not JSON ({exc}); refusing to run it") from None
    if _carries_payload(record):
        return record
    if allow_nni_format:
        import nni

        return nni.load(text)  # NNI's own format, asked for by the trial command
    raise TrialRefused(
        "refusing to run this trial: its parameter is not a signed nni-nas-ext payload (parameter_id="
        f"{record.get('parameter_id') if isinstance(record, dict) else None!r}). This trial command "
        "never unpickles NNI's format; a trial the experiment's search did not create (e.g. POST "
        f"/api/v1/nni/trial-jobs) is not run. Only for NNI's own strategies add {ALLOW_NNI_FORMAT_FLAG} "
        "to the trial command.")


def _run_payload(payload: TrialPayload, reporter: ChannelReporter) -> None:
    log_to_stdout()
    if payload.kind == "candidate":
        from nni_nas_ext.core.jobs import Candidate
        from nni_nas_ext.trial_code.trial import TaskConfig, run_candidate

        run_candidate(Candidate.from_dict(payload.job), TaskConfig.from_dict(payload.settings["task"]), reporter)
    else:  # "fna_job" (TrialPayload admits no other kind)
        from nni_nas_ext.core.jobs import FnaJob
        from nni_nas_ext.trial_code.fna_trial import FnaTaskConfig, run_fna_job

        run_fna_job(FnaJob.from_dict(payload.job), FnaTaskConfig.from_dict(payload.settings["task"]),
                    dict(payload.settings["adaptation"]), reporter)


def _run_nni_model(url: str, record: Any) -> None:
    """NNI's own trial (``--allow-nni-format``, NNI's strategies): the record goes to NNI's trial API, whose
    channel then carries the model's reports, as NNI's trial entry would."""
    import nni.trial
    from nni.nas.space import ExecutableModelSpace
    from nni.runtime.trial_command_channel import set_default_trial_command_channel
    from nni.runtime.trial_command_channel.v3 import TrialCommandChannelV3

    params = record.get("parameters") if isinstance(record, dict) else None
    if not isinstance(params, ExecutableModelSpace):
        raise TrialRefused(f"the trial's parameter should be an nni-nas-ext payload or (with "
                           f"{ALLOW_NNI_FORMAT_FLAG}) an NNI model, but NNI sent {type(params).__name__}")
    set_default_trial_command_channel(TrialCommandChannelV3(url))
    nni.trial._params = record  # what nni.get_next_parameter() keeps: the parameter id that metrics carry
    params.execute()  # NNI's own trial entry


#: NNI's trial log format (``nni/runtime/log.py``), kept so that trial.log reads as it did when the trial imported nni
_LOG_FORMAT = "[%(asctime)s] %(levelname)s (%(name)s/%(threadName)s) %(message)s"
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class _TimestampedLines(io.TextIOBase):
    """What ``print`` writes, as lines ``[time] PRINT ...`` of ``trial.log`` (as NNI's trial runtime writes them)."""

    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.pending = ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        *lines, self.pending = (self.pending + s).split("\n")
        if lines:
            stamp = datetime.now().strftime(_TIME_FORMAT)
            self.file.write("".join(f"[{stamp}] PRINT {line}\n" for line in lines))
            self.file.flush()
        return len(s)

    def flush(self) -> None:
        if self.pending:
            self.file.write(f"[{datetime.now().strftime(_TIME_FORMAT)}] PRINT {self.pending}\n")
            self.pending = ""
        self.file.flush()


def open_trial_log() -> None:
    """The trial's ``trial.log`` in ``NNI_OUTPUT_DIR`` (what NNI's portal shows as the trial's log), set up as
    importing ``nni`` sets it up in a trial process (``nni/runtime/log.py``, ``_init_logger_trial``): the root
    logger writes to it at INFO, and on the local training service ``print`` too. Nothing outside a trial."""
    platform = os.environ.get("NNI_PLATFORM")
    if not platform or platform == "unittest" or os.environ.get("REUSE_MODE"):
        return
    folder = Path(os.environ.get("NNI_OUTPUT_DIR") or ".")
    folder.mkdir(parents=True, exist_ok=True)
    log_file = (folder / "trial.log").open("a", encoding="utf-8")
    handler = logging.StreamHandler(log_file)
    handler.setFormatter(logging.Formatter(_LOG_FORMAT, _TIME_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    if platform == "local":
        sys.stdout = _TimestampedLines(log_file)


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

    if args.allow_nni_format:
        import nni  # noqa: F401 - NNI's strategies' trials: NNI's runtime sets up trial.log, as in NNI's own trial entry
    else:
        open_trial_log()
    url = os.environ.get("NNI_TRIAL_COMMAND_CHANNEL")
    if not (isinstance(url, str) and url.startswith("http://")):
        raise TrialRefused(f"this trial command speaks NNI 3.0's HTTP trial channel, but NNI_TRIAL_COMMAND_CHANNEL "
                           f"is {url!r}; use NNI's own trial command with NNI's legacy channels")
    channel = TrialChannel(url, os.environ.get("NNI_TRIAL_JOB_ID"))
    text = channel.receive_parameter_text()
    if text is None:
        raise TrialRefused("NNI closed the trial channel before it sent a parameter")
    record = parse_record(text, args.allow_nni_format)
    if _carries_payload(record):
        _run_payload(receive_payload(record), ChannelReporter(channel, record.get("parameter_id")))
        return True
    _run_nni_model(url, record)
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
