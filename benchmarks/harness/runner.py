"""One (contestant, seed) run: its private ``nnictl`` experiment within the budget, watched through NNI's REST
API and stopped at the end, then the common final training of its best architecture.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _nnictl import NnictlFailed, private_experiment

from .contestants import CONTESTANTS
from .machine import environment, timestamp
from .results import run_key
from .retrain import final_training
from .settings import Settings
from .trials import best_trial, ms_to_seconds, parse_trials

#: NNI statuses after which an experiment does nothing more
_ENDED = frozenset({"DONE", "ERROR", "STOPPED"})
_UNREACHABLE_LIMIT_S = 60.0
_POLL_S = 2.0
_PROGRESS_EVERY_S = 15.0


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


def watch_experiment(exp: Any, started: float, budget_s: float, label: str,
                     say: Callable[[str], None]) -> tuple[str, dict]:
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
                              "started": timestamp(), "environment": environment(), "config": config}
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
                status, snap = watch_experiment(exp, started, s.budget_s, label, say)
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
        record["ended"] = timestamp()
        say(f"{label}: could not run the experiment: {str(exc).splitlines()[0]}")
        return record
    experiment["wall_s"] = round(experiment["stopped_unix"] - started, 2)
    profile = snap.get("profile") or {}
    experiment["nni_start_unix"] = ms_to_seconds(profile.get("startTime"))
    experiment["nni_exec_duration_s"] = profile.get("execDuration")
    trials = parse_trials(snap.get("trial_jobs") or [], snap.get("metric_data") or [], started, s.budget_s)
    record["trials"] = trials
    counts = {k: sum(t["outcome"] == k for t in trials)
              for k in ("ok", "failed", "after_budget", "final", "unfinished")}
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
            seconds = final["retrained"]["seconds"] + (final["inherited"] or {}).get("seconds", 0)
            say(f"{label}: test acc {final['retrained']['test_acc']:.4f} retrained from scratch"
                + (f", {final['inherited']['test_acc']:.4f} from inherited weights" if final["inherited"] else "")
                + f" (final training {seconds:.0f} s)")
    if "error" not in record:
        record["status"] = "finished"
    record["ended"] = timestamp()
    if not keep_checkpoints:
        for path in work.rglob("*.pt"):
            path.unlink(missing_ok=True)
    return record


def say(text: str) -> None:
    """Print a progress line with the time of day (the harness's console output)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def raise_interrupt(signum: int, frame: Any) -> None:
    """A signal handler that ends in ``KeyboardInterrupt``, so that a killed run stops its experiment too."""
    raise KeyboardInterrupt(f"signal {signum}")
