"""``python -m nni_nas_ext``: run a search through nnictl, follow it, summarise and export its winner.

Commands
--------
``setup``   apply the NNI 3.0 parameter-pairing fix (idempotent; says what it did) and register our
            strategies as nnictl builtin tuners (``nnictl algo register``).
``run``     ``nnictl create --config FILE``, print the portal's URL, follow the trials until the search
            ends, then print the seed's and the winner's accuracies, the winner's size and lineage, and
            export the winner. What ``make demo`` runs.
``follow``  follow an experiment that is already running (``--port``).
``summary`` print the summary of an experiment (``--port``) that is running or done (``nnictl view``).
``export``  export the winner of an experiment (``--port``), or any checkpoint (``--checkpoint``).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from .results import SearchResults

__all__ = ["main"]

_TERMINAL = {"DONE", "ERROR", "STOPPED", "STOPPING", "VIEWED"}


def _rest(port: int, path: str, timeout: float = 10.0) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/nni/{path}", timeout=timeout) as response:
        return json.loads(response.read().decode())


def _nnictl() -> str:
    here = Path(sys.executable).parent / "nnictl"
    return str(here) if here.exists() else (shutil.which("nnictl") or "nnictl")


def _fmt(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def follow(port: int, *, timeout: float, poll: float = 3.0, out: Any = sys.stdout) -> str:
    """Print each trial as it ends until the experiment is over (or ``timeout`` s); return the status."""
    seen: set[str] = set()
    deadline = time.time() + timeout
    status = "UNKNOWN"
    while True:
        try:
            status = _rest(port, "check-status").get("status", "UNKNOWN")
            trials = _rest(port, "trial-jobs")
            results = SearchResults.from_metric_data(_rest(port, "metric-data"))
        except (urllib.error.URLError, OSError) as exc:
            print(f"  (portal not answering: {exc}; retrying)", file=out, flush=True)
            time.sleep(poll)
            if time.time() > deadline:
                return status
            continue
        by_trial = {r["trial"]: r for r in [*results.results.values(), *results.failures]}
        for trial in sorted(trials, key=lambda t: t.get("startTime") or 0):
            tid, state = trial.get("trialJobId"), trial.get("status")
            if tid in seen or state in ("WAITING", "RUNNING", "UNKNOWN"):
                continue
            seen.add(tid)
            r = by_trial.get(tid)
            if r is None:
                print(f"  trial {tid}: {state} (no result)", file=out, flush=True)
            elif "failed" in r:
                print(f"  trial {tid}: {state}  {_what(r)} FAILED: {r['failed'][:200]}", file=out, flush=True)
            else:
                extra = ""
                if r.get("preservation_error") is not None:
                    extra = (f", start val acc {_fmt(r.get('start_val_acc'))} "
                             f"(preservation error {r['preservation_error']:.1e})")
                test = f", test acc {_fmt(r['test_acc'])}" if "test_acc" in r else ""
                params = f", {r['params']} params" if "params" in r else ""
                seconds = (r.get("timings") or {}).get("process_total")
                took = f", {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
                print(f"  trial {tid}: {state}  {_what(r)}: val acc {_fmt(r.get('default'))}{test}{params}{extra}"
                      f"{took}", file=out, flush=True)
        if status in _TERMINAL or (status == "NO_MORE_TRIAL" and trials and all(
                t.get("status") not in ("WAITING", "RUNNING") for t in trials) and len(seen) == len(trials)):
            return status
        if time.time() > deadline:
            print(f"  stopped following after {timeout:.0f} s; the experiment is still {status}", file=out)
            return status
        time.sleep(poll)


def _what(r: Mapping[str, Any]) -> str:
    """``candidate (role, step N)`` of a result, with what it has (FNA jobs have no step)."""
    inside = ", ".join(x for x in (r.get("role"), f"step {r['step']}" if "step" in r else None) if x)
    return f"{r.get('candidate', '?')}" + (f" ({inside})" if inside else "")


def is_morphism_search(results: SearchResults) -> bool:
    """Whether the results are those of a morphism search (NASH, EAS, their baselines), not FNA's jobs.

    FNA's trials name their job's ``kind`` (seed, adapt, param...); a morphism search's never do.
    """
    return not any("kind" in r for r in [*results.results.values(), *results.failures])


def summarize_other(results: SearchResults, out: Any = sys.stdout) -> dict[str, Any]:
    """Print (and return) the trials with a test accuracy, for searches that are not morphism searches (FNA)."""
    tested = sorted((r for r in results.results.values() if "test_acc" in r), key=lambda r: r["candidate"])
    print("\n== results (validation: held-out split of the training set; test: evaluated once per trial that "
          "reports it)", file=out)
    for r in tested:
        madds = f", {r['madds']} MAdds" if "madds" in r else ""
        print(f"  {_what(r)}: val acc {_fmt(r.get('default'))}, test acc {_fmt(r['test_acc'])}, "
              f"{r.get('params')} params{madds}", file=out)
    if not tested:
        print("  no trial reported a test accuracy", file=out)
    if results.failures:
        print(f"  {len(results.failures)} failed trial(s): "
              + "; ".join(f"{f['candidate']}: {f['failed'][:80]}" for f in results.failures), file=out)
    out.flush()
    return {"tested": tested, "failures": [{"candidate": f["candidate"], "reason": f["failed"]}
                                           for f in results.failures]}


def summarize(results: SearchResults, out: Any = sys.stdout) -> dict[str, Any]:
    """Print (and return) the seed -> winner figures."""
    seed, seed_final = results.seed, results.seed_final
    final = results.winner_final
    winner = results.results.get(final["parent"]) if final and final.get("parent") else results.best_search
    summary: dict[str, Any] = {
        "seed": {"candidate": seed and seed["candidate"], "val_acc": seed and seed["default"],
                 "test_acc": seed_final and seed_final.get("test_acc"), "params": seed and seed["params"]},
        "winner": {"candidate": winner and winner["candidate"], "arch_id": winner and winner["arch_id"],
                   "val_acc": winner and winner["default"], "test_acc": final and final.get("test_acc"),
                   "params": winner and winner["params"], "flops": winner and winner["flops"],
                   "lineage": results.lineage(winner["candidate"]) if winner else [],
                   "checkpoint": final["checkpoint"] if final else (winner and winner["checkpoint"])},
        "failures": [{"candidate": f["candidate"], "reason": f["failed"]} for f in results.failures],
    }
    s, w = summary["seed"], summary["winner"]
    print("\n== search result (validation: held-out split of the training set; test: evaluated once, after "
          "the final training on train+val)", file=out)
    print(f"  seed   {s['candidate']}: val acc {_fmt(s['val_acc'])}, test acc {_fmt(s['test_acc'])}, "
          f"{s['params']} params", file=out)
    print(f"  winner {w['candidate']}: val acc {_fmt(w['val_acc'])}, test acc {_fmt(w['test_acc'])}, "
          f"{w['params']} params, {w['flops']} MACs", file=out)
    print(f"  lineage seed -> winner ({len(w['lineage'])} morphisms):", file=out)
    for i, step in enumerate(w["lineage"], 1):
        print(f"    {i:2d}. {step}", file=out)
    if summary["failures"]:
        print(f"  {len(summary['failures'])} failed trial(s): "
              + "; ".join(f"{f['candidate']}: {f['reason'][:80]}" for f in summary["failures"]), file=out)
    out.flush()
    return summary


def export_checkpoint(checkpoint: Path, out_dir: Path, metadata: dict[str, Any] | None = None) -> Path:
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore

    from .export import export_model

    store = CheckpointStore(checkpoint.resolve().parent)
    loaded = store.load(checkpoint.stem)
    return export_model(loaded.architecture, loaded.state_dict, out_dir, metadata=metadata)


def _cmd_setup(args: argparse.Namespace) -> int:
    from .nni import nni_patch, tuners

    print(f"NNI fix (parameter pairing, NNI 3.0 bug 1): {nni_patch.apply_patch()}")
    for line in tuners.register_all():
        print(line)
    return 0


def _check_config(config: Path) -> str | None:
    """Validate our tuner's classArgs before nnictl starts anything (nnictl 3.0 does not run validators)."""
    import yaml

    from .nni.tuners import TUNERS

    try:
        data = yaml.safe_load(config.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return f"{config} is not a readable YAML file: {exc}"
    tuner = (data or {}).get("tuner") or {}
    names = {name.lower(): validator for name, (_, validator) in TUNERS.items()}
    classes = {f"{bridge.__module__}.{bridge.__qualname__}": validator for bridge, validator in TUNERS.values()}
    validator = names.get(str(tuner.get("name", "")).lower()) or classes.get(str(tuner.get("className", "")))
    if validator is None:
        return None  # not one of ours: nnictl and the tuner judge it
    try:
        validator().validate(dict(tuner.get("classArgs") or {}))
    except ValueError as exc:
        return f"{config}: tuner classArgs: {exc}"
    return None


def _cmd_run(args: argparse.Namespace) -> int:
    config = Path(args.config).resolve()
    if not config.is_file():
        print(f"error: no config file at {config}", file=sys.stderr)
        return 2
    problem = _check_config(config)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", args.port)) == 0:
            print(f"error: port {args.port} is in use (another NNI portal?); choose another: make demo PORT=8081, "
                  f"or stop it: {_nnictl()} stop --all", file=sys.stderr)
            return 2
    cmd = [_nnictl(), "create", "--config", str(config), "--port", str(args.port)]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    print(proc.stdout.strip(), file=sys.stdout, flush=True)
    if proc.returncode != 0 or "ERROR" in proc.stdout:
        print(proc.stderr.strip(), file=sys.stderr)
        print("error: nnictl create failed (see above)", file=sys.stderr)
        return 1
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)  # nnictl colours its output
    match = re.search(r"Experiment ID:\s*(\w+)", plain)
    exp_id = match.group(1) if match else "?"
    print(f"\nweb portal: http://127.0.0.1:{args.port}  (experiment {exp_id})\nfollowing the trials ...", flush=True)
    status = follow(args.port, timeout=args.timeout)
    print(f"experiment status: {status}")
    code = _finish(args.port, args.export_dir)
    print(f"\nthe portal keeps running: open http://127.0.0.1:{args.port}; stop it with `{_nnictl()} stop {exp_id}`")
    return code if status not in ("ERROR",) else 1


def _finish(port: int, export_dir: str | None) -> int:
    results = SearchResults.from_metric_data(_rest(port, "metric-data"))
    if not is_morphism_search(results):
        summary = summarize_other(results)
        return 0 if summary["tested"] else 1
    summary = summarize(results)
    checkpoint = summary["winner"]["checkpoint"]
    if not checkpoint:
        print("no winner to export (no trial finished)")
        return 1
    out = Path(export_dir) if export_dir else Path(checkpoint).resolve().parent.parent / "export"
    final = results.winner_final or {}
    path = export_checkpoint(Path(checkpoint), out, metadata={
        "normalisation": final.get("normalisation"), "summary": summary,
        "note": "inputs are normalised per channel: (x / scale - mean) / std, as in training"})
    print(f"\nexported the winner to {path}: architecture.json, state_dict.pt, model.torchscript.pt\n"
          f"  load it without NNI: from nni_nas_ext.export import load_exported; model = load_exported({str(path)!r})\n"
          f"  or with torch alone: torch.jit.load({str(path / 'model.torchscript.pt')!r})")
    return 0


def _cmd_follow(args: argparse.Namespace) -> int:
    status = follow(args.port, timeout=args.timeout)
    print(f"experiment status: {status}")
    return 0


def _cmd_summary(args: argparse.Namespace) -> int:
    results = SearchResults.from_metric_data(_rest(args.port, "metric-data"))
    summary = summarize(results) if is_morphism_search(results) else summarize_other(results)
    if args.json:
        print(json.dumps(summary, indent=1))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if args.checkpoint:
        out = export_checkpoint(Path(args.checkpoint), Path(args.out or "export"))
        print(f"exported {args.checkpoint} to {out}")
        return 0
    return _finish(args.port, args.out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nni_nas_ext", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="fix NNI 3.0's parameter pairing and register our tuners with nnictl")
    run = sub.add_parser("run", help="nnictl create, follow, summarise, export")
    run.add_argument("--config", default="config.yml")
    run.add_argument("--port", type=int, default=8080)
    run.add_argument("--timeout", type=float, default=1800, help="seconds to follow before giving up")
    run.add_argument("--export-dir", default=None, help="default: <experiment folder>/export")
    fol = sub.add_parser("follow", help="follow a running experiment")
    fol.add_argument("--port", type=int, default=8080)
    fol.add_argument("--timeout", type=float, default=1800)
    summ = sub.add_parser("summary", help="summary of an experiment")
    summ.add_argument("--port", type=int, default=8080)
    summ.add_argument("--json", action="store_true")
    exp = sub.add_parser("export", help="export the winner (--port) or a checkpoint (--checkpoint)")
    exp.add_argument("--port", type=int, default=8080)
    exp.add_argument("--checkpoint", default=None)
    exp.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    handler = {"setup": _cmd_setup, "run": _cmd_run, "follow": _cmd_follow, "summary": _cmd_summary,
               "export": _cmd_export}[args.command]
    return handler(args)
