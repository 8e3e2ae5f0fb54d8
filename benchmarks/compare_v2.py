"""Benchmark protocol v2 (issue 15): every contestant gets the same wall-clock budget with its final network inside.

Each (contestant, seed) run has ``--minutes`` of wall-clock time (default 30: two single-thread trials at a
time on the 2-core machine, so 60 CPU-minutes), **everything included**: NNI's start, every trial, and the
final training of the network the run returns. The test set is evaluated once per run, at the end, on that
network (``test_acc``); no contestant's settings may be chosen by looking at it. Outside the budget, the best
searched architecture is also retrained from scratch by the common protocol of ``compare.py``
(``test_acc_retrained``, ``--final-epochs`` on train+val), so both numbers are reported.

How each contestant turns its search into its network, inside the budget:

* ``nash`` (ours: asynchronous, budget-aware NASH, tuner ``NashAsync``, children inheriting weights) and
  ``nash_scratch`` (the same draws, every candidate trained from scratch: the ablation): their own final
  phase inside the experiment (the winner continues on train+val from its weights; the scratch ablation's
  winner is trained from scratch the same way). ``maxExperimentDuration`` = the whole budget.
* ``nni_regularized_evolution`` and ``nni_random`` (NNI's strategies over the CNN-stage space, as in
  ``compare.py``): the experiment gets the budget minus ``--final-window`` minutes; then the harness trains
  their best architecture (by validation accuracy) from scratch on train+val for as many epochs as fit in
  the time left (measured on a few batches first), and tests it.
* ``path_eas`` (ours: Path-level EAS, tuner ``PathLevelEAS``, issue 19) and ``path_eas_random`` (its episodes
  with random decisions, the controller's ablation): the experiment gets the budget minus ``--final-window``
  minutes (their episodes do not know the budget); then the harness **continues the best searched network from
  its inherited weights** on train+val for the epochs that fit, and tests it. *A deviation from the paper*,
  which retrains its final network from scratch: on a CPU budget the weights the search trained are kept, as
  NASH's own final phase keeps them. Their seed is Path-level EAS' backbone with one plain cell per stage of
  the NASH seed's widths (``cell_cnn``: a stem conv, then the three conv cells with max pooling between them).
* ``seed_only`` ("no search"): the NASH seed network trained from scratch on train+val for as many epochs as
  fit in the whole budget.

The harness's own trainings use ``--final-threads`` threads (default 2: the whole machine; small networks
barely use the second thread, which is counted in ``idle_cpu_fraction`` as busy nonetheless).

``idle_cpu_fraction``: the share of the run's slot-seconds (``concurrency`` slots x the run's wall time)
in which no trial ran on a slot; the harness's trainings count as all slots busy.

Outputs in ``--out`` (default ``benchmarks/results/fashion-mnist-60min``): ``results.json`` (``runs``: a list,
one entry per finished or failed run, with ``contestant``, ``seed``, ``budget_cpu_minutes``, ``test_acc``,
``test_acc_retrained``, ``params``, ``trials``, ``idle_cpu_fraction``, the trials and the timeline),
``summary.md`` (mean +- std over seeds and the paired differences, ``nash`` minus each contestant) and two
plots. Re-running the same command resumes: finished runs are skipped. Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare_v2.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import dataclasses
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

from _nnictl import NnictlFailed, private_experiment
from harness import ROOT
from harness.cli import add_run_options, contestant_names, parse_run_args, task_settings
from harness.contestants import REGULARIZED_EVOLUTION, experiment_config, nni_strategy_config, seed_net_args, task_args
from harness.machine import cpu_tag, environment, other_machines, timestamp
from harness.results import run_key
from harness.retrain import final_schedule, load_data, rebuild, train_and_test
from harness.runner import raise_interrupt, say, watch_experiment
from harness.settings import Settings, check_settings
from harness.trials import aggregate, best_trial, format_mean_std, parse_trials
from harness.v2_plots import plot_acc_vs_params, plot_best_val_vs_time

from nni_nas_ext.atomic import atomic_write
from nni_nas_ext.core.config import ConfigError, option, parse_config
from nni_nas_ext.core.errors import unknown_name
from nni_nas_ext.registry import search_of_contestant

RESULTS_FORMAT = "nni-nas-ext-compare-v2"
RESULTS_VERSION = 1
OWN_FINAL = frozenset({"nash", "nash_scratch", "nash_no_final_seed"})
#: contestants whose in-budget final training continues their best network from its inherited weights
INHERITED_FINAL = frozenset({"path_eas", "path_eas_random"})
_PROBE_PARTS = 10  # the probe trains on 1/10 of train+val for one epoch
_SAFETY = 1.1


@dataclass(frozen=True)
class SettingsV2(Settings):
    """:class:`harness.settings.Settings` plus the window the harness keeps for the final training of contestants
    that have no final phase of their own."""

    config_name: ClassVar[str] = "compare-v2"

    final_window_minutes: float = option(
        5.0, minimum=0.5, maximum=10_000.0,
        doc="minutes of the budget kept for the harness's final training of contestants without their own")


#: NASH here: asynchronous, the budget ends it; morphisms as in the paper (deepen, widen, skip add, skip concat)
_NASH_ASYNC = {"n_steps": 10_000, "n_neighbours": 3, "n_morphisms": 3,
               "morphisms": ["deepen", "widen", "add_skip", "concat_skip"], "morphism_mode": "exact"}


def _nash(seed: int, s: SettingsV2, name: str = "nash", **extra: Any) -> dict[str, Any]:
    args = {**_NASH_ASYNC, "epochs_seed": s.candidate_seed_epochs, "epochs_neighbour": s.epochs,
            "epochs_final": s.final_epochs, **task_args(seed, s), **seed_net_args(s), **extra}
    return experiment_config(name, seed, s, search_of_contestant("compare_v2", name).class_name, args)


#: Path-level EAS here: compare.py's EAS batch (4 children per episode); episodes so many that the budget ends
#: them; every other key is the tuner's default (max_edits 2, branches 2 and 3, the five identity-initialised
#: primitives, exactly preserving replication)
_PATH_EAS = {"episodes": 100_000, "children_per_episode": 4}


def _path_eas(seed: int, s: SettingsV2, name: str) -> dict[str, Any]:
    args = {**_PATH_EAS, "epochs": s.epochs, "epochs_start": s.candidate_seed_epochs, "epochs_final": s.final_epochs,
            **task_args(seed, s), "seed_network": "cells", "seed_widths": list(s.seed_widths),
            "seed_cells_per_stage": 1}
    return _search_budget(name, s, experiment_config(name, seed, s, search_of_contestant("compare_v2", name).class_name,
                                                     args))


def _nni(name: str, seed: int, s: SettingsV2, **extra: Any) -> dict[str, Any]:
    return _search_budget(name, s, nni_strategy_config(name, seed, s, script="compare_v2", **extra))


def _search_budget(name: str, s: SettingsV2, config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the experiment's share of the budget: the budget less the final window."""
    config["maxExperimentDuration"] = f"{search_seconds(name, s)}s"
    return config


#: The contestants that are not a search of the registry of searches (``search_of_contestant("compare_v2", ...)``
#: gives the tuner of the others), with the reason.
NOT_SEARCHES: Mapping[str, str] = {
    "seed_only": "no search: the NASH seed trained from scratch on train+val for the whole budget (no experiment)",
}

#: Every contestant of protocol v2: name -> (seed, settings) -> nnictl config, or None (no experiment).
CONTESTANTS: dict[str, Callable[[int, SettingsV2], dict[str, Any] | None]] = {
    "nash": lambda seed, s: _nash(seed, s),
    "nash_scratch": lambda seed, s: _nash(seed, s, "nash_scratch", inherit_weights=False),
    # ablation (issue 15, run after the 15 runs of the table): no reference final training of the seed
    "nash_no_final_seed": lambda seed, s: _nash(seed, s, "nash_no_final_seed", final_seed=False),
    "nni_regularized_evolution": lambda seed, s: _nni("nni_regularized_evolution", seed, s, **REGULARIZED_EVOLUTION),
    "nni_random": lambda seed, s: _nni("nni_random", seed, s),
    "path_eas": lambda seed, s: _path_eas(seed, s, "path_eas"),
    "path_eas_random": lambda seed, s: _path_eas(seed, s, "path_eas_random"),
    "seed_only": lambda seed, s: None,
}


def search_seconds(contestant: str, s: SettingsV2) -> int:
    """The experiment's share of the budget: all of it with an own final phase, else minus the final window."""
    if contestant in OWN_FINAL:
        return s.budget_s
    return max(1, round(s.budget_s - 60 * s.final_window_minutes))


# ---- pure figures --------------------------------------------------------------------------------------


def idle_fraction(intervals: Sequence[tuple[float, float]], run_s: float, slots: int,
                  harness: Sequence[tuple[float, float]] = ()) -> float | None:
    """Share of ``slots x run_s`` slot-seconds with nothing running: ``intervals`` are trials (one slot each),
    ``harness`` the harness's own trainings (all slots); all in seconds since the run's start, clipped to it."""
    if run_s <= 0 or slots <= 0:
        return None
    def clip(a: float, b: float) -> float:
        return max(0.0, min(b, run_s) - max(a, 0.0))
    busy = sum(clip(a, b) for a, b in intervals) + slots * sum(clip(a, b) for a, b in harness)
    return max(0.0, 1.0 - min(busy, slots * run_s) / (slots * run_s))


def paired_differences(runs: Sequence[Mapping[str, Any]], reference: str = "nash",
                       key: str = "test_acc") -> dict[str, dict[str, Any]]:
    """Per contestant: ``reference - contestant`` of ``key`` for every seed both finished, and their mean, std."""
    by = {(r["contestant"], r["seed"]): r.get(key) for r in runs if r.get("status") == "finished"}
    out: dict[str, dict[str, Any]] = {}
    for name in sorted({c for c, _ in by} - {reference}):
        diffs = {seed: by[(reference, seed)] - value for (c, seed), value in by.items()
                 if c == name and value is not None and by.get((reference, seed)) is not None}
        mean, std, n = aggregate(diffs.values())
        out[name] = {"per_seed": diffs, "mean": None if n == 0 else mean, "std": None if n == 0 else std, "n": n}
    return out


def epochs_that_fit(seconds_left: float, per_epoch_s: float, cap: int) -> int:
    """Whole epochs of ``per_epoch_s`` (with a safety margin) that fit in ``seconds_left``; at least 1, at most
    ``cap``."""
    if per_epoch_s <= 0 or not math.isfinite(per_epoch_s):
        return cap
    return int(max(1, min(cap, math.floor(seconds_left / (per_epoch_s * _SAFETY)))))


# ---- the harness's timed final training ---------------------------------------------------------------


def _per_epoch_seconds(make: Callable[[], Any], s: SettingsV2, seed: int) -> float:
    """Seconds of one epoch on train+val: the trials' own ``train`` on a tenth of it for one epoch, times ten
    (the same code path as the final training; a few bare batches overestimated it twice on digits)."""
    import torch

    from nni_nas_ext.trial_code.training import train

    data = load_data(s)
    torch.set_num_threads(s.final_threads)
    torch.manual_seed(seed)
    x = torch.cat([data.train_x, data.val_x])
    y = torch.cat([data.train_y, data.val_y])
    part = max(s.batch_size, len(x) // _PROBE_PARTS)
    module = make()
    t = time.perf_counter()
    train(module, x[:part], y[:part], final_schedule(dataclasses.replace(s, final_epochs=1), seed))
    return (time.perf_counter() - t) * len(x) / part


def timed_final(make: Callable[[], Any], s: SettingsV2, seed: int, deadline: float) -> dict[str, Any]:
    """Train ``make()`` from scratch on train+val for the epochs that fit before ``deadline``; test it once."""
    started = time.time()
    per_epoch = _per_epoch_seconds(make, s, seed)
    epochs = epochs_that_fit(deadline - time.time(), per_epoch, s.final_epochs * 100)
    window = deadline - started
    result = train_and_test(make, dataclasses.replace(s, final_epochs=epochs), seed)
    ended = time.time()
    return {**result, "probe_epoch_s": round(per_epoch, 2), "started_s": started, "ended_s": ended,
            "window_s": round(window, 1), "window_used": round((ended - started) / window, 3) if window > 0 else None}


def final_network(contestant: str, metric: Mapping[str, Any], input_shape: tuple[int, int, int],
                  num_classes: int) -> tuple[Callable[[], Any], str]:
    """The builder of the network the harness trains last for ``contestant`` (one without its own final), and
    what it is: the best trial's architecture from scratch, or with its inherited weights (:data:`INHERITED_FINAL`).

    Raises
    ------
    RuntimeError
        When a contestant of :data:`INHERITED_FINAL` has no checkpoint to continue from.
    """
    fresh, inherited, what = rebuild(metric, input_shape, num_classes)
    if contestant not in INHERITED_FINAL:
        return fresh, what
    if inherited is None:
        raise RuntimeError(f"{contestant}'s best trial left no checkpoint to continue from ({what})")
    return inherited, f"{what}, continued from its inherited weights"


# ---- one run --------------------------------------------------------------------------------------------


def _final_of(trials: Sequence[Mapping[str, Any]], budget_s: float) -> Mapping[str, Any] | None:
    """The contestant's own final training (role ``final``) if it reported a test accuracy within the budget."""
    for t in trials:
        metric = t.get("metric") or {}
        if metric.get("role") == "final" and isinstance(metric.get("test_acc"), (int, float)) \
                and t.get("elapsed_s") is not None and t["elapsed_s"] <= budget_s:
            return t
    return None


def run_one(contestant: str, seed: int, s: SettingsV2, out: Path, *, port: int, label: str,
            say: Callable[[str], None]) -> dict[str, Any]:
    key = run_key(contestant, seed)
    record: dict[str, Any] = {"contestant": contestant, "seed": seed, "key": key, "status": "error",
                              "budget_cpu_minutes": s.minutes * s.concurrency, "started": timestamp(),
                              "environment": environment(), "test_acc": None, "test_acc_retrained": None,
                              "params": None, "trials": 0, "idle_cpu_fraction": None}
    data = load_data(s)
    started = time.time()
    deadline = started + s.budget_s
    trials: list[dict[str, Any]] = []
    harness: list[tuple[float, float]] = []
    best = None
    try:
        config = CONTESTANTS[contestant](seed, s)
        if config is not None:
            work = out / "work" / key
            if work.exists():
                shutil.rmtree(work)
            record["config"] = config
            budget = search_seconds(contestant, s)
            with private_experiment(work, config, port=port, threads=s.threads) as exp:
                say(f"{label}: experiment {exp.exp_id} on http://127.0.0.1:{exp.port}, {budget} s")
                status, snap = watch_experiment(exp, started, budget, label, say)
            record["experiment"] = {"id": exp.exp_id, "status_at_end": status, "search_budget_s": budget}
            trials = parse_trials(snap.get("trial_jobs") or [], snap.get("metric_data") or [], started, budget)
            best = best_trial(trials)
        if contestant in OWN_FINAL:
            final = _final_of(trials, s.budget_s)
            if final is None:
                raise RuntimeError("the search's own final training did not report a test accuracy within the budget")
            record.update(test_acc=final["metric"]["test_acc"], params=final["params"], final_trial=final["trial"])
        else:
            if contestant == "seed_only":
                from nni_nas_ext.core import build_module
                from nni_nas_ext.search_spaces import nash_seed

                arch = nash_seed(data.input_shape, data.num_classes, widths=tuple(s.seed_widths))
                make, what = (lambda: build_module(arch)), f"the NASH seed {arch.id}"
            elif best is None:
                raise RuntimeError("no search trial finished within the budget")
            else:
                make, what = final_network(contestant, best["metric"], data.input_shape, data.num_classes)
            say(f"{label}: final training of {what} inside the budget ({deadline - time.time():.0f} s left)")
            final = timed_final(make, s, seed, deadline)
            harness.append((final["started_s"] - started, final["ended_s"] - started))
            record.update(test_acc=final["test_acc"], params=final["params"], final=final)
        run_s = time.time() - started  # the experiment has ended (or was stopped at its budget) and the final too
        record["run_wall_s"] = round(run_s, 1)
        record["over_budget_s"] = round(max(0.0, run_s - s.budget_s), 1)
        # a trial killed at the end of the search ran until then
        search_end = search_seconds(contestant, s)
        intervals = [(t["start_s"], t["elapsed_s"] if t.get("elapsed_s") is not None else search_end)
                     for t in trials if t.get("start_s") is not None]
        record["idle_cpu_fraction"] = idle_fraction(intervals, min(run_s, s.budget_s), s.concurrency, harness)
        record["trials"] = sum(t["outcome"] in ("ok", "final") for t in trials)
        record["trial_records"] = trials
        record["best_search"] = None if best is None else {k: best[k] for k in ("trial", "val_acc", "params")}
        if best is not None:  # the common protocol, outside the budget
            fresh, _, _ = rebuild(best["metric"], data.input_shape, data.num_classes)
            record["test_acc_retrained"] = train_and_test(fresh, s, seed)["test_acc"]
        elif contestant == "seed_only":
            record["test_acc_retrained"] = record["test_acc"]
        record["status"] = "finished"
        say(f"{label}: test acc {record['test_acc']:.4f} (retrained: {record['test_acc_retrained']}), "
            f"idle {record['idle_cpu_fraction']}")
    except (NnictlFailed, RuntimeError, ValueError, OSError) as exc:
        record["error"] = f"{type(exc).__name__}: {exc}"[-4000:]
        say(f"{label}: failed: {record['error'].splitlines()[0][:300]}")
    record["ended"] = timestamp()
    for path in (out / "work" / key).rglob("*.pt"):
        path.unlink(missing_ok=True)
    return record


# ---- results and report ---------------------------------------------------------------------------------


def load(path: Path, settings: SettingsV2) -> dict[str, Any]:
    if not path.is_file():
        return {"format": RESULTS_FORMAT, "version": RESULTS_VERSION, "settings": settings.to_dict(), "runs": []}
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a protocol-v2 results file; give another --out")
    check_settings(data.get("settings") or {}, settings, path)
    return data


def supersede(results: dict[str, Any], contestants: Sequence[str], why: str,
              known: Sequence[str] | None = None) -> list[str]:
    """Move the finished runs of ``contestants`` from ``runs`` to ``superseded`` (with the reason, the time and
    the commit that supersedes them), so that the harness runs them again; returns their keys. ``known``: the
    benchmark's contestants (default: protocol v2's)."""
    known = list(CONTESTANTS) if known is None else list(known)
    unknown = [c for c in contestants if c not in known]
    if unknown:
        raise ValueError(unknown_name("contestant", unknown[0], known))
    moved = [r for r in results["runs"] if r["contestant"] in contestants]
    results["runs"] = [r for r in results["runs"] if r["contestant"] not in contestants]
    note = {"why": why, "at": timestamp(), "by_commit": environment().get("git_commit")}
    results.setdefault("superseded", []).extend({**r, "superseded": note} for r in moved)
    say(f"superseded {len(moved)} run(s): {', '.join(r['key'] for r in moved) or 'none'} ({why})")
    return [r["key"] for r in moved]


def save(path: Path, results: Mapping[str, Any]) -> None:
    text = json.dumps(results, indent=1, allow_nan=False, default=str)
    atomic_write(path, lambda h: h.write(text.encode("utf-8")), mode=0o644)


def summary_markdown(results: Mapping[str, Any]) -> str:
    s = results["settings"]
    runs = [r for r in results["runs"] if r.get("status") == "finished"]
    names = [n for n in CONTESTANTS if any(r["contestant"] == n for r in runs)]
    lines = [f"# Protocol v2 on {s['dataset']}: {s['minutes']:g} wall-minutes x {s['concurrency']} slots per run",
             "", "Everything inside the budget, the final network included (`test_acc`); `test_acc_retrained`: the "
             f"best searched architecture retrained from scratch for {s['final_epochs']} epochs outside the budget.",
             "", "| contestant | runs | test acc | test acc (retrained) | params | trials | idle CPU |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in names:
        rs = [r for r in runs if r["contestant"] == name]
        lines.append(f"| {name} | {len(rs)} | {format_mean_std([r['test_acc'] for r in rs])} | "
                     f"{format_mean_std([r['test_acc_retrained'] for r in rs])} | "
                     f"{format_mean_std([r['params'] for r in rs], integer=True)} | "
                     f"{format_mean_std([r['trials'] for r in rs], integer=True)} | "
                     f"{format_mean_std([r['idle_cpu_fraction'] for r in rs], 3)} |")
    diffs = paired_differences(runs)
    if diffs:
        lines += ["", "Paired by seed, `nash` minus each contestant (test acc, in points):", "",
                  "| contestant | seeds | mean | std | per seed |", "| --- | ---: | ---: | ---: | --- |"]
        for name, d in diffs.items():
            per = ", ".join(f"{k}: {100 * v:+.2f}" for k, v in sorted(d["per_seed"].items()))
            mean = "–" if d["mean"] is None else f"{100 * d['mean']:+.2f}"
            std = "–" if d["std"] is None else f"{100 * d['std']:.2f}"
            lines.append(f"| {name} | {d['n']} | {mean} | {std} | {per} |")
    old = results.get("superseded") or []
    if old:
        lines += ["", "Superseded runs (kept in `results.json` under `superseded`, not in the tables):", ""] + \
            [f"- {r['key']} (test acc {r.get('test_acc')}, idle {r.get('idle_cpu_fraction', 0) or 0:.3f}): "
             f"{r['superseded']['why']}" for r in old]
    problems = [r for r in results["runs"] if r.get("status") != "finished"]
    if problems:
        lines += ["", "Runs that did not finish:", ""] + [f"- {r['key']}: {r.get('error', '')[:300]}" for r in problems]
    return "\n".join(lines) + "\n"


def write_report(results: Mapping[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    atomic_write(out / "summary.md", lambda h: h.write(summary_markdown(results).encode()), mode=0o644)
    for name, plot in (("best_val_vs_time.png", plot_best_val_vs_time), ("acc_vs_params.png", plot_acc_vs_params)):
        tmp = out / f".{name}.tmp.png"
        plot(results, tmp)
        tmp.replace(out / name)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks/compare_v2.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--contestants", nargs="+", default=list(CONTESTANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--final-window", type=float, default=5.0, help="minutes kept for the harness's final training")
    add_run_options(p, out=ROOT / "benchmarks" / "results" / "fashion-mnist-60min")
    args = parse_run_args(p, argv)
    try:
        settings = parse_config(SettingsV2, {
            **task_settings(args), "final_window_minutes": args.final_window})
        names = contestant_names(args.contestants, list(CONTESTANTS))
        out = args.out.absolute()
        path = out / "results.json"
        results = load(path, settings)
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if args.supersede:
        supersede(results, args.supersede, args.why.strip())
        save(path, results)
    if not args.report_only:
        signal.signal(signal.SIGTERM, raise_interrupt)
        done = {(r["contestant"], r["seed"]) for r in results["runs"] if r.get("status") == "finished"}
        todo = [(c, s) for s in args.seeds for c in names if (c, s) not in done]
        cpu = environment()["cpu"]
        others = other_machines(results, cpu) if todo else []
        if others:
            print(f"error: {path} holds runs measured on {', '.join(others)}, and this machine "
                  f"is {cpu}: a wall-clock budget buys another amount of training there, so the runs would not be "
                  f"comparable in one table. Give this machine its own folder (--out, e.g. "
                  f"{out.parent / (out.name + '-' + cpu_tag(cpu))}), or --report-only", file=sys.stderr)
            return 2
        say(f"{len(todo)} run(s) to do, {settings.minutes:g} min each; results in {out}")
        for i, (contestant, seed) in enumerate(todo, 1):
            record = run_one(contestant, seed, settings, out, port=args.port,
                             label=f"[{i}/{len(todo)}] {contestant} seed {seed}", say=say)
            results["runs"] = [r for r in results["runs"] if (r["contestant"], r["seed"]) != (contestant, seed)]
            results["runs"].append(record)
            save(path, results)
            write_report(results, out)
    write_report(results, out)
    say(f"wrote {path}, {out / 'summary.md'} and the plots")
    return 0 if all(r.get("status") == "finished" for r in results["runs"]) else 1


if __name__ == "__main__":
    sys.exit(main())
