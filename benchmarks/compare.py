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

This file is the command line; the harness is the package ``benchmarks/harness/`` (settings, contestants,
trial parsing, the results file, the final training, the ``nnictl`` runner, the reports).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # `python benchmarks/compare.py` and `import compare` from the tests alike
    sys.path.insert(0, str(HERE))

from harness import ROOT  # noqa: E402
from harness.contestants import CONTESTANTS, contestant_problem  # noqa: E402
from harness.machine import environment, timestamp  # noqa: E402
from harness.report import write_report  # noqa: E402
from harness.results import load_results, new_results, pending_runs, run_key, save_results  # noqa: E402
from harness.runner import raise_interrupt, run_one, say  # noqa: E402
from harness.settings import Settings, check_settings  # noqa: E402

from nni_nas_ext.core.config import ConfigError, parse_config  # noqa: E402
from nni_nas_ext.core.errors import unknown_name  # noqa: E402

__all__ = ["main"]


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
                say(f"wrote {written}")
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
    signal.signal(signal.SIGTERM, raise_interrupt)
    invocation = {"started": timestamp(), "argv": list(sys.argv if argv is None else argv), "contestants": names,
                  "seeds": list(args.seeds), "environment": environment()}
    results["invocations"].append(invocation)
    interrupted = results.get("in_progress")
    if interrupted and (results["runs"].get(interrupted) or {}).get("status") != "finished":
        say(f"run {interrupted} was interrupted in an earlier invocation: it is redone from the start")
    results["in_progress"] = None

    unavailable: dict[str, str] = {}
    for name in names:
        try:
            problem = contestant_problem(CONTESTANTS[name](args.seeds[0], settings))
        except Exception as exc:  # noqa: BLE001 - e.g. the dataset is missing
            problem = f"its config cannot be built: {type(exc).__name__}: {exc}"
        if problem:
            unavailable[name] = problem
            say(f"UNAVAILABLE: {name}: {problem}")
    results["unavailable"] = unavailable
    runnable = [n for n in names if n not in unavailable]
    todo = pending_runs(results, runnable, args.seeds)
    done = [(c, s) for c in runnable for s in args.seeds if (c, s) not in todo]
    for c, s in done:
        say(f"skipping {run_key(c, s)}: finished in an earlier invocation")
    say(f"{len(todo)} run(s) to do, {settings.minutes:g} min each (+ final training); results in {out}")
    save_results(path, results)
    try:
        for i, (contestant, seed) in enumerate(todo, 1):
            key = run_key(contestant, seed)
            previous = results["runs"].get(key)
            if previous and previous.get("error"):
                say(f"{key}: its last attempt failed ({str(previous['error']).splitlines()[0][:200]}); redoing it")
            results["in_progress"] = key
            save_results(path, results)
            label = f"[{i}/{len(todo)}] {contestant} seed {seed}"
            record = run_one(contestant, seed, settings, out, port=args.port, label=label, say=say,
                             keep_checkpoints=args.keep_checkpoints)
            results["runs"][key] = record
            results["in_progress"] = None
            save_results(path, results)
            write_report(results, out)
    except KeyboardInterrupt:
        invocation["ended"] = timestamp()
        invocation["interrupted"] = True
        save_results(path, results)
        say(f"interrupted: the experiment was stopped; {path} keeps the finished runs. Re-run the same "
            f"command to continue ({results.get('in_progress')} will be redone from the start).")
        return 130
    invocation["ended"] = timestamp()
    save_results(path, results)
    for written in write_report(results, out):
        say(f"wrote {written}")
    failed = [k for k, r in results["runs"].items() if r.get("status") != "finished"]
    if failed:
        say(f"{len(failed)} run(s) did not finish: {', '.join(failed)} (re-run the command to retry them)")
    return 1 if failed or unavailable else 0


if __name__ == "__main__":
    sys.exit(main())
