"""Multi-objective benchmark (issue 16): the (test error, parameters) front of each run at 30 CPU-minutes.

The protocol, fixed before any run (``docs/benchmark-pareto.md`` says the same):

* **Task and budget: protocol v2's** (``compare_v2.py``): all 60,000 Fashion-MNIST training images, 20 % held out
  for validation by a fixed split (split seed 0), the same for every contestant. Every (contestant, seed) run is
  one real ``nnictl`` experiment with two single-thread trials at a time for ``--minutes`` (default 15) of wall
  clock, i.e. **30 CPU-minutes** of the 2-core machine, everything included (NNI's start, proposals, every trial).
  Seeds 0, 1, 2.
* **Contestants** (the registry's searches, script ``compare_pareto``):

  - ``lemonade``: LEMONADE (tuner ``Lemonade``), objectives validation error and parameters, the search settings of
    ``examples/lemonade-fashion-mnist.yml`` (the paper's seven operators, one per child, 64 children drawn per one
    trained), ``epochs`` per child, ``seed_epochs`` for the initial population; the budget ends it;
  - ``nash``: protocol v2's asynchronous NASH (tuner ``NashAsync``) unchanged, its own final phase included
    (those trainings on train+val yield no point here: ``final_phase_cpu_fraction`` says what they took);
  - ``nni_regularized_evolution_size``: NNI's ``RegularizedEvolution`` (population 10, tournament 3, as in v2) over
    the CNN-stage space, maximising the MnasNet-style reward ``val_acc - w * log10(params)`` with
    **w = 0.02** (:data:`REWARD_SIZE_WEIGHT`): a tenfold larger network must gain 2 accuracy points to be worth as
    much. Why 0.02: MnasNet (Tan et al., CVPR 2019, sec. 3) sets its weight so that two models on the task's
    observed trade-off get equal rewards (there: twice the latency for +5 % accuracy); the trade-off this project
    measured on Fashion-MNIST before this benchmark (README: 8-minute protocol about 1.3 points per tenfold
    parameters, protocol v2 about 3) puts 2 points per tenfold in the middle. Its trials keep their weights
    (``keep_weights``); the experiment gets the whole budget (no final training here).

* **Points**: every network a run trained within its budget (a search trial whose final result arrived before the
  end) is a point (validation error, parameters). Trainings on train+val (NASH's final phase, LEMONADE's tests of
  its own front) have no validation error and are no points.
* **The front** of a run: the points no other point dominates in validation error and parameters
  (``core.pareto.pareto_front``). The test set plays no part in it.
* **Test**: after the run, outside the budget, each front network's test accuracy is measured once from the
  weights its trial saved, by the same function for every contestant (:func:`trained_network`, then the trials'
  ``evaluate`` on the 10,000 test images).
* **Hypervolume** of the front's (test error, log10 parameters), normalised with fixed bounds: error in [0, 1],
  log10 parameters in [3, 7] (values outside are clipped to them), reference point 1.01 per axis
  (``core.pareto.normalised_hypervolume``); larger is better.
* **Best test accuracy** among the front's networks with at most 25k, 100k and 500k parameters (None when the
  front has none there).
* **Report**: mean +- std over seeds per contestant, the paired differences ``lemonade`` minus each contestant
  (by seed), the fronts of all runs (``fronts.png``: test error against parameters, log x) and the hypervolume per
  contestant (``hypervolume.png``).

Outputs in ``--out`` (default ``benchmarks/results/fashion-mnist-pareto``): ``results.json`` (``runs``: one entry
per finished or failed run, committed as each ends; every point and the front with its test accuracies),
``summary.md`` and the two plots. Re-running the same command resumes (finished runs are skipped); ``--supersede``
moves a contestant's runs aside with ``--why``. Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare_pareto.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import compare_v2 as v2
import pareto_report
from _nnictl import NnictlFailed, private_experiment
from harness import ROOT
from harness.cli import add_run_options, contestant_names, parse_run_args, task_settings
from harness.contestants import (
    REGULARIZED_EVOLUTION, experiment_config, nni_strategy_config, seed_net_args, task_args,
)
from harness.machine import environment, timestamp
from harness.results import run_key
from harness.retrain import load_data
from harness.runner import raise_interrupt, say, watch_experiment
from harness.settings import Settings, check_settings
from harness.trials import parse_trials

from nni_nas_ext.core.config import ConfigError, parse_config
from nni_nas_ext.core.pareto import HV_REFERENCE, normalised_hypervolume, pareto_front
from nni_nas_ext.registry import search_of_contestant

RESULTS_FORMAT = "nni-nas-ext-compare-pareto"
RESULTS_VERSION = 1
REFERENCE = "lemonade"
#: the size-penalised reward's weight per tenfold of parameters (see the module docstring for why)
REWARD_SIZE_WEIGHT = 0.02
ERROR_BOUNDS = (0.0, 1.0)
LOG10_PARAMS_BOUNDS = (3.0, 7.0)
SIZE_BINS = {"25k": 25_000, "100k": 100_000, "500k": 500_000}
#: everything fixed before any run besides the settings; a results file made otherwise is refused
PROTOCOL = {"error_bounds": list(ERROR_BOUNDS), "log10_params_bounds": list(LOG10_PARAMS_BOUNDS),
            "hv_reference": HV_REFERENCE, "size_bins": dict(SIZE_BINS), "reward_size_weight": REWARD_SIZE_WEIGHT,
            "front_on": "validation error and parameters", "reference": REFERENCE}


@dataclass(frozen=True)
class SettingsPareto(Settings):
    """:class:`harness.settings.Settings` of this benchmark (its own results files)."""

    config_name: ClassVar[str] = "compare-pareto"


#: LEMONADE's search settings (examples/lemonade-fashion-mnist.yml); the time budget ends it
LEMONADE = {"objectives": ["params"], "n_initial": 2, "n_generated": 64, "n_morphisms": 1,
            "morphisms": ["deepen", "widen", "add_skip", "concat_skip", "remove_layer", "shrink", "remove_skip"],
            "morphism_mode": "exact", "epochs_final": 0, "final_front_max": 8, "max_children": None}


def _lemonade(seed: int, s: Settings) -> dict[str, Any]:
    args = {**LEMONADE, "epochs_seed": s.candidate_seed_epochs, "epochs_child": s.epochs, **task_args(seed, s),
            **seed_net_args(s)}
    return experiment_config("lemonade", seed, s, search_of_contestant("compare_pareto", "lemonade").class_name, args)


def _nni_size(seed: int, s: Settings) -> dict[str, Any]:
    return nni_strategy_config("nni_regularized_evolution_size", seed, s, script="compare_pareto",
                               **REGULARIZED_EVOLUTION, reward_size_weight=REWARD_SIZE_WEIGHT, keep_weights=True)


#: The contestants that are not a search of the registry of searches, with the reason: none.
NOT_SEARCHES: Mapping[str, str] = {}

#: Every contestant: name -> (seed, settings) -> nnictl config (each gets the whole budget).
CONTESTANTS: dict[str, Callable[[int, Settings], dict[str, Any]]] = {
    "lemonade": _lemonade,
    "nash": v2.CONTESTANTS["nash"],  # protocol v2's NASH, unchanged
    "nni_regularized_evolution_size": _nni_size,
}


# ---- pure figures --------------------------------------------------------------------------------------


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def network_points(trials: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Every network a run trained within its budget (trials of outcome ``ok`` with a validation accuracy and
    parameters), with what finds its weights. The validation accuracy is the result's ``val_acc`` when it has
    one (a size-penalised ``default``), else its ``default``."""
    points = []
    for t in trials:
        metric = t.get("metric")
        if t.get("outcome") != "ok" or not isinstance(metric, Mapping):
            continue
        acc = metric["val_acc"] if _number(metric.get("val_acc")) else metric.get("default")
        params = metric.get("params")
        if not _number(acc) or isinstance(params, bool) or not isinstance(params, int) or params < 1:
            continue
        points.append({"trial": t.get("trial"), "elapsed_s": t.get("elapsed_s"), "val_acc": float(acc),
                       "params": params, **{k: metric.get(k) for k in ("candidate", "role", "checkpoint", "weights",
                                                                      "sample")}})
    return points


def validation_front(points: Sequence[Mapping[str, Any]]) -> list[int]:
    """Indices of the points on the front of (validation error, parameters); the test set plays no part."""
    if not points:
        return []
    return [int(i) for i in pareto_front([[1.0 - p["val_acc"], float(p["params"])] for p in points])]


def front_hypervolume(front: Sequence[Mapping[str, Any]]) -> float:
    """Normalised hypervolume of the front's (test error, log10 parameters), bounds fixed (module docstring)."""
    rows = [[min(max(1.0 - p["test_acc"], ERROR_BOUNDS[0]), ERROR_BOUNDS[1]),
             min(max(math.log10(p["params"]), LOG10_PARAMS_BOUNDS[0]), LOG10_PARAMS_BOUNDS[1])]
            for p in front if p.get("test_acc") is not None]
    if not rows:
        return 0.0
    return normalised_hypervolume(rows, [ERROR_BOUNDS[0], LOG10_PARAMS_BOUNDS[0]],
                                  [ERROR_BOUNDS[1], LOG10_PARAMS_BOUNDS[1]])


def best_test_at(front: Sequence[Mapping[str, Any]], max_params: int) -> float | None:
    """The best test accuracy among the front's networks with at most ``max_params`` parameters, or None."""
    accs = [p["test_acc"] for p in front if p["params"] <= max_params and p.get("test_acc") is not None]
    return max(accs) if accs else None


def run_figures(front: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A run's reported figures: ``hypervolume`` and ``best_test_acc_<bin>`` for each size bin."""
    return {"hypervolume": front_hypervolume(front),
            **{f"best_test_acc_{label}": best_test_at(front, limit) for label, limit in SIZE_BINS.items()}}


def slot_fraction(intervals: Sequence[tuple[float, float]], run_s: float, slots: int) -> float | None:
    """Share of ``slots x run_s`` slot-seconds that ``intervals`` (one slot each) took, clipped to the run."""
    idle = v2.idle_fraction(intervals, run_s, slots)
    return None if idle is None else 1.0 - idle


# ---- the test of a front network (outside the budget, the same for everyone) ----------------------------


def trained_network(point: Mapping[str, Any], input_shape: tuple[int, int, int], num_classes: int) -> Any:
    """The module a point's trial trained, with the weights it saved (read with ``weights_only=True``).

    Raises
    ------
    ValueError
        When the trial's result names no weights (the contestant's trials break the protocol).
    """
    from nni_nas_ext.core import build_module
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore

    if point.get("checkpoint"):
        path = Path(str(point["checkpoint"]))
        checkpoint = CheckpointStore(path.parent).load(path.stem)
        return build_module(checkpoint.architecture, checkpoint.state_dict)
    if point.get("weights") and point.get("sample") is not None:
        from nni_nas_ext.search_spaces.cnn_space import build_cnn_space_model

        path = Path(str(point["weights"]))
        module = build_cnn_space_model(dict(point["sample"]), input_shape, num_classes)
        module.load_state_dict(CheckpointStore(path.parent).load_weights(path.stem).state_dict)
        return module
    raise ValueError(f"trial {point.get('trial')} left no weights to test (neither 'checkpoint' nor 'weights' with "
                     "'sample' in its result): its contestant must keep them (NNI's strategies: keep_weights)")


def measure_tests(front: Sequence[dict[str, Any]], s: Settings) -> None:
    """Each front network's test accuracy, measured once (``test_acc`` set on each point)."""
    import torch

    from nni_nas_ext.trial_code.training import evaluate

    data = load_data(s)
    torch.set_num_threads(s.final_threads)
    for point in front:
        module = trained_network(point, tuple(data.input_shape), data.num_classes)
        point["test_acc"] = evaluate(module, data.test_x, data.test_y)


# ---- one run --------------------------------------------------------------------------------------------


def run_one(contestant: str, seed: int, s: Settings, out: Path, *, port: int, label: str,
            say: Callable[[str], None]) -> dict[str, Any]:
    key = run_key(contestant, seed)
    record: dict[str, Any] = {"contestant": contestant, "seed": seed, "key": key, "status": "error",
                              "budget_cpu_minutes": s.minutes * s.concurrency, "started": timestamp(),
                              "environment": environment(), "hypervolume": None, "networks": 0, "front": [],
                              "idle_cpu_fraction": None}
    work = out / "work" / key
    try:
        config = CONTESTANTS[contestant](seed, s)
        record["config"] = config
        if work.exists():
            shutil.rmtree(work)
        started = time.time()
        with private_experiment(work, config, port=port, threads=s.threads) as exp:
            say(f"{label}: experiment {exp.exp_id} on http://127.0.0.1:{exp.port}, {s.budget_s} s")
            status, snap = watch_experiment(exp, started, s.budget_s, label, say)
        record["experiment"] = {"id": exp.exp_id, "status_at_end": status, "wall_s": round(time.time() - started, 1)}
        trials = parse_trials(snap.get("trial_jobs") or [], snap.get("metric_data") or [], started, s.budget_s)
        points = network_points(trials)
        if not points:
            raise RuntimeError("no network was trained within the budget")
        on_front = set(validation_front(points))
        front = [points[i] for i in sorted(on_front)]
        say(f"{label}: {len(points)} networks trained, {len(front)} on the validation front: testing them once")
        tested_at = time.time()
        measure_tests(front, s)
        record["test_seconds"] = round(time.time() - tested_at, 1)
        record.update(run_figures(front))
        record.update(networks=len(points), front=front, trial_records=trials,
                      points=[{**p, "on_front": i in on_front} for i, p in enumerate(points)])
        spans = [(t["outcome"], (t["start_s"], t["elapsed_s"] if t.get("elapsed_s") is not None else s.budget_s))
                 for t in trials if t.get("start_s") is not None]  # a trial killed at the end ran until then
        record["idle_cpu_fraction"] = v2.idle_fraction([span for _, span in spans], s.budget_s, s.concurrency)
        record["final_phase_cpu_fraction"] = slot_fraction([span for outcome, span in spans if outcome == "final"],
                                                           s.budget_s, s.concurrency)
        record["status"] = "finished"
        say(f"{label}: hypervolume {record['hypervolume']:.4f}; best test acc "
            + ", ".join(f"<= {b}: {record[f'best_test_acc_{b}']}" for b in SIZE_BINS))
    except (NnictlFailed, RuntimeError, ValueError, OSError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[-4000:]
        say(f"{label}: failed: {record['error'].splitlines()[0][:300]}")
    record["ended"] = timestamp()
    for path in work.rglob("*.pt"):
        path.unlink(missing_ok=True)
    return record


# ---- results and report ---------------------------------------------------------------------------------


def load(path: Path, settings: Settings) -> dict[str, Any]:
    """The results file (a new one when there is none); refuses another benchmark's, settings or protocol."""
    if not path.is_file():
        return {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "settings": settings.to_dict(),
                "protocol": PROTOCOL, "runs": []}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a results file of compare_pareto.py; give another --out")
    check_settings(data.get("settings") or {}, settings, path)
    if data.get("protocol") != json.loads(json.dumps(PROTOCOL)):
        raise ValueError(f"{path} was made with another protocol ({data.get('protocol')}, now {PROTOCOL}): "
                         "runs of two protocols cannot share a file; give another --out")
    return data


def pending(results: Mapping[str, Any], contestants: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """The (contestant, seed) runs still to do, seed by seed: those without a finished run."""
    done = {(r["contestant"], r["seed"]) for r in results["runs"] if r.get("status") == "finished"}
    return [(c, seed) for seed in seeds for c in contestants if (c, seed) not in done]


def summary_markdown(results: Mapping[str, Any]) -> str:
    """``summary.md`` (:func:`pareto_report.summary_markdown`, contestants in this benchmark's order)."""
    return pareto_report.summary_markdown(results, list(CONTESTANTS))


def write_report(results: Mapping[str, Any], out: Path) -> None:
    """``summary.md``, ``fronts.png`` and ``hypervolume.png`` in ``out``."""
    pareto_report.write_report(results, out, list(CONTESTANTS))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/compare_pareto.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--contestants", nargs="+", default=list(CONTESTANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=15.0, help="wall-clock minutes per run (x 2 slots: CPU-minutes)")
    add_run_options(p, out=ROOT / "benchmarks" / "results" / "fashion-mnist-pareto",
                    final_epochs_help="NASH's own final phase (as in protocol v2)")
    args = parse_run_args(p, argv)
    try:
        settings = parse_config(SettingsPareto, task_settings(args))
        names = contestant_names(args.contestants, list(CONTESTANTS))
        out = args.out.absolute()
        path = out / "results.json"
        results = load(path, settings)
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if args.supersede:
        v2.supersede(results, args.supersede, args.why.strip(), known=list(CONTESTANTS))
        v2.save(path, results)
    if not args.report_only:
        previous = signal.signal(signal.SIGTERM, raise_interrupt)
        try:
            todo = pending(results, names, args.seeds)
            say(f"{len(todo)} run(s) to do, {settings.minutes:g} min each; results in {out}")
            for i, (contestant, seed) in enumerate(todo, 1):
                record = run_one(contestant, seed, settings, out, port=args.port,
                                 label=f"[{i}/{len(todo)}] {contestant} seed {seed}", say=say)
                results["runs"] = [r for r in results["runs"] if (r["contestant"], r["seed"]) != (contestant, seed)]
                results["runs"].append(record)
                v2.save(path, results)
                write_report(results, out)
        finally:
            signal.signal(signal.SIGTERM, previous)
    write_report(results, out)
    say(f"wrote {path}, {out / 'summary.md'} and the plots")
    return 0 if all(r.get("status") == "finished" for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
