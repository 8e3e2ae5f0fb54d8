"""Compare NAS strategies side by side: same task, same wall-clock budget, same seeds, real ``nnictl`` runs.

One command runs every (contestant, seed) pair as its own ``nnictl create`` experiment on NNI's local
training service, reads every trial through NNI's REST API, retrains each run's best architecture under
one common final protocol, and writes::

    <out>/results.json          everything raw (settings, machine, versions, every trial, finals)
    <out>/results.csv           one row per trial NNI started
    <out>/summary.md            per contestant: mean +- std over seeds
    <out>/best_val_vs_time.png  best validation accuracy so far against elapsed time
    <out>/acc_vs_params.png     validation accuracy against parameters, every trained architecture
    <out>/work/<run>/           the runs' private NNI folders (logs; checkpoints removed after each run)

Example (Makefile: ``make compare MINUTES=4 SEEDS="0 1"``)::

    .venv/bin/python benchmarks/compare.py --contestants nash,nash_scratch,eas,net2net_random \\
        --minutes 4 --seeds 0 1 --dataset fashion-mnist --out benchmarks/results/fashion-mnist

The protocol (issue 6, "the comparison harness"):

* **Task.** Every contestant's trials use the same dataset, the same train/validation split
  (``val_fraction`` 0.2 of the training pool, ``split_seed`` 0, the same ``--limit``) and the same training
  schedule per candidate (SGD, momentum 0.9, one cosine cycle lr 0.05 -> 0, the same batch size and, where a
  method has a per-candidate epoch setting, ``--epochs``). No contestant sees the test set during its search.
* **Budget.** ``--minutes`` of wall-clock time per (contestant, seed), counted from the moment ``nnictl
  create`` is called; it is also the experiment's ``maxExperimentDuration``. Everything the contestant does
  happens inside it: NNI's start, its tuner's proposals, every trial process's start, checkpoints. When it
  is over the harness stops the experiment (running trials are killed); only trials whose final result
  arrived within the budget count.
* **Best architecture.** The trial with the highest validation accuracy (the final metric's ``default``)
  among the counted search trials (a contestant's own final trainings on train+val are not search results
  and are left out).
* **Final protocol, the same for everyone** (time reported apart from the budget): the best architecture
  is rebuilt and trained FROM SCRATCH on train+val for ``--final-epochs`` with the same schedule, then the
  test set is evaluated once: "test acc (retrained)". When the best trial left its weights (a
  ``checkpoint``), the same final schedule also continues from them: "test acc (inherited weights)".

The contract every contestant's trials follow: the final metric is a dict with ``default`` (validation
accuracy), ``params`` (int) and one key to rebuild the architecture: ``checkpoint`` (a
:class:`~nni_nas_ext.trial_code.checkpoints.CheckpointStore` file: architecture and weights), ``sample``
(the ``nni.nas`` CNN space of :mod:`nni_nas_ext.nni.baselines.cnn_space`) or ``graph`` (NNI's NetworkMorphism
JSON graph, :mod:`nni_nas_ext.nni.baselines.network_morphism`).

Resume: ``results.json`` is written atomically after every finished run; the same command again skips the
finished runs and does the rest. A run interrupted mid-way (Ctrl-C, a crash) or one whose last attempt
failed is redone from the start. A results file refuses runs made with other fixed settings.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as _dt
import importlib
import importlib.util
import io
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # `python benchmarks/compare.py` and `import compare` from the tests alike
    sys.path.insert(0, str(HERE))

from _nnictl import NnictlFailed, lean_trial_command, nas_trial_command, private_experiment, venv_python  # noqa: E402

from nni_nas_ext.atomic import atomic_write  # noqa: E402
from nni_nas_ext.core.errors import unknown_name  # noqa: E402
from nni_nas_ext.results import decode_metric  # noqa: E402
from nni_nas_ext.strategies.config import Config, ConfigError, option, parse_config  # noqa: E402

__all__ = [
    "CONTESTANTS", "RESULTS_FORMAT", "Settings", "SettingsMismatch", "aggregate", "best_so_far",
    "check_settings", "contestant_problem", "csv_rows", "main", "parse_trials", "pending_runs", "run_key",
    "summary_markdown", "write_report",
]

RESULTS_FORMAT = "nni-nas-ext-compare"
RESULTS_VERSION = 1
#: the validation split every contestant uses (issue 6: the same train/validation split for everyone)
VAL_FRACTION = 0.2
SPLIT_SEED = 0
#: NNI statuses after which an experiment does nothing more
_ENDED = frozenset({"DONE", "ERROR", "STOPPED"})
_UNREACHABLE_LIMIT_S = 60.0
_POLL_S = 2.0
_PROGRESS_EVERY_S = 15.0


# --------------------------------------------------------------------------------------------------
# Settings: everything that must be equal for runs to share one results file
# --------------------------------------------------------------------------------------------------


def _datasets() -> list[str]:
    from nni_nas_ext.trial_code.datasets import list_datasets

    return list_datasets()


@dataclass(frozen=True)
class Settings(Config):
    """The fixed settings of a comparison: the task, the budget, the schedule, the machine's use.

    Contestants and seeds are not settings: a results file may gather more of them over several
    invocations, as long as these are equal.
    """

    config_name: ClassVar[str] = "compare"

    dataset: str = option("fashion-mnist", choices=_datasets(), doc="the task's dataset (local files only)")
    dataset_root: Optional[str] = option(None, doc="folder of the dataset's files; None: its default location")
    limit: Optional[int] = option(None, minimum=2, doc="use at most this many training-pool images (None: all)")
    val_fraction: float = option(VAL_FRACTION, minimum=0.01, maximum=0.5,
                                 doc="share of the training pool held out for validation (fixed)")
    split_seed: int = option(SPLIT_SEED, minimum=0, doc="seed of the validation split (fixed)")
    minutes: float = option(4.0, minimum=0.1, maximum=100_000.0,
                            doc="wall-clock budget of one (contestant, seed) run = maxExperimentDuration")
    epochs: int = option(2, minimum=1, maximum=100_000,
                         doc="epochs of every candidate's training, where a method has such a setting")
    seed_epochs: Optional[int] = option(None, minimum=0, maximum=100_000,
                                        doc="epochs of the seed network of the growing methods; None: --epochs")
    final_epochs: int = option(10, minimum=1, maximum=100_000,
                               doc="epochs of the common final training on train+val")
    batch_size: int = option(128, minimum=2, maximum=65_536, doc="SGD batch size")
    lr: float = option(0.05, minimum=1e-6, maximum=10.0, doc="start of the cosine cycle")
    lr_min: float = option(0.0, minimum=0.0, maximum=10.0, doc="end of the cosine cycle")
    momentum: float = option(0.9, minimum=0.0, maximum=0.999, doc="SGD momentum")
    weight_decay: float = option(5e-4, minimum=0.0, maximum=1.0, doc="L2 weight decay (not on biases or BN)")
    seed_widths: tuple[int, ...] = option((16, 32, 64), minimum=1, maximum=4096, non_empty=True,
                                          doc="widths of the NASH seed network's three convolutions")
    concurrency: int = option(2, minimum=1, maximum=1024, doc="trials running at once (trialConcurrency)")
    threads: int = option(1, minimum=1, maximum=1024, doc="torch threads per trial")
    final_threads: int = option(2, minimum=1, maximum=1024, doc="torch threads of the final trainings")
    device: str = option("auto", choices=["auto", "cpu", "cuda"], doc="auto: CUDA when there is a GPU")

    @property
    def budget_s(self) -> int:
        return max(1, round(self.minutes * 60))

    @property
    def candidate_seed_epochs(self) -> int:
        return self.epochs if self.seed_epochs is None else self.seed_epochs


class SettingsMismatch(ValueError):
    """A results file holds runs made with other fixed settings."""


def check_settings(stored: Mapping[str, Any], current: Settings, path: Path | str) -> None:
    """Refuse to add runs with ``current`` settings to a results file made with ``stored`` ones.

    Raises
    ------
    SettingsMismatch
        Naming every differing setting with both values, and the two remedies.
    """
    now = current.to_dict()
    keys = sorted(set(stored) | set(now))
    diffs = [(k, stored.get(k, "<absent>"), now.get(k, "<absent>")) for k in keys if stored.get(k) != now.get(k)]
    if not diffs:
        return
    listed = "; ".join(f"{k}: {json.dumps(a)} in the file, {json.dumps(b)} now" for k, a, b in diffs)
    flags = " ".join(_flag(k, stored.get(k)) for k, _, _ in diffs if _flag(k, stored.get(k)))
    raise SettingsMismatch(
        f"{path} holds runs made with other fixed settings ({listed}). Runs with different settings cannot "
        f"share one comparison: give another --out for the new settings, or re-run with the file's settings"
        + (f" ({flags})" if flags else "") + ".")


def _flag(key: str, value: Any) -> str:
    if key in ("val_fraction", "split_seed"):
        return ""
    name = "--" + key.replace("_", "-")
    if value is None:
        return f"without {name}"
    if isinstance(value, list):
        return f"{name} {' '.join(map(str, value))}"
    return f"{name} {value}"


# --------------------------------------------------------------------------------------------------
# The contestants: one nnictl experiment config each (a literal registry)
# --------------------------------------------------------------------------------------------------


def _task_args(seed: int, s: Settings) -> dict[str, Any]:
    """The trial settings every contestant shares (TaskConfig keys)."""
    args: dict[str, Any] = {
        "dataset": s.dataset, "val_fraction": s.val_fraction, "split_seed": s.split_seed, "lr": s.lr,
        "lr_min": s.lr_min, "batch_size": s.batch_size, "momentum": s.momentum, "weight_decay": s.weight_decay,
        "threads": s.threads, "device": s.device, "seed": seed,
    }
    if s.dataset_root is not None:
        args["dataset_root"] = s.dataset_root
    if s.limit is not None:
        args["limit"] = s.limit
    return args


def _seed_net_args(s: Settings) -> dict[str, Any]:
    """The seed network the growing methods start from."""
    return {"seed_network": "nash", "seed_widths": list(s.seed_widths)}


def _experiment(name: str, seed: int, s: Settings, class_name: str, class_args: Mapping[str, Any], *,
                trial_command: str | None = None) -> dict[str, Any]:
    """An NNI v2 config: local training service, ``maxExperimentDuration`` = the budget, no trial limit.

    The trial command is what a user of each method would run: our lean entry for our tuners (as in
    ``examples/benchmark``), NNI's own for NNI's strategies, whose trials unpickle an ``nni.nas`` model."""
    return {
        "experimentName": f"compare-{name}-seed{seed}",
        "searchSpace": {},
        "trialCommand": trial_command or lean_trial_command(),
        "trialCodeDirectory": str(ROOT),
        "trialConcurrency": s.concurrency,
        "maxExperimentDuration": f"{s.budget_s}s",
        "tuner": {"className": class_name, "codeDirectory": str(ROOT), "classArgs": dict(class_args)},
        "trainingService": {"platform": "local", "useActiveGpu": False},
    }


#: NASH's search settings here (the paper: n_neigh 8, n_NM 5); n_steps so large that the budget ends it
_NASH = {"n_steps": 10_000, "n_neighbours": 4, "n_morphisms": 3,
         "morphisms": ["deepen", "widen", "add_skip", "concat_skip"], "morphism_mode": "exact"}
#: EAS's (the paper: 10 children per episode, 4 wider + 5 deeper actions); episodes: the budget ends it
_EAS = {"episodes": 100_000, "children_per_episode": 4, "n_wider": 2, "n_deeper": 2, "max_width": 256,
        "morphism_mode": "noise"}

#: random samples of the morphism space: k in [1, 9] morphisms from the seed (NASH's 3 steps x 3 morphisms reach
#: as far); n_samples: the budget ends it
_RANDOM_MORPHISM = {"max_morphisms": 9, "n_samples": 1_000_000, "morphisms": _NASH["morphisms"],
                    "morphism_mode": "exact"}


def _nash(seed: int, s: Settings, **extra: Any) -> dict[str, Any]:
    args = {**_NASH, "epochs_seed": s.candidate_seed_epochs, "epochs_neighbour": s.epochs,
            "epochs_final": s.final_epochs, **_task_args(seed, s), **_seed_net_args(s), **extra}
    return _experiment("nash" if not extra else "nash_scratch", seed, s, "nni_nas_ext.nni.tuners.NashTuner", args)


def nash(seed: int, s: Settings) -> dict[str, Any]:
    """NASH hill climbing, children inheriting their parents' weights (ours)."""
    return _nash(seed, s)


def nash_scratch(seed: int, s: Settings) -> dict[str, Any]:
    """NASH without inheritance: every child trained from scratch with the same schedule (the ablation)."""
    return _nash(seed, s, inherit_weights=False)


def _eas_args(seed: int, s: Settings) -> dict[str, Any]:
    return {**_EAS, "epochs": s.epochs, "epochs_start": s.candidate_seed_epochs, "epochs_final": s.final_epochs,
            **_task_args(seed, s), **_seed_net_args(s)}


def eas(seed: int, s: Settings) -> dict[str, Any]:
    """EAS: the REINFORCE meta-controller over Net2Net actions (ours)."""
    return _experiment("eas", seed, s, "nni_nas_ext.nni.tuners.EasTuner", _eas_args(seed, s))


def net2net_random(seed: int, s: Settings) -> dict[str, Any]:
    """EAS's episodes with uniformly random Net2Net actions (EAS's baseline)."""
    return _experiment("net2net_random", seed, s, "nni_nas_ext.nni.tuners.Net2NetRandomTuner", _eas_args(seed, s))


def random_morphism(seed: int, s: Settings) -> dict[str, Any]:
    """Random architectures of the morphism space, each trained from scratch (NASH's own baseline)."""
    args = {**_RANDOM_MORPHISM, "epochs": s.epochs, "epochs_final": s.final_epochs, "max_in_flight": s.concurrency,
            **_task_args(seed, s), **_seed_net_args(s)}
    return _experiment("random_morphism", seed, s, "nni_nas_ext.nni.tuners.RandomMorphismTuner", args)


def nni_network_morphism(seed: int, s: Settings) -> dict[str, Any]:
    """NNI's built-in NetworkMorphism tuner (its algorithm unchanged, made to run on numpy 2)."""
    data = _load_data(s)
    args = {"optimize_mode": "maximize", "task": "cv", "input_width": data.input_shape[1],
            "input_channel": data.input_shape[0], "n_output_node": data.num_classes}
    trial = (f"{venv_python()} -m nni_nas_ext.nni.baselines.network_morphism_trial "
             + " ".join(f"--{k} {shlex.quote(str(v))}" for k, v in _trial_cli_args(seed, s).items()))
    return _experiment("nni_network_morphism", seed, s,
                       "nni_nas_ext.nni.baselines.network_morphism.NetworkMorphismTuner", args, trial_command=trial)


def _nni_strategy(name: str, strategy: str, seed: int, s: Settings, **extra: Any) -> dict[str, Any]:
    args = {"strategy": strategy, "epochs": s.epochs, **extra, **_task_args(seed, s)}
    return _experiment(name, seed, s, "nni_nas_ext.nni.tuners.NniStrategyTuner", args,
                       trial_command=nas_trial_command())


#: RegularizedEvolution's population and tournament, scaled to the tens of trials a CPU budget trains (NNI's
#: defaults, 100 and 25 as in Real et al. 2019, would leave it sampling at random for its first 100 trials)
_REGULARIZED_EVOLUTION = {"population_size": 10, "sample_size": 3}


def nni_regularized_evolution(seed: int, s: Settings) -> dict[str, Any]:
    """NNI's RegularizedEvolution strategy over our comparable ``nni.nas`` CNN space."""
    return _nni_strategy("nni_regularized_evolution", "regularized_evolution", seed, s, **_REGULARIZED_EVOLUTION)


def nni_random(seed: int, s: Settings) -> dict[str, Any]:
    """NNI's Random strategy over our comparable ``nni.nas`` CNN space."""
    return _nni_strategy("nni_random", "random", seed, s)


#: Every contestant: name -> function(seed, settings) -> nnictl experiment config. A literal dict.
CONTESTANTS: dict[str, Callable[[int, Settings], dict[str, Any]]] = {
    "nash": nash,
    "nash_scratch": nash_scratch,
    "eas": eas,
    "net2net_random": net2net_random,
    "random_morphism": random_morphism,
    "nni_network_morphism": nni_network_morphism,
    "nni_regularized_evolution": nni_regularized_evolution,
    "nni_random": nni_random,
}


def _trial_cli_args(seed: int, s: Settings) -> dict[str, Any]:
    """The task settings as command-line options of a script trial (NNI NetworkMorphism's trials)."""
    out = {k: v for k, v in _task_args(seed, s).items()}
    out["epochs"] = s.epochs
    return {k.replace("_", "-"): v for k, v in out.items()}


def contestant_problem(config: Mapping[str, Any]) -> str | None:
    """Why the contestant of ``config`` cannot run here, or None.

    Checks that the tuner class and a script trial's module import, and runs the tuner's own ``classArgs``
    validator when it has one (our bridges do), so a wrong key shows before any experiment starts.
    """
    with warnings.catch_warnings():  # importing nni.nas.nn.pytorch warns about torch classes (harmless)
        warnings.filterwarnings("ignore", message=".*is found to be not a nn.Module", category=RuntimeWarning)
        return _contestant_problem(config)


def _contestant_problem(config: Mapping[str, Any]) -> str | None:
    tuner = config.get("tuner") or {}
    class_name = str(tuner.get("className", ""))
    module_name, _, attr = class_name.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        return f"tuner {class_name} is not available here: module {exc.name!r} not found"
    except (ImportError, AttributeError, ValueError) as exc:
        return f"tuner {class_name} is not available here: {type(exc).__name__}: {exc}"
    words = shlex.split(str(config.get("trialCommand", "")))
    if "-m" in words[:-1]:
        trial_module = words[words.index("-m") + 1]
        try:
            found = importlib.util.find_spec(trial_module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return f"trial module {trial_module} is not available here"
    # the tuner's validator: its `class_args_validator`, else `<Name>ClassArgsValidator` beside `<Name>Tuner`
    validator = getattr(cls, "class_args_validator", None)
    if validator is None and attr.endswith("Tuner"):
        validator = getattr(sys.modules[cls.__module__], attr[: -len("Tuner")] + "ClassArgsValidator", None)
    if isinstance(validator, type):
        try:
            validator().validate_class_args(**dict(tuner.get("classArgs") or {}))
        except ModuleNotFoundError as exc:
            return f"tuner {class_name} is not available here: module {exc.name!r} not found"
        except Exception as exc:  # noqa: BLE001 - any refusal makes the contestant unavailable, with the reason
            return f"tuner {class_name} refuses the harness's classArgs: {type(exc).__name__}: {exc}"
    return None


# --------------------------------------------------------------------------------------------------
# Reading a finished experiment: pure functions over NNI's REST records
# --------------------------------------------------------------------------------------------------

REBUILD_KEYS = ("checkpoint", "sample", "graph")


def _ms(value: Any) -> float | None:
    return float(value) / 1000.0 if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_trials(trial_jobs: Iterable[Mapping[str, Any]], metric_data: Iterable[Mapping[str, Any]],
                 started: float, budget_s: float) -> list[dict[str, Any]]:
    """One record per trial NNI started, from REST ``trial-jobs`` and ``metric-data``.

    ``elapsed_s`` is when the trial's final result arrived (else its end), in seconds since ``started``
    (the moment ``nnictl create`` was called). ``outcome`` is one of:

    * ``ok``: a search result counted in the comparison (valid ``default``, within the budget);
    * ``failed``: the trial reported a failure, NNI marked it failed, or its final metric is unusable;
    * ``after_budget``: its result arrived after the budget;
    * ``final``: the contestant's own final training on train+val (not a search result);
    * ``unfinished``: no final result (running when the budget ended, then killed).
    """
    finals: dict[str, tuple[Any, float | None]] = {}
    for record in metric_data:
        if record.get("type") == "FINAL":
            finals[str(record.get("trialJobId"))] = (decode_metric(record.get("data")), _ms(record.get("timestamp")))
    out = []
    for job in trial_jobs:
        trial_id = str(job.get("trialJobId"))
        metric, reported = finals.get(trial_id, (None, None))
        end = _ms(job.get("endTime"))
        at = reported if reported is not None else end
        start = _ms(job.get("startTime"))
        status = str(job.get("status", "?"))
        record: dict[str, Any] = {
            "trial": trial_id, "sequence": job.get("sequenceId"), "nni_status": status,
            "start_s": None if start is None else round(start - started, 3),
            "elapsed_s": None if at is None else round(at - started, 3),
            "metric": metric, "val_acc": None, "params": None, "rebuild": None, "failed": None,
        }
        if isinstance(metric, Mapping):
            record["val_acc"] = metric.get("default") if _number(metric.get("default")) else None
            record["params"] = metric.get("params") if isinstance(metric.get("params"), int) else None
            record["rebuild"] = next((k for k in REBUILD_KEYS if metric.get(k) is not None), None)
        if isinstance(metric, Mapping) and metric.get("failed"):
            outcome, record["failed"] = "failed", str(metric["failed"])[:500]
        elif metric is None:
            outcome = "failed" if status == "FAILED" else "unfinished"
            if status == "FAILED":
                record["failed"] = "NNI marked the trial FAILED without a final result"
        elif not isinstance(metric, Mapping) or record["val_acc"] is None:
            outcome, record["failed"] = "failed", f"final metric without a numeric 'default': {str(metric)[:200]}"
        elif metric.get("train_on") == "train+val" or metric.get("role") in ("final", "seed_final"):
            outcome = "final"
        elif record["elapsed_s"] is not None and record["elapsed_s"] > budget_s:
            outcome = "after_budget"
        else:
            outcome = "ok"
        record["outcome"] = outcome
        out.append(record)
    out.sort(key=lambda r: (r["elapsed_s"] is None, r["elapsed_s"] or 0.0, str(r["trial"])))
    return out


def best_trial(trials: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The counted trial with the highest validation accuracy; ties go to the one that finished first."""
    pool = [t for t in trials if t.get("outcome") == "ok"]
    return max(pool, key=lambda t: (t["val_acc"], -(t["elapsed_s"] or 0.0)), default=None)


def best_so_far(points: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    """The best-so-far curve of ``(time, accuracy)`` points: one point per improvement, in time order."""
    curve: list[tuple[float, float]] = []
    for t, acc in sorted(points, key=lambda p: p[0]):
        if not curve or acc > curve[-1][1]:
            curve.append((t, acc))
    return curve


def curve_at(curve: Sequence[tuple[float, float]], t: float) -> float:
    """The value of a best-so-far curve at time ``t`` (NaN before its first point)."""
    value = math.nan
    for time_, acc in curve:
        if time_ > t:
            break
        value = acc
    return value


def aggregate(values: Iterable[float | int | None]) -> tuple[float, float, int]:
    """``(mean, sample standard deviation, n)`` of the non-missing values; std 0 for n == 1, NaNs for n == 0."""
    xs = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return mean, std, n


def format_mean_std(values: Iterable[float | int | None], digits: int = 4, *, integer: bool = False) -> str:
    """``mean ± std`` with ``digits`` decimals (just the value for one run, ``–`` for none).

    ``integer``: values are counts or sizes, shown with thousands separators; a mean that is not a whole
    number keeps one decimal.
    """
    mean, std, n = aggregate(values)
    if n == 0:
        return "–"

    whole = abs(mean) >= 100 or all(abs(x - round(x)) < 1e-9 for x in (mean, std))

    def fmt(x: float) -> str:
        if not integer:
            return f"{x:.{digits}f}"
        return f"{round(x):,}" if whole else f"{x:,.1f}"

    return fmt(mean) if n == 1 else f"{fmt(mean)} ± {fmt(std)}"


# --------------------------------------------------------------------------------------------------
# The results file and resume
# --------------------------------------------------------------------------------------------------


def run_key(contestant: str, seed: int) -> str:
    return f"{contestant}-seed{seed}"


def new_results(settings: Settings) -> dict[str, Any]:
    return {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "settings": settings.to_dict(),
            "budget_s": settings.budget_s, "created": _now(), "invocations": [], "runs": {}, "in_progress": None,
            "unavailable": {}}


def load_results(path: Path) -> dict[str, Any] | None:
    """The results file, or None when there is none.

    Raises
    ------
    ValueError
        When the file is not a results file of this harness (named, with the remedy).
    """
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); move it away or give another --out") from exc
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a results file of benchmarks/compare.py (format "
                         f"{data.get('format') if isinstance(data, dict) else None!r}, expected "
                         f"{RESULTS_FORMAT!r}); give another --out")
    return data


def save_results(path: Path, results: Mapping[str, Any]) -> None:
    text = json.dumps(results, indent=1, sort_keys=False, allow_nan=False, default=str)
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")), mode=0o644)


def pending_runs(results: Mapping[str, Any], contestants: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """The (contestant, seed) pairs still to run: those without a finished run in ``results``, in order."""
    runs = results.get("runs") or {}
    return [(c, s) for c in contestants for s in seeds
            if (runs.get(run_key(c, s)) or {}).get("status") != "finished"]


# --------------------------------------------------------------------------------------------------
# The machine and the code
# --------------------------------------------------------------------------------------------------


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # noqa: BLE001
        return None


def environment() -> dict[str, Any]:
    """Versions, machine (CPU model, cores, memory, GPUs) and the git commit with its dirty flag."""
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_gb = round(int(line.split()[1]) / 1024**2, 1)
    except (OSError, ValueError):
        pass
    gpus: list[str] = []
    try:
        import torch

        if torch.cuda.is_available():
            gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001
        pass
    commit, dirty = None, None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        porcelain = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                                   capture_output=True, text=True, timeout=10)
        dirty = bool(porcelain.stdout.strip()) if porcelain.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        affinity = None
    return {
        "python": platform.python_version(), "torch": _version("torch"), "torchvision": _version("torchvision"),
        "nni": _version("nni"), "numpy": _version("numpy"), "nni_nas_ext": _version("nni_nas_ext"),
        "platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count(), "cores_usable": affinity,
        "memory_gb": memory_gb, "gpus": gpus or None, "git_commit": commit, "git_dirty": dirty,
    }


# --------------------------------------------------------------------------------------------------
# The common final training
# --------------------------------------------------------------------------------------------------

_DATA: dict[tuple[Any, ...], Any] = {}


def _load_data(s: Settings) -> Any:
    from nni_nas_ext.trial_code.datasets import DatasetSpec, load_dataset

    spec = DatasetSpec(s.dataset, s.dataset_root, s.val_fraction, s.split_seed, s.limit)
    key = dataclasses.astuple(spec)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_dataset(spec)
    return _DATA[key]


def _device(s: Settings) -> Any:
    from nni_nas_ext.trial_code.training import select_device

    return select_device(s.device)


def _schedule(s: Settings, seed: int) -> Any:
    """The trials' own schedule (TaskConfig.schedule) with ``final_epochs``."""
    from nni_nas_ext.trial_code.trial import TaskConfig

    task = TaskConfig(dataset=s.dataset, dataset_root=s.dataset_root, val_fraction=s.val_fraction,
                      split_seed=s.split_seed, limit=s.limit, lr=s.lr, lr_min=s.lr_min, batch_size=s.batch_size,
                      momentum=s.momentum, weight_decay=s.weight_decay, seed=seed)
    return task.schedule(s.final_epochs, seed=seed)


def rebuild(metric: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int,
            ) -> tuple[Callable[[], Any], Callable[[], Any] | None, str]:
    """Builders of the best trial's architecture: ``(fresh, with inherited weights or None, description)``.

    Raises
    ------
    ValueError
        When the metric has none of the rebuild keys, or the builder it needs is not available.
    """
    from nni_nas_ext.core import build_module

    if metric.get("checkpoint"):
        from nni_nas_ext.trial_code.checkpoints import CheckpointStore

        path = Path(str(metric["checkpoint"]))
        checkpoint = CheckpointStore(path.parent).load(path.stem)
        arch = checkpoint.architecture
        return (lambda: build_module(arch), lambda: build_module(arch, checkpoint.state_dict),
                f"checkpoint {path.name} (architecture {arch.id})")
    if metric.get("sample") is not None:
        from nni_nas_ext.nni.baselines.cnn_space import build_cnn_space_model

        sample = metric["sample"]
        return lambda: build_cnn_space_model(sample, input_shape, num_classes), None, "nni.nas sample"
    if metric.get("graph") is not None:
        from nni_nas_ext.nni.baselines.network_morphism import build_network_morphism_model

        graph = metric["graph"]
        return lambda: build_network_morphism_model(graph), None, "NetworkMorphism graph"
    raise ValueError(f"the best trial's final metric has none of the rebuild keys {list(REBUILD_KEYS)} "
                     f"(keys: {sorted(metric)}): the contestant's trials break the harness's contract")


def _train_and_test(make: Callable[[], Any], s: Settings, seed: int, threads: int | None = None) -> dict[str, Any]:
    import torch

    from nni_nas_ext.trial_code.training import evaluate, train

    threads = threads or s.final_threads
    data = _load_data(s)
    device = _device(s)
    schedule = _schedule(s, seed)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    t = time.time()
    module = make().to(device)
    x = torch.cat([data.train_x, data.val_x]).to(device)
    y = torch.cat([data.train_y, data.val_y]).to(device)
    with warnings.catch_warnings():  # NNI's NetworkMorphism graphs apply dropout2d to flat features
        warnings.filterwarnings("ignore", message="dropout2d: Received a 2-D input", category=UserWarning)
        train(module, x, y, schedule)
        test_acc = evaluate(module, data.test_x.to(device), data.test_y.to(device))
    return {"test_acc": test_acc, "epochs": s.final_epochs, "seconds": round(time.time() - t, 2),
            "params": int(sum(p.numel() for p in module.parameters())), "train_size": len(x),
            "device": str(device), "threads": threads}


def _train_and_test_child(make: Callable[[], Any], s: Settings, seed: int, threads: int, queue: Any) -> None:
    try:
        queue.put(("ok", _train_and_test(make, s, seed, threads)))
    except BaseException as exc:  # noqa: BLE001 -- carried to the parent, which raises it
        queue.put(("error", f"{type(exc).__name__}: {exc}"))


def _answer(proc: Any, queue: Any) -> tuple[str, Any]:
    """A child's result, or why there is none (killed, say, by the OOM killer) rather than waiting forever."""
    import queue as queue_module

    while True:
        try:
            return queue.get(timeout=2)
        except queue_module.Empty:
            if not proc.is_alive():
                try:
                    return queue.get(timeout=2)
                except queue_module.Empty:
                    return "error", f"the process ended with exit code {proc.exitcode} and no result"


def _train_and_test_pair(fresh: Callable[[], Any], inherited: Callable[[], Any], s: Settings,
                         seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both final trainings at once, each in a forked process with half the threads.

    Small CPU networks barely use a second intra-op thread (measured: one core busy with two threads), so two
    single-thread processes finish the pair in about half the wall time. Forked, so the rebuild closures need
    no pickling; CUDA (not fork-safe) or a single thread runs them one after the other."""
    import multiprocessing

    if s.final_threads < 2 or _device(s).type != "cpu" or "fork" not in multiprocessing.get_all_start_methods():
        return _train_and_test(fresh, s, seed), _train_and_test(inherited, s, seed)
    ctx = multiprocessing.get_context("fork")
    threads = s.final_threads // 2
    queues = [ctx.Queue(), ctx.Queue()]
    procs = [ctx.Process(target=_train_and_test_child, args=(make, s, seed, threads, q), daemon=True)
             for make, q in zip((fresh, inherited), queues)]
    for proc in procs:
        proc.start()
    try:
        answers = [_answer(proc, q) for proc, q in zip(procs, queues)]  # before join: a child waits to be read
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
    for what, (status, value) in zip(("from scratch", "from inherited weights"), answers):
        if status != "ok":
            raise RuntimeError(f"the final training {what} failed: {value}")
    return answers[0][1], answers[1][1]


def final_training(best: Mapping[str, Any], s: Settings, seed: int) -> dict[str, Any]:
    """The common final protocol on the best trial: retrained from scratch, and from inherited weights."""
    data = _load_data(s)
    fresh, inherited, what = rebuild(best["metric"], data.input_shape, data.num_classes)
    if inherited is None:
        return {"rebuilt_from": what, "retrained": _train_and_test(fresh, s, seed), "inherited": None}
    retrained, from_weights = _train_and_test_pair(fresh, inherited, s, seed)
    return {"rebuilt_from": what, "retrained": retrained, "inherited": from_weights}


# --------------------------------------------------------------------------------------------------
# One run: experiment, reading, final training
# --------------------------------------------------------------------------------------------------


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


def _snapshot(exp: Any) -> dict[str, Any]:
    snap: dict[str, Any] = {}
    for key, api in (("profile", "experiment"), ("trial_jobs", "trial-jobs"), ("metric_data", "metric-data")):
        try:
            snap[key] = exp.rest(api)
        except (OSError, ValueError) as exc:
            snap[key] = None
            snap.setdefault("errors", []).append(f"{api}: {exc!r}")
    return snap


def _watch(exp: Any, started: float, budget_s: float, label: str, say: Callable[[str], None]) -> tuple[str, dict]:
    """Poll until the experiment ends or the budget is over; the last status and a REST snapshot."""
    deadline = started + budget_s
    last_print = 0.0
    last_done = -1
    unreachable_since: float | None = None
    status = "?"
    snap: dict[str, Any] = {}
    while True:
        status = exp.status()
        now = time.time()
        if status == "UNREACHABLE":
            unreachable_since = unreachable_since or now
            if now - unreachable_since > _UNREACHABLE_LIMIT_S:
                break
        else:
            unreachable_since = None
            snap = _snapshot(exp)
        trials = parse_trials(snap.get("trial_jobs") or [], snap.get("metric_data") or [], started, budget_s)
        done = sum(t["outcome"] == "ok" for t in trials)
        failed = sum(t["outcome"] == "failed" for t in trials)
        running = sum(t["nni_status"] in ("RUNNING", "WAITING") for t in trials)
        best = best_trial(trials)
        if done != last_done or now - last_print >= _PROGRESS_EVERY_S:
            say(f"{label}: {_clock(now - started)} / {_clock(budget_s)}, {status}, {done} trial(s) done, "
                f"{failed} failed, {running} running, best val acc "
                + (f"{best['val_acc']:.4f}" if best else "–"))
            last_print, last_done = now, done
        if status in _ENDED or now >= deadline:
            break
        time.sleep(min(_POLL_S, max(0.2, deadline - now)))
    final = _snapshot(exp)
    if final.get("trial_jobs") is None:  # the manager is gone: keep the last good snapshot
        final = snap
    return status, final


def run_one(contestant: str, seed: int, s: Settings, out: Path, *, port: int, label: str,
            say: Callable[[str], None], keep_checkpoints: bool = False) -> dict[str, Any]:
    """Run one (contestant, seed): its experiment within the budget, then the common final training."""
    config = CONTESTANTS[contestant](seed, s)
    key = run_key(contestant, seed)
    work = out / "work" / key
    if work.exists():
        shutil.rmtree(work)
    record: dict[str, Any] = {"contestant": contestant, "seed": seed, "key": key, "status": "error",
                              "started": _now(), "environment": environment(), "config": config}
    experiment: dict[str, Any] = {"budget_s": s.budget_s}
    record["experiment"] = experiment
    started = time.time()
    experiment["started_unix"] = started
    try:
        with private_experiment(work, config, port=port, threads=s.threads) as exp:
            nni_experiment = exp
            experiment.update(id=exp.exp_id, port=exp.port, folder=str(exp.exp_dir))
            say(f"{label}: experiment {exp.exp_id} on http://127.0.0.1:{exp.port} (folder {exp.exp_dir})")
            try:
                status, snap = _watch(exp, started, s.budget_s, label, say)
            except KeyboardInterrupt:
                say(f"{label}: interrupted: stopping experiment {exp.exp_id} (nnictl stop takes a few seconds)...")
                raise
            experiment["status_at_end"] = status
            experiment["ended_by"] = status if status in _ENDED or status == "UNREACHABLE" else "budget"
            if status in ("ERROR", "UNREACHABLE"):
                experiment["diagnostics"] = exp.diagnostics()[-6000:]
        experiment["stopped_unix"] = time.time()
        experiment["stop_s"] = nni_experiment.stop_seconds
    except NnictlFailed as exc:
        experiment["stopped_unix"] = time.time()
        record["error"] = str(exc)[-6000:]
        record["ended"] = _now()
        say(f"{label}: could not run the experiment: {str(exc).splitlines()[0]}")
        return record
    experiment["wall_s"] = round(experiment["stopped_unix"] - started, 2)
    profile = snap.get("profile") or {}
    experiment["nni_start_unix"] = _ms(profile.get("startTime"))
    experiment["nni_exec_duration_s"] = profile.get("execDuration")
    trials = parse_trials(snap.get("trial_jobs") or [], snap.get("metric_data") or [], started, s.budget_s)
    record["trials"] = trials
    counts = {k: sum(t["outcome"] == k for t in trials) for k in ("ok", "failed", "after_budget", "final", "unfinished")}
    record["counts"] = counts
    best = best_trial(trials)
    record["best"] = None if best is None else {
        "trial": best["trial"], "val_acc": best["val_acc"], "params": best["params"], "elapsed_s": best["elapsed_s"],
        "rebuild": best["rebuild"]}
    say(f"{label}: experiment ended by {experiment['ended_by']} after {_clock(experiment['wall_s'])}; "
        f"{counts['ok']} trial(s) counted, {counts['failed']} failed, {counts['unfinished']} killed at the budget"
        + (f", {counts['after_budget']} after it" if counts["after_budget"] else "")
        + (f"; best val acc {best['val_acc']:.4f} ({best['params']} parameters)" if best else ""))
    if experiment["ended_by"] in ("ERROR", "UNREACHABLE"):
        record["error"] = (f"the experiment ended {experiment['ended_by']}: "
                           + experiment.get("diagnostics", "")[-3000:])
    elif best is None:  # the contestant's result, not a harness failure: the run is finished without a best
        record["note"] = "no trial finished within the budget with a usable result"
        say(f"{label}: {record['note']}")
    else:
        say(f"{label}: final training of the best architecture ({s.final_epochs} epochs on train+val)...")
        try:
            record["final"] = final_training(best, s, seed)
        except Exception as exc:  # noqa: BLE001 - recorded; the next invocation retries the run
            record["error"] = f"final training failed: {type(exc).__name__}: {exc}"
        else:
            final = record["final"]
            say(f"{label}: test acc {final['retrained']['test_acc']:.4f} retrained from scratch"
                + (f", {final['inherited']['test_acc']:.4f} from inherited weights" if final["inherited"] else "")
                + f" (final training {final['retrained']['seconds'] + (final['inherited'] or {}).get('seconds', 0):.0f} s)")
    if "error" not in record:
        record["status"] = "finished"
    record["ended"] = _now()
    if not keep_checkpoints:
        for path in work.rglob("*.pt"):
            path.unlink(missing_ok=True)
    return record


# --------------------------------------------------------------------------------------------------
# Reports: CSV, markdown, plots
# --------------------------------------------------------------------------------------------------

CSV_COLUMNS = ("contestant", "seed", "trial", "sequence", "nni_status", "outcome", "start_s", "elapsed_s", "val_acc",
               "params", "rebuild", "is_best", "failed")


def _ordered_runs(results: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    order = {name: i for i, name in enumerate(CONTESTANTS)}
    runs = list((results.get("runs") or {}).values())
    return sorted(runs, key=lambda r: (order.get(r["contestant"], len(order)), r["contestant"], r["seed"]))


def csv_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per trial of every recorded run (columns :data:`CSV_COLUMNS`)."""
    rows = []
    for run in _ordered_runs(results):
        best = (run.get("best") or {}).get("trial")
        for t in run.get("trials") or []:
            row = {k: t.get(k) for k in CSV_COLUMNS if k in t}
            row.update(contestant=run["contestant"], seed=run["seed"], is_best=int(t["trial"] == best))
            rows.append({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_COLUMNS})
    return rows


def _csv_text(results: Mapping[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(csv_rows(results))
    return buffer.getvalue()


def contestant_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per contestant: its finished runs' figures, aggregated over seeds."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for run in _ordered_runs(results):
        if run.get("status") == "finished":
            by_name.setdefault(run["contestant"], []).append(run)
    rows = []
    for name, runs in by_name.items():
        finals = [r.get("final") or {} for r in runs]
        rows.append({
            "contestant": name,
            "seeds": [r["seed"] for r in runs],
            "best_val_acc": [(r.get("best") or {}).get("val_acc") for r in runs],
            "test_retrained": [(f.get("retrained") or {}).get("test_acc") for f in finals],
            "test_inherited": [(f.get("inherited") or {}).get("test_acc") for f in finals],
            "params": [(r.get("best") or {}).get("params") for r in runs],
            "trained": [(r.get("counts") or {}).get("ok", 0) for r in runs],
            "failures": [(r.get("counts") or {}).get("failed", 0) for r in runs],
            "final_seconds": [((f.get("retrained") or {}).get("seconds") or 0) + ((f.get("inherited") or {}).get("seconds") or 0)
                              if f else None for f in finals],
        })
    return rows


def summary_markdown(results: Mapping[str, Any]) -> str:
    """The comparison as markdown: settings, the per-contestant table, the per-run table, the machine."""
    s = results.get("settings") or {}
    runs = _ordered_runs(results)
    seeds = sorted({r["seed"] for r in runs})
    lines = [f"# NAS comparison on {s.get('dataset')}", ""]
    train_pool = f"the first {s['limit']:,} images of the training pool" if s.get("limit") else "the whole training pool"
    lines += [
        f"Budget: {s.get('minutes')} wall-clock minutes per (contestant, seed), NNI's `maxExperimentDuration`, "
        f"all overheads included; seeds {', '.join(map(str, seeds)) or '–'}; {s.get('concurrency')} trial(s) at a "
        f"time, {s.get('threads')} thread(s) each. Task: {s.get('dataset')}, {train_pool} split "
        f"{1 - float(s.get('val_fraction', 0.2)):.0%}/{float(s.get('val_fraction', 0.2)):.0%} train/validation "
        f"(split seed {s.get('split_seed')}); every candidate: SGD momentum {s.get('momentum')}, one cosine cycle "
        f"lr {s.get('lr')} -> {s.get('lr_min')}, batch {s.get('batch_size')}, {s.get('epochs')} epoch(s) where the "
        f"method has that setting. Final protocol: the best trial by validation accuracy, trained on train+val "
        f"for {s.get('final_epochs')} epochs (same schedule), test set evaluated once.",
        "",
        "| contestant | runs | best val acc | test acc (retrained) | test acc (inherited weights) | params of best "
        "| trials trained | trial failures | final training (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in contestant_rows(results):
        lines.append(
            f"| {row['contestant']} | {len(row['seeds'])} | {format_mean_std(row['best_val_acc'])} | "
            f"{format_mean_std(row['test_retrained'])} | {format_mean_std(row['test_inherited'])} | "
            f"{format_mean_std(row['params'], integer=True)} | {format_mean_std(row['trained'], integer=True)} | "
            f"{format_mean_std(row['failures'], integer=True)} | {format_mean_std(row['final_seconds'], 1)} |")
    lines += ["", "Mean ± sample standard deviation over seeds (a single run: its value). *best val acc*: the "
              "highest validation accuracy among the trials counted within the budget. *test acc (retrained)*: "
              "that architecture trained from scratch by the common final protocol; *(inherited weights)*: the "
              "same schedule continued from the weights its trial left (methods that keep weights only). "
              "*trials trained*: trials whose result arrived within the budget; *trial failures*: trials that "
              "failed or reported no usable result.", ""]
    lines += ["## Runs", "", "| contestant | seed | status | ended by | experiment | trials | failed | killed at "
              "budget | best val acc | found at (min) | params | test acc (retrained) | test acc (inherited) |",
              "| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        b, c, f = r.get("best") or {}, r.get("counts") or {}, r.get("final") or {}
        exp = r.get("experiment") or {}

        def num(x: Any, d: int = 4) -> str:
            return "–" if x is None else (f"{x:,}" if isinstance(x, int) else f"{x:.{d}f}")

        lines.append(
            f"| {r['contestant']} | {r['seed']} | {r.get('status')} | {exp.get('ended_by', '–')} | "
            f"{exp.get('id') or '–'} | {c.get('ok', 0)} | {c.get('failed', 0)} | {c.get('unfinished', 0)} | "
            f"{num(b.get('val_acc'))} | {num(None if b.get('elapsed_s') is None else b['elapsed_s'] / 60, 2)} | "
            f"{num(b.get('params'))} | {num((f.get('retrained') or {}).get('test_acc'))} | "
            f"{num((f.get('inherited') or {}).get('test_acc'))} |")
    notes = [(r["key"], r.get("error") or r.get("note")) for r in runs if r.get("error") or r.get("note")]
    if notes:
        lines += ["", "Runs with a problem:", ""]
        lines += [f"- {key}: {str(text).splitlines()[0][:300]}" for key, text in notes]
    unavailable = results.get("unavailable") or {}
    if unavailable:
        lines += ["", "Contestants asked for but unavailable (not run):", ""]
        lines += [f"- {name}: {reason}" for name, reason in unavailable.items()]
    envs = [r.get("environment") for r in runs if r.get("environment")]
    if envs:
        e = envs[-1]
        commits = sorted({f"{x.get('git_commit', '?')[:10]}{' (dirty)' if x.get('git_dirty') else ''}" for x in envs})
        lines += ["", "## Machine and versions", "",
                  f"- machine: {e.get('cpu')}, {e.get('cores')} cores, {e.get('memory_gb')} GB, "
                  f"GPU: {', '.join(e.get('gpus') or []) or 'none'}; {e.get('platform')}",
                  f"- python {e.get('python')}, torch {e.get('torch')}, torchvision {e.get('torchvision')}, "
                  f"nni {e.get('nni')}, numpy {e.get('numpy')}, nni-nas-ext {e.get('nni_nas_ext')}",
                  f"- git commit(s): {', '.join(commits)}"]
        first = min((r.get("started") or "" for r in runs), default="")
        last = max((r.get("ended") or "" for r in runs), default="")
        lines.append(f"- runs from {first} to {last}")
    return "\n".join(lines) + "\n"


def _colours(names: Sequence[str]) -> dict[str, Any]:
    import matplotlib

    palette = matplotlib.colormaps["tab10"]
    order = [n for n in CONTESTANTS if n in names] + [n for n in names if n not in CONTESTANTS]
    return {name: palette(i % 10) for i, name in enumerate(order)}


def plot_best_vs_time(results: Mapping[str, Any], path: Path) -> None:
    """Best validation accuracy so far against minutes since the experiment's start, per contestant.

    Thin lines: one per seed; thick line: their mean where every seed has a result.
    """
    import matplotlib.pyplot as plt
    import numpy as np

    budget_min = float((results.get("settings") or {}).get("minutes") or 1.0)
    runs = [r for r in _ordered_runs(results) if r.get("trials")]
    colours = _colours([r["contestant"] for r in runs])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    grid = np.linspace(0.0, budget_min, 400)
    for name in colours:
        curves = []
        for run in (r for r in runs if r["contestant"] == name):
            points = [(t["elapsed_s"] / 60, t["val_acc"]) for t in run["trials"] if t["outcome"] == "ok"]
            curve = best_so_far(points)
            if not curve:
                continue
            curves.append(curve)
            xs = [p[0] for p in curve] + [budget_min]
            ys = [p[1] for p in curve] + [curve[-1][1]]
            ax.step(xs, ys, where="post", color=colours[name], alpha=0.35, linewidth=1)
            ax.plot([p[0] for p in curve], [p[1] for p in curve], "o", color=colours[name], alpha=0.5, markersize=3)
        if curves:
            values = np.array([[curve_at(c, t) for t in grid] for c in curves])
            mean = np.where(np.isnan(values).any(axis=0), np.nan, values.mean(axis=0))
            ax.plot(grid, mean, color=colours[name], linewidth=2.2, label=f"{name} (n={len(curves)})")
    ax.set_xlim(0, budget_min)
    ax.set_xlabel("elapsed time since nnictl create (minutes)")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(f"{(results.get('settings') or {}).get('dataset')}: best validation accuracy against time "
                 "(thick: mean over seeds)", fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_acc_vs_params(results: Mapping[str, Any], path: Path) -> None:
    """Validation accuracy against parameters (log scale) of every counted trial; each run's best ringed."""
    import matplotlib.pyplot as plt

    runs = [r for r in _ordered_runs(results) if r.get("trials")]
    colours = _colours([r["contestant"] for r in runs])
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for name in colours:
        xs, ys, bx, by = [], [], [], []
        for run in (r for r in runs if r["contestant"] == name):
            best = (run.get("best") or {}).get("trial")
            for t in run["trials"]:
                if t["outcome"] == "ok" and t.get("params"):
                    xs.append(t["params"])
                    ys.append(t["val_acc"])
                    if t["trial"] == best:
                        bx.append(t["params"])
                        by.append(t["val_acc"])
        if xs:
            ax.scatter(xs, ys, s=18, color=colours[name], alpha=0.6, label=f"{name} ({len(xs)})")
            ax.scatter(bx, by, s=90, facecolors="none", edgecolors=colours[name], linewidths=1.8)
    ax.set_xscale("log")
    ax.set_xlabel("parameters (log scale)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"{(results.get('settings') or {}).get('dataset')}: every trained architecture "
                 "(ringed: each run's best)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(results: Mapping[str, Any], out: Path) -> list[Path]:
    """results.csv, summary.md and the two PNGs from ``results`` (atomically each)."""
    import matplotlib

    matplotlib.use("Agg")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("results.csv", _csv_text(results)), ("summary.md", summary_markdown(results))):
        written.append(atomic_write(out / name, lambda h, t=text: h.write(t.encode("utf-8")), mode=0o644))
    for name, plot in (("best_val_vs_time.png", plot_best_vs_time), ("acc_vs_params.png", plot_acc_vs_params)):
        tmp = out / f".{name}.tmp.png"
        plot(results, tmp)
        os.replace(tmp, out / name)
        written.append(out / name)
    return written


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmarks/compare.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog=f"contestants: {', '.join(CONTESTANTS)}. Re-running the same command resumes: finished runs are "
               "skipped. --report-only rewrites summary.md, results.csv and the plots from results.json.")
    p.add_argument("--contestants", nargs="+", default=["nash", "net2net_random"],
                   help="names, space- or comma-separated")
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--minutes", type=float, default=4.0, help="wall-clock budget per (contestant, seed)")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--dataset-root", default=None)
    p.add_argument("--limit", type=int, default=None, help="use at most this many training-pool images")
    p.add_argument("--epochs", type=int, default=2, help="epochs per candidate")
    p.add_argument("--seed-epochs", type=int, default=None, help="epochs of the growing methods' seed network "
                   "(default: --epochs)")
    p.add_argument("--final-epochs", type=int, default=10, help="epochs of the common final training")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed-widths", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--concurrency", type=int, default=2, help="trials at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per trial")
    p.add_argument("--final-threads", type=int, default=2, help="torch threads of the final trainings")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/results/<dataset>)")
    p.add_argument("--port", type=int, default=0, help="port of each experiment's REST API (0: a free one)")
    p.add_argument("--keep-checkpoints", action="store_true", help="keep the trials' checkpoints in <out>/work")
    p.add_argument("--report-only", action="store_true", help="only regenerate the reports from results.json")
    return p


def _settings_from(args: argparse.Namespace) -> Settings:
    return parse_config(Settings, {
        "dataset": args.dataset, "dataset_root": args.dataset_root, "limit": args.limit, "minutes": args.minutes,
        "epochs": args.epochs, "seed_epochs": args.seed_epochs, "final_epochs": args.final_epochs,
        "batch_size": args.batch_size, "seed_widths": list(args.seed_widths), "concurrency": args.concurrency,
        "threads": args.threads, "final_threads": args.final_threads, "device": args.device,
    })


def _contestant_names(raw: Sequence[str]) -> list[str]:
    names = [n.strip() for item in raw for n in item.split(",") if n.strip()]
    for name in names:
        if name not in CONTESTANTS:
            raise ValueError(unknown_name("contestant", name, list(CONTESTANTS)))
    return list(dict.fromkeys(names))


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: Path = (args.out or ROOT / "benchmarks" / "results" / args.dataset).absolute()
    path = out / "results.json"
    try:
        results = load_results(path)
        if args.report_only:
            if results is None:
                raise ValueError(f"--report-only: there is no {path}; run the comparison first")
            for written in write_report(results, out):
                _say(f"wrote {written}")
            return 0
        settings = _settings_from(args)
        names = _contestant_names(args.contestants)
        if results is None:
            results = new_results(settings)
        else:
            check_settings(results.get("settings") or {}, settings, path)
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    os.environ.setdefault("OMP_NUM_THREADS", str(settings.final_threads))
    # Ctrl-C and kill both end in KeyboardInterrupt, so the running experiment is always stopped (SIGINT too:
    # a shell starts background jobs with it ignored)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    invocation = {"started": _now(), "argv": list(sys.argv if argv is None else argv), "contestants": names,
                  "seeds": list(args.seeds), "environment": environment()}
    results["invocations"].append(invocation)
    interrupted = results.get("in_progress")
    if interrupted and (results["runs"].get(interrupted) or {}).get("status") != "finished":
        _say(f"run {interrupted} was interrupted in an earlier invocation: it is redone from the start")
    results["in_progress"] = None

    unavailable: dict[str, str] = {}
    for name in names:
        try:
            problem = contestant_problem(CONTESTANTS[name](args.seeds[0], settings))
        except Exception as exc:  # noqa: BLE001 - e.g. the dataset is missing
            problem = f"its config cannot be built: {type(exc).__name__}: {exc}"
        if problem:
            unavailable[name] = problem
            _say(f"UNAVAILABLE: {name}: {problem}")
    results["unavailable"] = unavailable
    runnable = [n for n in names if n not in unavailable]
    todo = pending_runs(results, runnable, args.seeds)
    done = [(c, s) for c in runnable for s in args.seeds if (c, s) not in todo]
    for c, s in done:
        _say(f"skipping {run_key(c, s)}: finished in an earlier invocation")
    _say(f"{len(todo)} run(s) to do, {settings.minutes:g} min each (+ final training); results in {out}")
    save_results(path, results)
    try:
        for i, (contestant, seed) in enumerate(todo, 1):
            key = run_key(contestant, seed)
            previous = results["runs"].get(key)
            if previous and previous.get("error"):
                _say(f"{key}: its last attempt failed ({str(previous['error']).splitlines()[0][:200]}); redoing it")
            results["in_progress"] = key
            save_results(path, results)
            label = f"[{i}/{len(todo)}] {contestant} seed {seed}"
            record = run_one(contestant, seed, settings, out, port=args.port, label=label, say=_say,
                             keep_checkpoints=args.keep_checkpoints)
            results["runs"][key] = record
            results["in_progress"] = None
            save_results(path, results)
            write_report(results, out)
    except KeyboardInterrupt:
        invocation["ended"] = _now()
        invocation["interrupted"] = True
        save_results(path, results)
        _say(f"interrupted: the experiment was stopped; {path} keeps the finished runs. Re-run the same "
             f"command to continue ({results.get('in_progress')} will be redone from the start).")
        return 130
    invocation["ended"] = _now()
    save_results(path, results)
    for written in write_report(results, out):
        _say(f"wrote {written}")
    failed = [k for k, r in results["runs"].items() if r.get("status") != "finished"]
    if failed:
        _say(f"{len(failed)} run(s) did not finish: {', '.join(failed)} (re-run the command to retry them)")
    return 1 if failed or unavailable else 0


if __name__ == "__main__":
    sys.exit(main())
