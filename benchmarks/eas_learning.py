"""Does EAS' controller learn? EAS against Net2NetRandom over many cheap episodes (issue 19, part 1).

EAS (Cai et al., AAAI 2018) trains its controller by REINFORCE, which needs hundreds of sampled children; the
earlier benchmarks gave it one or two updates. This harness gives it many, on a cheap proxy of the task, and
checks that the proxy ranks networks as a fuller evaluation does.

The protocol, fixed before any measured run (``PROTOCOL`` below; ``results.json`` records it and refuses another):

* **Task (the proxy)**: Fashion-MNIST, 6,000 of the 60,000 training images (``limit``), one sixth held out for
  validation by a fixed split (split seed 0): 5,000 to train, 1,000 to validate. One torch thread, in-process
  through NNI's sequential engine (no nnictl), so every CPU-second is the search's or a trial's.
* **Search**: the EAS settings of ``PROTOCOL["search"]``: the NASH seed (widths 8-16-16) trained 3 epochs; each
  episode 5 children of the best net so far, each 2 Net2Wider and 2 Net2Deeper actions (``morphism_mode:
  noise``, EAS' own), trained **1 epoch** from their parent's weights; widths capped at 64; no final training
  (``epochs_final: 0``: the question is the controller, not the winner). **Every episode starts from the trained
  seed** (``start: seed``, a deviation from the paper, whose start net is the best so far): the episodes' rewards are
  then comparable, and a run's cost does not grow with the network. ``episodes`` is fixed from one
  calibration on seed 99 (not a measured seed) so that a run takes about 40 CPU-minutes: **160 episodes**, 800
  children per run.
* **Contestants**: ``eas`` (the controller, the paper's REINFORCE settings) and ``net2net_random`` (the same
  episodes, uniform actions, no learning); seeds 0, 1, 2 each.
* **Reward per episode**: the mean validation accuracy of the episode's children (what the controller's reward
  ``tan(acc pi / 2)`` is computed from; a child whose architecture was trained before gets that accuracy again).
* **Statistic**: per run, the mean reward over the last third of the episodes; then EAS minus Net2NetRandom,
  paired by seed, mean +- std.
* **Rank check of the proxy**: 24 children drawn (NumPy seed 0) from the trained children of the seed-0 runs are
  trained again from their parent's weights for 4 epochs on 19,000 images, validated on the proxy's 1,000 validation
  images (the same permutation with ``limit`` 20,000 and ``val_fraction`` 0.05 puts exactly those first, so no
  network ever trained on them); the Spearman rank correlation between their proxy and full validation accuracies is
  reported (scipy).

**A diagnostic added after EAS' first runs were seen** (2026-12-06; not part of ``PROTOCOL``, which it leaves as it
was): a child whose architecture was trained before gets that training's accuracy again, so a controller that
settles on a few architectures is rewarded with the same few noisy measurements, the luckiest ones most often. The
re-evaluation (``--reevaluate``, ``REEVAL``) draws 40 children (NumPy seed 0, without replacement) from the last third
of every finished run, cached ones included, and trains each again as it was trained in the run (same parent
weights, same epoch) but with a fresh seed (``TaskConfig.seed`` 1000 + its draw index): the mean of these fresh
accuracies is what the run's last-third policy earns without the cache. Its second part (``--transfer``) asks whether
that carries over to a fuller evaluation: 6 children drawn the same way (``REEVAL["full_draws"]``) are trained as the
rank check's networks (``FULL``: 4 epochs on 19,000 images, validated on the proxy's 1,000). The summary also
counts, per run, the distinct architectures and the new trainings of the last third.

Outputs in ``benchmarks/results/eas-learning/``: ``results.json`` (each run written as it ends, so the script
resumes), ``summary.md`` and ``rewards.png`` (mean +- std over seeds per episode).

Example::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eas_learning.py --calibrate      # seed 99, 2 and 12 episodes
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eas_learning.py --jobs 2         # the 6 runs, 2 at a time
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eas_learning.py --rank-check     # after the seed-0 runs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eas_learning.py --reevaluate     # after all runs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/eas_learning.py --transfer       # after all runs
    .venv/bin/python benchmarks/eas_learning.py --quick --out /tmp/eas-smoke        # digits, tiny: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness.curves import last_third, paired_by_seed, plot_mean_std_curves
from harness.trials import format_mean_std
from harness.locks import locked

ROOT = Path(__file__).resolve().parents[1]
CONTESTANTS = ("eas", "net2net_random")
TASK = {"dataset": "fashion-mnist", "limit": 6000, "val_fraction": 1 / 6, "split_seed": 0, "batch_size": 128,
        "lr": 0.05, "threads": 1}
SEARCH = {"children_per_episode": 5, "n_wider": 2, "n_deeper": 2, "epochs": 1, "epochs_start": 3,
          "epochs_final": 0, "max_width": 64, "morphism_mode": "noise", "start": "seed", "seed_network": "nash",
          "seed_widths": [8, 16, 16]}
#: fixed from the calibration (``--calibrate``: seed 99, 2 and 12 episodes, 0.59 and 2.90 CPU-minutes on 2026-12-05,
#: 2-core AMD EPYC: 0.231 CPU-minutes per episode) before any measured run: about 38 CPU-minutes of episodes
EPISODES = 160
#: the fuller evaluation: 20,000 images of the same permutation, of which the first 1,000 (val_fraction 0.05) are the
#: proxy's validation images: never trained on by any network of the runs, so the two rankings share their judge
FULL = {"limit": 20000, "val_fraction": 0.05, "epochs": 4, "networks": 24, "draw_seed": 0}
PROTOCOL = {"version": 1, "task": TASK, "search": SEARCH, "episodes": EPISODES, "full": FULL,
            "contestants": list(CONTESTANTS), "statistic": "mean reward over the last third of the episodes"}
#: the re-evaluation diagnostic (see the module docstring): not part of PROTOCOL, added after EAS' runs were seen
REEVAL = {"draws": 40, "full_draws": 6, "draw_seed": 0, "seed_base": 1000}
QUICK_TASK = {"dataset": "digits", "limit": None, "val_fraction": 0.2, "batch_size": 64, "threads": 1}
QUICK_SEARCH = {**SEARCH, "epochs_start": 1, "seed_widths": [4, 8, 8], "children_per_episode": 2}


def _settings(contestant: str, seed: int, store: Path, *, quick: bool, episodes: int) -> dict[str, Any]:
    task = QUICK_TASK if quick else TASK
    search = QUICK_SEARCH if quick else SEARCH
    return {**task, **search, "episodes": episodes, "seed": seed, "checkpoint_dir": str(store)}


def run_one(contestant: str, seed: int, out: Path, *, quick: bool, episodes: int) -> dict[str, Any]:
    """One search in-process; its per-episode rewards, children and CPU time."""
    from nni_nas_ext.nni.search import run_in_process

    store = out / "work" / f"{contestant}-seed{seed}"
    cpu, wall = time.process_time(), time.time()
    summary, strategy = run_in_process(contestant, _settings(contestant, seed, store, quick=quick,
                                                             episodes=episodes))
    cpu_s, wall_s = time.process_time() - cpu, time.time() - wall
    state = strategy.search.state_dict()
    while "inner" in state:  # under the middleware
        state = state["inner"]
    episodes_out = []
    for e in summary.get("history", []):
        children = e["children"]
        rewards = [c["val_acc"] if c["val_acc"] is not None else 0.0 for c in children]
        episodes_out.append({"episode": e["episode"], "reward": statistics.mean(rewards) if rewards else None,
                             "controller": e.get("controller"),
                             "children": [{k: c.get(k) for k in ("candidate", "cached_from", "arch_id", "params",
                                                                  "val_acc", "actions")} for c in children]})
    candidates = {c["id"]: c for c in state["candidates"]}
    return {"contestant": contestant, "seed": seed, "status": summary["status"], "reason": summary.get("reason"),
            "episodes": episodes_out, "cpu_minutes": round(cpu_s / 60, 2), "wall_minutes": round(wall_s / 60, 2),
            "store": str(store), "candidates": candidates}


def _redrawn(runs: Mapping[str, Any], diagnostic: Mapping[str, Any]) -> tuple[str, str]:
    """A re-training diagnostic's draws per run, and EAS minus Net2NetRandom of its mean, paired by seed."""
    diffs = paired_by_seed({k: {**runs[k], "again": v["fresh_mean"]} for k, v in diagnostic.items()}, "eas",
                           "net2net_random", lambda r: r["again"])
    draws = "/".join(map(str, sorted({len(v["networks"]) for v in diagnostic.values()})))
    return draws, f"(n={len(diffs)}): {format_mean_std([100 * d for d in diffs.values()], 2, signed=True)}"


def summary_markdown(results: Mapping[str, Any]) -> str:
    runs = results["runs"]
    lines = ["# Does EAS' controller learn? EAS against Net2NetRandom on a cheap proxy", "",
             "Reward per episode: the mean validation accuracy of its children. Statistic: the mean reward over the "
             "last third of the episodes.", "",
             "| contestant | runs | episodes | last-third reward | first-third reward | CPU-minutes |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name in CONTESTANTS:
        mine = [r for r in runs.values() if r["contestant"] == name and r["status"] == "finished"]
        rewards = [[e["reward"] for e in r["episodes"]] for r in mine]
        lines.append(f"| {name} | {len(mine)} | {format_mean_std([len(x) for x in rewards], 0)} | "
                     f"{format_mean_std([last_third(x) for x in rewards])} | "
                     f"{format_mean_std([statistics.mean(x[:max(1, len(x) // 3)]) for x in rewards])} | "
                     f"{format_mean_std([r['cpu_minutes'] for r in mine], 1)} |")
    diffs = list(paired_by_seed(runs, "eas", "net2net_random",
                                lambda r: last_third([e["reward"] for e in r["episodes"]])).values())
    lines += ["", f"EAS minus Net2NetRandom, paired by seed (n={len(diffs)}): "
              f"{format_mean_std([100 * d for d in diffs], 2, signed=True)} points of validation accuracy.", ""]
    rank = results.get("rank_check")
    if rank:
        proxy_val = round(TASK["limit"] * TASK["val_fraction"])
        proxy_train, full_train = TASK["limit"] - proxy_val, round(FULL["limit"] * (1 - FULL["val_fraction"]))
        proxy_epochs = f"{SEARCH['epochs']} epoch" + ("s" if SEARCH["epochs"] != 1 else "")
        lines += [f"Rank check of the proxy: Spearman rho = {rank['spearman']:.3f} (p = {rank['p_value']:.3g}) over "
                  f"{len(rank['networks'])} networks (proxy: {proxy_epochs} on {proxy_train:,} images; "
                  f"full: {FULL['epochs']} epochs on {full_train:,} images, both from the parent's weights, both "
                  f"validated on the same {proxy_val:,} images).", ""]
    reeval, transfer = results.get("reevaluation"), results.get("transfer")
    if reeval:
        draws, paired = _redrawn(runs, reeval)
        lines += [f"Re-evaluation (a diagnostic added after EAS' runs were seen; see `eas_learning.py`): "
                  f"{draws} children drawn from each run's last third, trained again with a fresh "
                  f"seed. EAS minus Net2NetRandom of their mean fresh accuracy, paired by seed "
                  f"{paired} points.", ""]
    if transfer:
        draws, paired = _redrawn(runs, transfer)
        lines += [f"Fuller evaluation of the learnt policy (the same diagnostic's second part): "
                  f"{draws} children drawn from each run's last third, trained as the rank "
                  f"check's fuller evaluation ({FULL['epochs']} epochs on the larger split). EAS minus Net2NetRandom "
                  f"of their mean validation accuracy, paired by seed {paired} points.", ""]
    lines += ["Last third of each run: *distinct* counts the architectures its children had, *new* the children "
              "trained (the others reused an earlier training's accuracy); *re-evaluated* the fresh mean accuracy "
              "of the drawn children beside their mean in the run.", "",
              "| run | episodes | last-third reward | distinct | new | re-evaluated (in the run) | fuller "
              "| CPU-minutes |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for key, r in sorted(runs.items()):
        rewards = [e["reward"] for e in r["episodes"]]
        children = _last_third_children(r)
        again = (reeval or {}).get(key)
        again_text = f"{again['fresh_mean']:.4f} ({again['run_mean']:.4f})" if again else "-"
        fuller_run = (transfer or {}).get(key)
        fuller_text = f"{fuller_run['fresh_mean']:.4f}" if fuller_run else "-"
        lines.append(f"| {key} | {len(rewards)} | {last_third(rewards) if rewards else float('nan'):.4f} | "
                     f"{len({c['arch_id'] for c in children})} | {sum(c['candidate'] is not None for c in children)} | "
                     f"{again_text} | {fuller_text} | {r['cpu_minutes']} |")
    return "\n".join(lines) + "\n"


def plot_rewards(results: Mapping[str, Any], path: Path) -> None:
    """Mean reward per episode, mean +- std over seeds, one line per contestant."""
    curves = {name: [[e["reward"] for e in r["episodes"]] for r in results["runs"].values() if r["contestant"] == name]
              for name in CONTESTANTS}
    plot_mean_std_curves(curves, path, xlabel="episode", ylabel="mean validation accuracy of the children")


def rank_check(results: Mapping[str, Any], *, quick: bool) -> dict[str, Any]:
    """Train FULL['networks'] children of the seed-0 runs again, longer on more data, from their parent's weights;
    the Spearman correlation of the proxy's and the full validation accuracies."""
    import numpy as np
    from scipy.stats import spearmanr

    from nni_nas_ext.core.jobs import Candidate
    from nni_nas_ext.trial_code.datasets import load_dataset
    from nni_nas_ext.trial_code.trial import TaskConfig, run_candidate

    bigger = {} if quick else {"limit": FULL["limit"], "val_fraction": FULL["val_fraction"]}
    base = {**(QUICK_TASK if quick else TASK), **bigger}
    data = load_dataset(TaskConfig(**base).dataset_spec())  # once: the split depends on split_seed, not on seed
    pool = []
    for key in ("eas-seed0", "net2net_random-seed0"):
        run = results["runs"].get(key)
        if not run:
            raise SystemExit(f"the rank check needs the run {key}: run the searches first")
        for e in run["episodes"]:
            for c in e["children"]:
                if c["candidate"] and c["val_acc"] is not None:
                    pool.append((run, c))
    draw = np.random.default_rng(FULL["draw_seed"]).permutation(len(pool))[:FULL["networks"]]
    networks = []
    for i in sorted(draw.tolist()):
        run, child = pool[i]
        original = Candidate.from_dict(run["candidates"][child["candidate"]])
        task = TaskConfig(**{**base, "checkpoint_dir": run["store"] + "-full", "seed": run["seed"]})
        _copy_parent(Path(run["store"]), Path(run["store"] + "-full"), original.parent)
        full = run_candidate(_with_epochs(original, FULL["epochs"]), task, _Quiet(), data=data)
        networks.append({"candidate": original.id, "proxy_val_acc": child["val_acc"],
                         "full_val_acc": full["default"], "params": child["params"]})
    rho, p = spearmanr([n["proxy_val_acc"] for n in networks], [n["full_val_acc"] for n in networks])
    return {"spearman": float(rho), "p_value": float(p), "networks": networks}


def _last_third_children(run: Mapping[str, Any]) -> list[dict[str, Any]]:
    episodes = run["episodes"]
    return [c for e in episodes[-max(1, len(episodes) // 3):] for c in e["children"]]


def reevaluate(results: Mapping[str, Any], *, quick: bool, full: bool = False,
               only: Sequence[str] = ()) -> dict[str, Any]:
    """Every finished run's last-third children (``only``: these runs), REEVAL['draws'] of them, trained again with a
    fresh seed (see the module docstring); by run: the draws, their accuracy in the run and their fresh accuracy.
    ``full``: REEVAL['full_draws'] of them, trained as the rank check's fuller evaluation (FULL) instead."""
    import numpy as np

    from nni_nas_ext.core.jobs import Candidate
    from nni_nas_ext.trial_code.datasets import load_dataset
    from nni_nas_ext.trial_code.trial import TaskConfig, TrialFailed, run_candidate

    base = QUICK_TASK if quick else TASK
    if full and not quick:
        base = {**base, "limit": FULL["limit"], "val_fraction": FULL["val_fraction"]}
    data = load_dataset(TaskConfig(**base).dataset_spec())
    out: dict[str, Any] = {}
    for key, run in sorted(results["runs"].items()):
        if run["status"] != "finished" or (only and key not in only):
            continue
        children = _last_third_children(run)
        size = min(REEVAL["full_draws" if full else "draws"], len(children))
        draw = np.random.default_rng(REEVAL["draw_seed"]).choice(len(children), size=size, replace=False)
        store = Path(run["store"] + ("-transfer" if full else "-reeval"))
        networks = []
        for j, i in enumerate(sorted(draw.tolist())):
            child = children[i]
            trained = child["candidate"] or child["cached_from"]  # the candidate that trained this architecture
            original = Candidate.from_dict(run["candidates"][trained])
            _copy_parent(Path(run["store"]), store, original.parent)
            if full:
                original = _with_epochs(original, FULL["epochs"])
            task = TaskConfig(**{**base, "checkpoint_dir": str(store), "seed": REEVAL["seed_base"] + j})
            try:
                fresh = run_candidate(original, task, _Quiet(), data=data)["default"]
            except TrialFailed:
                fresh = 0.0  # as the run's reward counts a failed child
            networks.append({"candidate": trained, "cached": child["candidate"] is None,
                             "run_val_acc": child["val_acc"] if child["val_acc"] is not None else 0.0,
                             "fresh_val_acc": fresh})
        out[key] = {"networks": networks,
                    "run_mean": statistics.mean(n["run_val_acc"] for n in networks),
                    "fresh_mean": statistics.mean(n["fresh_val_acc"] for n in networks)}
        print(f"{key}: {size} children of the last third, in the run {out[key]['run_mean']:.4f}, trained again "
              f"{'(fuller evaluation) ' if full else ''}{out[key]['fresh_mean']:.4f}")
    return out


class _Quiet:
    def intermediate(self, value: Any) -> None:
        pass

    def final(self, value: Any) -> None:
        pass


def _with_epochs(candidate: Any, epochs: int) -> Any:
    from nni_nas_ext.core.jobs import Candidate

    data = candidate.to_dict()
    data["epochs"] = epochs
    return Candidate.from_dict(data)


def _copy_parent(store: Path, full: Path, parent: str | None) -> None:
    """The parent's checkpoint in a store of its own for the full trainings (the run's store stays as it was)."""
    import shutil

    full.mkdir(parents=True, exist_ok=True)
    if parent is None:
        return
    for path in store.glob(f"{parent}*"):
        if not (full / path.name).exists():
            shutil.copy2(path, full / path.name)


def _update(path: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Apply ``change`` to the results file as it is now and write it back, under the folder's lock (other processes
    of ``--jobs`` or of the diagnostics may write their own parts meanwhile); the merged results."""
    with locked(path.parent / "results.lock"):
        merged = _load(path)
        change(merged)
        tmp = path.with_suffix(f".json.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(merged, indent=1))
        tmp.replace(path)
    return merged


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"protocol": PROTOCOL, "runs": {}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "eas-learning"))
    parser.add_argument("--quick", action="store_true", help="digits and tiny budgets: a smoke test, no measurement")
    parser.add_argument("--calibrate", action="store_true",
                        help="seed 99, 2 and 12 episodes of EAS: the CPU time per episode")
    parser.add_argument("--rank-check", action="store_true", help="the proxy's rank check (after the seed-0 runs)")
    parser.add_argument("--reevaluate", action="store_true",
                        help="train last-third children of every run again with fresh seeds (after all runs)")
    parser.add_argument("--transfer", action="store_true",
                        help="train a few last-third children of every run as the rank check's fuller evaluation")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each its own process (2 on 2 cores)")
    parser.add_argument("--only", help=argparse.SUPPRESS)  # contestant-seed of one run (the processes of --jobs);
    # with the diagnostics, comma-separated runs
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    episodes = 2 if args.quick else EPISODES
    if args.calibrate:
        runs = [run_one("eas", 99, out / "calibration" / str(n), quick=args.quick, episodes=n) for n in (2, 12)]
        per = (runs[1]["cpu_minutes"] - runs[0]["cpu_minutes"]) / 10  # the fixed costs (imports, data, seed) cancel
        print(json.dumps({"cpu_minutes": [r["cpu_minutes"] for r in runs], "episodes": [2, 12],
                          "cpu_minutes_per_episode": round(per, 3),
                          "episodes_in_40_cpu_minutes": int((40 - runs[0]["cpu_minutes"]) / per) + 2}))
        return 0
    path = out / "results.json"
    results = _load(path)
    if not args.quick and results.get("protocol") != PROTOCOL:
        print(f"error: {path} was made with another protocol; use another --out", file=sys.stderr)
        return 2
    if args.rank_check or args.reevaluate or args.transfer:
        only = args.only.split(",") if args.only else ()
        found = {"rank_check": rank_check(results, quick=args.quick)} if args.rank_check else {}
        if args.reevaluate:
            found["reevaluation"] = reevaluate(results, quick=args.quick, only=only)
        if args.transfer:
            found["transfer"] = reevaluate(results, quick=args.quick, full=True, only=only)
        def add_found(merged: dict[str, Any]) -> None:
            for name, value in found.items():  # by run: another process may have written other runs
                merged[name] = {**merged.get(name, {}), **value} if name != "rank_check" else value

        results = _update(path, add_found)  # the diagnostics may run at once, each its own process
    else:
        todo = [(c, s) for s in args.seeds for c in CONTESTANTS if f"{c}-seed{s}" not in results["runs"]]
        if args.only:
            todo = [t for t in todo if f"{t[0]}-seed{t[1]}" == args.only]
        if args.jobs > 1 and len(todo) > 1:
            for start in range(0, len(todo), args.jobs):
                batch = todo[start:start + args.jobs]
                procs = [subprocess.Popen([sys.executable, __file__, "--out", str(out), "--only", f"{c}-seed{s}",
                                           *(["--quick"] if args.quick else [])]) for c, s in batch]
                if any([p.wait() != 0 for p in procs]):  # a list: wait for every process
                    return 1
            results = _load(path)
        else:
            for contestant, seed in todo:
                run = run_one(contestant, seed, out, quick=args.quick, episodes=episodes)
                entry = {f"{contestant}-seed{seed}": run}
                results = _update(path, lambda merged, entry=entry: merged["runs"].update(entry))  # --jobs: one each
                print(f"{contestant} seed {seed}: {len(run['episodes'])} episodes, {run['cpu_minutes']} CPU-minutes")
            if args.only:
                return 0
    (out / "summary.md").write_text(summary_markdown(results))
    plot_rewards(results, out / "rewards.png")
    print(f"wrote {out / 'summary.md'}, {out / 'rewards.png'}, {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
