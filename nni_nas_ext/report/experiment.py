"""Read what an experiment left on disk into plain values: NNI's database, our bridge's state file, NNI's manifest.

An NNI 3.0 experiment folder (``<experimentWorkingDirectory>/<id>``, ``~/nni-experiments/<id>`` by default) holds:

* ``db/nni.sqlite``, NNI manager's database (schema: ``nni_node/core/sqlDatabase.js``): ``ExperimentProfile``
  (``params``: the experiment's config as JSON, ``startTime`` in ms; one row per revision), ``TrialJobEvent``
  (one row per status change of a trial: ``WAITING`` carries the trial's parameter as JSON in ``data``,
  ``SUCCEEDED``/``FAILED``... their time) and ``MetricData`` (``type`` ``FINAL`` or ``PERIODICAL``; ``data`` is
  the reported metric as JSON inside a JSON string; ``timestamp`` when the manager stored it);
* ``checkpoint/nni_nas_ext_bridge_state.json``, our dispatcher's state file
  (:mod:`nni_nas_ext.nni.dispatcher.state`): the strategy's class and its ``state_dict`` (the ledger);
* ``checkpoints/<candidate>.pt``: the weights (not read here: a report needs no tensors).

Everything in the folder is untrusted input: the database is opened read-only with ``trusted_schema`` off, every
value is parsed as JSON (never unpickled, never evaluated) and type-checked, and nothing read from it chooses a
path. A trial's final result (NNI 3.0 may pair a trial with another's parameter, field notes bug 1) is joined
with the job whose id it names, not with the parameter NNI recorded for the trial.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.errors import ArchitectureError
from nni_nas_ext.results import decode_metric
from nni_nas_ext.wire import WIRE_FORMAT

__all__ = ["DB_FILE", "DEFAULT_EXPERIMENT_DIR", "STATE_FILE", "Experiment", "ReportError", "StrategyRecord",
           "Trial", "describe_value", "list_experiments", "load_experiment", "locate_experiment", "settings_rows"]

#: NNI's database inside an experiment folder
DB_FILE = Path("db") / "nni.sqlite"
#: our dispatcher's state file inside an experiment folder (nni_nas_ext.nni.dispatcher.state.STATE_FILE_NAME)
STATE_FILE = Path("checkpoint") / "nni_nas_ext_bridge_state.json"
#: the format of a middleware's state around the search's (strategies/middleware.py)
MIDDLEWARE_FORMAT = "nni-nas-ext/middleware"
#: NNI's default experimentWorkingDirectory; its ``.experiment`` file lists the experiments nnictl started
DEFAULT_EXPERIMENT_DIR = Path("~/nni-experiments")
_MANIFEST = ".experiment"
_EXPERIMENT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: a trial's statuses in NNI's events, in no particular order; the last event wins
_END_EVENTS = ("SUCCEEDED", "FAILED", "USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED")


class ReportError(ValueError):
    """The experiment cannot be found or read; the message names the value and the remedy."""


# ---- finding the experiment -------------------------------------------------------------------------------

def _manifest(root: Path) -> dict[str, Any]:
    """NNI's list of experiments (``<root>/.experiment``, written by nnictl), ``{}`` if absent or unreadable."""
    try:
        data = json.loads((root / _MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _search_dirs(exp_id: str, experiment_dir: Optional[str]) -> list[Path]:
    if experiment_dir is not None:
        return [Path(experiment_dir).expanduser()]
    default = DEFAULT_EXPERIMENT_DIR.expanduser()
    dirs = []
    entry = _manifest(default).get(exp_id)
    if isinstance(entry, dict) and isinstance(entry.get("logDir"), str) and entry["logDir"]:
        dirs.append(Path(entry["logDir"]).expanduser())  # the experiment's experimentWorkingDirectory
    return [*dirs, default]


def list_experiments(folder: Path) -> list[str]:
    """Ids of the experiment folders (with ``db/nni.sqlite``) directly inside ``folder``, sorted."""
    try:
        children = list(folder.iterdir())
    except OSError:
        return []
    return sorted(p.name for p in children if (p / DB_FILE).is_file())


def locate_experiment(value: str, experiment_dir: Optional[str] = None) -> Path:
    """The experiment folder named by ``value``: a folder path, or an experiment id.

    An id is looked up as ``<experiment_dir>/<id>`` when ``experiment_dir`` is given; otherwise in the folder that
    NNI's manifest (``~/nni-experiments/.experiment``) records for it, then in ``~/nni-experiments``.

    Raises
    ------
    ReportError
        ``value`` is neither an experiment folder nor the id of one (the message lists the ids that exist).
    """
    path = Path(value).expanduser()
    if path.is_dir():
        if (path / DB_FILE).is_file():
            return path.resolve()
        raise ReportError(f"{value!r} is a folder but not an NNI experiment folder: {DB_FILE} is missing in it; give "
                          f"the folder named after the experiment's id (<experimentWorkingDirectory>/<id>) or the id")
    if not _EXPERIMENT_ID.fullmatch(value):
        raise ReportError(f"{value!r} is neither an existing folder nor an experiment id (letters, digits, '_', '-'); "
                          "give an experiment id (nnictl experiment list) or an experiment folder")
    dirs = _search_dirs(value, experiment_dir)
    for folder in dirs:
        if (folder / value / DB_FILE).is_file():
            return (folder / value).resolve()
    known = sorted({i for folder in dirs for i in list_experiments(folder)})
    where = ", ".join(str(d) for d in dirs)
    listed = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "") if known else "none"
    raise ReportError(f"no experiment {value!r} in {where} (no {value}/{DB_FILE}); experiments there: {listed}. "
                      "Give the experiment's folder, or --experiment-dir <its experimentWorkingDirectory>")


# ---- the values -------------------------------------------------------------------------------------------

def _finite(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclass
class Trial:
    """One NNI trial: what NNI recorded, the trial's own final result and the job the search sent for it.

    ``submitted_s``/``ended_s``/``result_s`` are seconds since the experiment's start (``None``: unknown).
    ``job`` is the job whose id the final result names (else the one in the trial's own parameter);
    ``architecture`` is the job's morphism-search architecture when it has one that parses.
    """

    trial_id: str
    status: str
    submitted_s: Optional[float] = None
    ended_s: Optional[float] = None
    result_s: Optional[float] = None
    result: Optional[dict[str, Any]] = None
    job: Optional[dict[str, Any]] = None
    job_kind: Optional[str] = None
    architecture: Optional[Architecture] = None

    @property
    def candidate(self) -> Optional[str]:
        """The candidate (or job) id: the result's, else the job's."""
        if self.result and isinstance(self.result.get("candidate"), str):
            return self.result["candidate"]
        if self.job and isinstance(self.job.get("id"), str):
            return self.job["id"]
        return None

    def _get(self, key: str) -> Any:
        for source in (self.result, self.job):
            if source and source.get(key) is not None:
                return source[key]
        return None

    @property
    def role(self) -> Optional[str]:
        value = self._get("role")
        return value if isinstance(value, str) else None

    @property
    def parent(self) -> Optional[str]:
        value = self._get("parent")
        return value if isinstance(value, str) else None

    @property
    def failed(self) -> bool:
        failed_status = self.status in ("FAILED", "USER_CANCELED", "SYS_CANCELED")
        return failed_status or bool(self.result and self.result.get("failed"))

    @property
    def accuracy(self) -> Optional[float]:
        """The validation accuracy (``default``) of a successful result."""
        return None if self.failed or not self.result else _finite(self.result.get("default"))

    @property
    def final_training(self) -> bool:
        """A training on train+val: its ``default`` is its parent's validation accuracy, not its own."""
        return bool(self.result and self.result.get("train_on") == "train+val")

    @property
    def params(self) -> Optional[float]:
        return _finite(self._get("params"))

    def cost(self, name: str) -> tuple[Optional[float], Optional[str]]:
        """``(value, result key)`` of a cost: ``macs`` (keys ``macs``, ``flops``, ``madds``) or ``latency_ms``."""
        keys = ("macs", "flops", "madds") if name == "macs" else (name,)
        for key in keys:
            value = _finite((self.result or {}).get(key))
            if value is not None:
                return value, key
        return None, None

    @property
    def morphisms(self) -> list[str]:
        """The morphisms from the parent: the result's list, else the architecture's lineage."""
        listed = (self.result or {}).get("morphisms")
        if isinstance(listed, list) and all(isinstance(m, str) for m in listed):
            return list(listed)
        if self.architecture is not None and self.architecture.lineage is not None:
            return [step.describe() for step in self.architecture.lineage.steps]
        return []


@dataclass
class StrategyRecord:
    """What the bridge's state file says of the strategy: its class, the search's format, phase and settings."""

    strategy_class: Optional[str]
    search_format: Optional[str] = None
    phase: Optional[str] = None
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass
class Experiment:
    """An experiment as read from its folder: its id, config, trials (in submission order), strategy record."""

    folder: Path
    exp_id: str
    config: dict[str, Any]
    trials: list[Trial]
    start_ms: Optional[int] = None
    strategy: Optional[StrategyRecord] = None
    problems: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        value = self.config.get("experimentName")
        return value if isinstance(value, str) and value else self.exp_id

    def results(self) -> list[Trial]:
        """The trials with a final result, the last trial of each candidate (a resumed re-run replaces its first)."""
        latest: dict[str, Trial] = {}
        for trial in sorted((t for t in self.trials if t.result is not None), key=lambda t: t.result_s or 0.0):
            latest[trial.candidate or f"trial:{trial.trial_id}"] = trial
        return sorted(latest.values(), key=lambda t: (t.result_s or 0.0, t.trial_id))

    def by_candidate(self) -> dict[str, Trial]:
        return {t.candidate: t for t in self.results() if t.candidate is not None}


# ---- reading the folder -----------------------------------------------------------------------------------

def _rows(db: sqlite3.Connection, sql: str) -> list[tuple[Any, ...]]:
    try:
        return list(db.execute(sql))
    except sqlite3.Error as exc:
        raise ReportError(f"NNI's database cannot be read ({exc}): is this an NNI 3.0 experiment folder?") from None


def _json(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _job_of(parameter: Any) -> tuple[Optional[dict[str, Any]], Optional[str]]:
    """The job and kind of our wire envelope inside a trial's recorded parameter (``{"parameters": {...}}``)."""
    inner = parameter.get("parameters") if isinstance(parameter, dict) else None
    if isinstance(inner, dict) and inner.get("format") == WIRE_FORMAT and isinstance(inner.get("job"), dict) and \
            isinstance(inner.get("kind"), str):
        return inner["job"], inner["kind"]
    return None, None


def _architecture(job: Optional[dict[str, Any]], kind: Optional[str]) -> Optional[Architecture]:
    if job is None or kind != "candidate":  # FNA's jobs carry a MobileNetV2 family architecture, or none
        return None
    try:
        return Architecture.from_dict(job.get("architecture"))
    except (ArchitectureError, ValueError, TypeError, RecursionError):
        return None


def _read_db(path: Path) -> tuple[dict[str, Any], Optional[int], Optional[str], list[tuple], list[tuple]]:
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=10)
    except sqlite3.Error as exc:
        raise ReportError(f"cannot open NNI's database {path}: {exc}") from None
    try:
        _rows(db, "PRAGMA trusted_schema = OFF")  # no functions from the file's own schema
        profiles = _rows(db, "select params, id, startTime, revision from ExperimentProfile")
        # in the order NNI wrote them (NNI replays its events the same way)
        events = _rows(db, "select timestamp, trialJobId, event, data from TrialJobEvent order by rowid")
        metrics = _rows(db, "select timestamp, trialJobId, type, data from MetricData order by rowid")
    finally:
        db.close()
    config: dict[str, Any] = {}
    exp_id, start, best_revision = None, None, -1
    for params, pid, start_time, revision in profiles:
        if _int(revision) is not None and revision > best_revision:
            parsed = _json(params)
            config, exp_id, best_revision = (parsed if isinstance(parsed, dict) else {}), pid, revision
        if _int(start_time) is not None and (start is None or start_time < start):
            start = start_time
    return config, start, exp_id if isinstance(exp_id, str) else None, events, metrics


def _read_state(path: Path, problems: list[str]) -> Optional[StrategyRecord]:
    """The strategy's record from the bridge's state file (plain JSON keys only; tagged values are skipped)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        problems.append(f"{STATE_FILE} was not read: {exc}")
        return None
    if not isinstance(data, dict) or data.get("format") != "nni-nas-ext bridge state":
        problems.append(f"{STATE_FILE} is not a bridge state file (its 'format' is not 'nni-nas-ext bridge state')")
        return None
    cls = data.get("strategy_class") if isinstance(data.get("strategy_class"), str) else None
    record = StrategyRecord(cls)
    state = data.get("strategy_state")
    search = state.get("search") if isinstance(state, dict) else None
    # the search under its middleware (strategies/middleware.py: {"format": MIDDLEWARE_FORMAT, "inner": ...}, as deep
    # as it is wrapped; the report reads no strategy module, tests/test_middleware.py checks the name is the same)
    while isinstance(search, dict) and search.get("format") == MIDDLEWARE_FORMAT and isinstance(search.get("inner"),
                                                                                                 dict):
        search = search["inner"]
    if isinstance(search, dict):  # our strategies' adapter: {"search": the search's state_dict, ...}
        record.search_format = search.get("format") if isinstance(search.get("format"), str) else None
        record.phase = search.get("phase") if isinstance(search.get("phase"), str) else None
        if isinstance(search.get("config"), dict):
            record.settings = {str(k): v for k, v in search["config"].items()}
        if isinstance(search.get("notes"), list):
            record.notes = [n for n in search["notes"] if isinstance(n, str)]
    return record


def load_experiment(folder: Path) -> Experiment:
    """Read the experiment folder ``folder`` (see the module's docstring for what is read from where)."""
    folder = Path(folder)
    if not (folder / DB_FILE).is_file():
        raise ReportError(f"{folder} is not an NNI experiment folder: {DB_FILE} is missing")
    config, start, exp_id, events, metrics = _read_db(folder / DB_FILE)
    problems: list[str] = []
    trials: dict[str, Trial] = {}
    jobs: dict[str, tuple[dict[str, Any], str]] = {}  # job id -> (job, kind), from every recorded parameter
    own_job: dict[str, tuple[dict[str, Any], str]] = {}  # trial id -> the job NNI recorded for it
    times = [t for t, *_ in events if _int(t) is not None]
    start = start if start is not None else (min(times) if times else None)

    def seconds(ms: Any) -> Optional[float]:
        return (ms - start) / 1000.0 if _int(ms) is not None and start is not None else None

    for timestamp, trial_id, event, data in events:
        if not isinstance(trial_id, str) or not trial_id or not isinstance(event, str):
            continue  # experiment-level events (IMPORT_DATA, ADD_CUSTOMIZED without a trial)
        trial = trials.setdefault(trial_id, Trial(trial_id, "UNKNOWN"))
        if event not in ("ADD_HYPERPARAMETER", "ADD_RESUMED"):
            trial.status = "USER_CANCELED" if event == "USER_TO_CANCEL" else event
        if event == "WAITING" and trial.submitted_s is None:
            trial.submitted_s = seconds(timestamp)
        if event in _END_EVENTS:
            trial.ended_s = seconds(timestamp)
        job, kind = _job_of(_json(data))
        if job is not None and kind is not None:
            own_job.setdefault(trial_id, (job, kind))
            if isinstance(job.get("id"), str):
                jobs[job["id"]] = (job, kind)
    for timestamp, trial_id, kind, data in metrics:
        if kind != "FINAL" or not isinstance(trial_id, str):
            continue
        try:
            metric = decode_metric(data)
        except RecursionError:
            metric = None
        if not isinstance(metric, dict):
            problems.append(f"trial {trial_id}: its final result is not a JSON object; left out")
            continue
        trial = trials.setdefault(trial_id, Trial(trial_id, "UNKNOWN"))
        trial.result, trial.result_s = metric, seconds(timestamp)
    for trial in trials.values():
        named = trial.result.get("candidate") if trial.result else None
        found = jobs.get(named) if isinstance(named, str) else own_job.get(trial.trial_id)
        if found is not None:
            trial.job, trial.job_kind = found
            trial.architecture = _architecture(*found)
            if trial.job_kind == "candidate" and trial.architecture is None:
                problems.append(f"trial {trial.trial_id}: its job's architecture does not parse; left out of the tree")
    ordered = sorted(trials.values(), key=lambda t: (t.submitted_s is None, t.submitted_s or 0.0, t.trial_id))
    return Experiment(folder=folder.resolve(), exp_id=exp_id or folder.name, config=config, trials=ordered,
                      start_ms=start, strategy=_read_state(folder / STATE_FILE, problems), problems=problems)


def describe_value(value: Any, limit: int = 400) -> str:
    """A setting's value as one line of JSON (cut at ``limit`` characters)."""
    text = json.dumps(value, sort_keys=True, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


def settings_rows(config: Mapping[str, Any], keys: Iterable[str] = ()) -> list[tuple[str, str]]:
    """``(key, value)`` rows of NNI's config: the keys a reader looks for first, then the tuner's classArgs."""
    order = list(keys) or ["experimentName", "trialConcurrency", "maxTrialNumber", "maxExperimentDuration",
                           "trialCommand", "trainingService"]
    rows = [(k, describe_value(config[k])) for k in order if k in config]
    tuner = config.get("tuner")
    if isinstance(tuner, dict):
        rows += [(f"tuner.{k}", describe_value(v)) for k, v in tuner.items() if k != "classArgs"]
        args = tuner.get("classArgs")
        if isinstance(args, dict):
            rows += [(f"tuner.classArgs.{k}", describe_value(v)) for k, v in args.items()]
    return rows
