"""N2N learning's benchmark (issue 18): compress a NASH winner; N2N's policy against random actions at one budget.

The protocol, fixed before any run:

* **Per seed** (default 0, 1, 2), in-process through NNI's sequential engine (one trial at a time, one torch thread;
  no nnictl, so every CPU-second is a trial's or the search's own):

  1. **the teacher**: a NASH search with the settings of ``examples/fashion-mnist.yml`` (seed = the seed); the
     teacher is its winner's *search* checkpoint (trained on the training split only, never on the validation
     images the rewards are measured on);
  2. **N2N** and **N2NRandom**, each with the settings of ``examples/n2n-fashion-mnist.yml`` and that teacher
     (``teacher: <checkpoint>``): the same episodes, students and epochs; the teacher measured once as it is.

* **Figures per run**: the mean reward of each episode; the best student's parameters and test accuracy (after its
  final training on train+val, tested once) against the teacher's (tested once as it is); the compression (the
  teacher's parameters / the student's) and the accuracy loss in points; the run's CPU-minutes (process CPU time).
* **The criterion of the issue**: a student with >= 4x fewer parameters than its teacher at <= 1.0 point test
  accuracy loss.
* **Report**: ``summary.md`` (per contestant mean +- std over seeds, per run, whether the criterion holds, the
  budget in CPU-minutes) and ``rewards.png`` (mean reward per episode, mean +- std over seeds, N2N against
  N2NRandom); ``results.json`` holds every run and is written as each ends, so re-running resumes.

Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare_n2n.py --seeds 0 1 2
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/compare_n2n.py --seeds 0 1 2 --jobs 2   # two seeds at a time
    .venv/bin/python benchmarks/compare_n2n.py --quick --out /tmp/n2n-smoke      # digits, tiny budgets: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from harness.curves import last_third, paired_by_seed, plot_mean_std_curves
from harness.trials import format_mean_std
from harness.locks import locked

ROOT = Path(__file__).resolve().parents[1]
CONTESTANTS = ("n2n", "n2n_random")
CRITERION = {"min_compression": 4.0, "max_loss_points": 1.0}
#: the --quick settings: digits, tiny budgets (a smoke test of the script, not a measurement)
QUICK_TEACHER = {"dataset": "digits", "limit": None, "val_fraction": 0.2, "batch_size": 64, "n_steps": 1,
                 "n_neighbours": 2, "n_morphisms": 1, "epochs_seed": 4, "epochs_neighbour": 1, "epochs_final": 0,
                 "seed_widths": [8, 16, 16]}
QUICK_N2N = {"dataset": "digits", "limit": None, "val_fraction": 0.2, "batch_size": 64, "episodes": 2,
             "students_per_episode": 2, "epochs_student": 1, "epochs_final": 1}


def class_args(config: Path) -> dict[str, Any]:
    """The ``tuner.classArgs`` of an example config."""
    return dict(yaml.safe_load(config.read_text())["tuner"]["classArgs"])


def run_search(name: str, settings: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
    """Run one search in-process (NNI's sequential engine); its summary and the CPU-seconds it took."""
    from nni_nas_ext.nni.search import run_in_process

    cpu = time.process_time()
    summary, _ = run_in_process(name, dict(settings))
    return summary, time.process_time() - cpu


def teacher_checkpoint(summary: Mapping[str, Any], store: Path) -> Path:
    """The NASH winner's search checkpoint (trained on the training split only)."""
    winner = summary.get("winner") or {}
    if summary.get("status") != "finished" or not winner.get("candidate"):
        raise RuntimeError(f"the teacher's NASH search did not finish with a winner: {summary.get('reason')}")
    path = store / f"{winner['candidate']}.pt"
    if not path.is_file():
        raise RuntimeError(f"the NASH winner's checkpoint {path} is missing")
    return path


def run_figures(summary: Mapping[str, Any], cpu_s: float) -> dict[str, Any]:
    """What a run of N2N or N2NRandom is judged by (module docstring)."""
    teacher, student = summary["seed"], summary["winner"] or {}
    figures: dict[str, Any] = {
        "status": summary["status"], "reason": summary.get("reason"), "mean_rewards": summary["mean_rewards"],
        "teacher_params": teacher["params"], "teacher_test_acc": teacher["test_acc"],
        "student": student.get("candidate"), "student_params": student.get("params"),
        "student_test_acc": student.get("test_acc"), "lineage": student.get("lineage"),
        "cpu_minutes": round(cpu_s / 60.0, 2)}
    if figures["student_params"] and figures["student_test_acc"] is not None and teacher["test_acc"] is not None:
        figures["compression"] = teacher["params"] / figures["student_params"]
        figures["loss_points"] = 100.0 * (teacher["test_acc"] - figures["student_test_acc"])
        figures["criterion"] = (figures["compression"] >= CRITERION["min_compression"]
                                and figures["loss_points"] <= CRITERION["max_loss_points"])
    return figures


def run_seed(seed: int, out: Path, results: dict[str, Any], *, quick: bool, save: Any) -> None:
    """The teacher and every contestant of one seed (those already in ``results`` are skipped)."""
    folder = out / "work" / f"seed{seed}"  # the searches' checkpoint stores (not committed: benchmarks/results/*/work/)
    nash_store = folder / "nash"
    teacher = results["teachers"].get(str(seed))
    pending = [name for name in CONTESTANTS if f"{name}-seed{seed}" not in results["runs"]]
    if teacher is not None and pending and not Path(teacher["checkpoint"]).is_file():
        print(f"seed {seed}: the teacher's checkpoint {teacher['checkpoint']} is gone (a fresh checkout?); its NASH "
              "search runs again", flush=True)
        teacher = None
    if teacher is None:
        settings = {**class_args(ROOT / "examples" / "fashion-mnist.yml"), **(QUICK_TEACHER if quick else {}),
                    "seed": seed, "checkpoint_dir": str(nash_store)}
        summary, cpu_s = run_search("nash", settings)
        teacher = {"checkpoint": str(teacher_checkpoint(summary, nash_store)), "cpu_minutes": round(cpu_s / 60, 2),
                   "params": summary["winner"]["params"], "val_acc": summary["winner"]["val_acc"]}
        results["teachers"][str(seed)] = teacher
        save()
    for name in CONTESTANTS:
        key = f"{name}-seed{seed}"
        if key in results["runs"]:
            continue
        settings = {**class_args(ROOT / "examples" / "n2n-fashion-mnist.yml"), **(QUICK_N2N if quick else {}),
                    "teacher": teacher["checkpoint"], "seed": seed, "checkpoint_dir": str(folder / name)}
        summary, cpu_s = run_search(name, settings)
        results["runs"][key] = {"contestant": name, "seed": seed, **run_figures(summary, cpu_s)}
        save()


def summary_markdown(results: Mapping[str, Any]) -> str:
    """The report's table (module docstring)."""
    lines = ["# N2N learning on a NASH teacher: N2N against N2NRandom", "",
             f"Criterion: >= {CRITERION['min_compression']:g}x fewer parameters at <= "
             f"{CRITERION['max_loss_points']:g} point test accuracy loss. Budget: CPU-minutes per run (process CPU "
             "time, in-process, one torch thread); teachers' NASH searches are listed apart.", "",
             "| contestant | runs | compression | test accuracy loss (points) | last episode's mean reward | "
             "criterion met | CPU-minutes |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name in CONTESTANTS:
        runs = [r for r in results["runs"].values() if r["contestant"] == name and "compression" in r]
        lines.append(f"| {name} | {len(runs)} | {format_mean_std([r['compression'] for r in runs], 3)} | "
                     f"{format_mean_std([r['loss_points'] for r in runs], 3)} | "
                     f"{format_mean_std([r['mean_rewards'][-1] for r in runs if r['mean_rewards']], 3)} | "
                     f"{sum(bool(r['criterion']) for r in runs)}/{len(runs)} | "
                     f"{format_mean_std([r['cpu_minutes'] for r in runs], 1)} |")
    statistics_of_a_run = (("all episodes", lambda r: statistics.mean(r["mean_rewards"])),
                           ("the last third of the episodes", lambda r: last_third(r["mean_rewards"])))
    paired = {name: paired_by_seed(results["runs"], "n2n", "n2n_random", stat) for name, stat in statistics_of_a_run}
    lines += ["", "Mean reward per episode, N2N minus N2NRandom, paired by seed (descriptive; the same episodes and "
              "students per run):", ""]
    for name, diffs in paired.items():
        per_seed = ", ".join(f"seed {s}: {d:+.3f}" for s, d in diffs.items())
        shown = format_mean_std(list(diffs.values()), 3, signed=True)
        lines.append(f"- over {name}: {shown} (n={len(diffs)}; {per_seed})")
    lines += ["", "| run | teacher params, test acc | student params, test acc | compression | loss (points) | "
              "CPU-minutes |", "| --- | --- | --- | --- | --- | --- |"]
    for key, r in sorted(results["runs"].items()):
        if "compression" not in r:
            lines.append(f"| {key} | failed: {r.get('reason')} | | | | |")
            continue
        lines.append(f"| {key} | {r['teacher_params']:,}, {r['teacher_test_acc']:.4f} | {r['student_params']:,}, "
                     f"{r['student_test_acc']:.4f} | {r['compression']:.2f}x | {r['loss_points']:.2f} | "
                     f"{r['cpu_minutes']} |")
    teachers = results["teachers"]
    lines += ["", "Teachers (NASH winners, search checkpoints): " + "; ".join(
        f"seed {s}: {t['params']:,} params, val acc {t['val_acc']:.4f}, {t['cpu_minutes']} CPU-minutes"
        for s, t in sorted(teachers.items()))]
    return "\n".join(lines) + "\n"


def plot_rewards(results: Mapping[str, Any], path: Path) -> None:
    """Mean reward per episode, mean +- std over seeds, one line per contestant."""
    curves = {name: [r["mean_rewards"] for r in results["runs"].values() if r["contestant"] == name]
              for name in CONTESTANTS}
    plot_mean_std_curves(curves, path, xlabel="episode", ylabel="mean reward C(2-C) acc_s/acc_t", markers=True,
                         figsize=(6, 4))


def _load(path: Path, quick: bool) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"teachers": {}, "runs": {}, "quick": quick}


def _run_jobs(args: argparse.Namespace, out: Path) -> int:
    """Run the seeds in ``args.jobs`` processes of this script (seeds dealt round-robin), each with its log in
    ``out``; they merge their runs into ``results.json`` under a lock. The exit status: the first non-zero one."""
    groups = [args.seeds[i::args.jobs] for i in range(args.jobs) if args.seeds[i::args.jobs]]
    procs = []
    for i, seeds in enumerate(groups):
        log = out / f"job{i}.log"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--jobs", "1", "--no-report", "--out", str(out),
               "--seeds", *map(str, seeds), *(["--quick"] if args.quick else [])]
        print(f"seeds {seeds}: a process of its own, log {log}", flush=True)
        with log.open("w") as handle:
            procs.append((seeds, log, subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)))
    status = 0
    for seeds, log, proc in procs:
        code = proc.wait()
        if code != 0:
            print(f"error: the process of seeds {seeds} ended with exit status {code}; see {log}", file=sys.stderr)
            status = status or code
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "n2n-fashion-mnist"))
    parser.add_argument("--quick", action="store_true", help="digits and tiny budgets: a smoke test, no measurement")
    parser.add_argument("--jobs", type=int, default=1,
                        help="seeds run in this many processes at once, each one trial at a time on one thread "
                             "(2 on a 2-core machine: each run's CPU-minutes are its own process's); default 1")
    parser.add_argument("--no-report", action="store_true", help=argparse.SUPPRESS)  # the processes of --jobs
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.json"
    lock = out / "results.lock"
    with locked(lock):
        results = _load(path, args.quick)
    if results.get("quick", args.quick) != args.quick:
        print(f"error: {path} holds {'quick' if results['quick'] else 'full'} runs; use another --out",
              file=sys.stderr)
        return 2
    results["quick"] = args.quick

    def save() -> None:
        """Merge this process's runs into the file (another process of --jobs may have added its own)."""
        with locked(lock):
            merged = _load(path, args.quick)
            merged["teachers"].update(results["teachers"])
            merged["runs"].update(results["runs"])
            merged["quick"] = args.quick
            tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(merged, indent=1))
            tmp.replace(path)
        results.update(merged)

    if args.jobs > 1 and len(args.seeds) > 1:
        status = _run_jobs(args, out)
        with locked(lock):
            results = _load(path, args.quick)
    else:
        status = 0
        for seed in args.seeds:
            run_seed(seed, out, results, quick=args.quick, save=save)
    if not args.no_report:
        (out / "summary.md").write_text(summary_markdown(results))
        plot_rewards(results, out / "rewards.png")
        print(f"wrote {out / 'summary.md'}, {out / 'rewards.png'}, {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
