"""``python -m nni_nas_ext``: run a search through nnictl, follow it, summarise and export its winner.

Commands
--------
``setup``   apply the NNI 3.0 parameter-pairing fix (idempotent; says what it did) and register our
            strategies as nnictl builtin tuners (``nnictl algo register``).
``run``     check the config (YAML, NNI's schema, our tuner's classArgs, datasets, checkpoint_dir:
            :mod:`nni_nas_ext.nni.preflight`; exit 2 on a problem), ``nnictl create --config FILE`` (listening on
            ``--host``, 127.0.0.1 by default), print the portal's URL, follow the trials until the search
            ends, then print the seed's and the winner's accuracies, the winner's size and lineage, and
            export the winner. An experiment that ends in ERROR: print the dispatcher's error, stop it
            (unless ``--keep-on-error``), exit 1. What ``make demo`` runs.
``follow``  follow an experiment that is already running (``--port``).
``summary`` print the summary of an experiment (``--port``) that is running or done (``nnictl view``).
``export``  export the winner of an experiment (``--port``), or any checkpoint (``--checkpoint``).
``searches`` list the registry of searches (:mod:`nni_nas_ext.registry`); with a name, that search's settings
            (an unknown name: the close matches, exit 2).
``report``  write an experiment's report from its folder (id or path; works after it stopped): an offline
            ``index.html`` with the figures as PNG and SVG (:mod:`nni_nas_ext.report`); prints its path.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .console import ANSI, nnictl_env, plain, quiet_broken_pipe
from .results import SearchResults
from .search_summary import fmt as _fmt
from .search_summary import is_morphism_search, summarize, summarize_other, trial_label

__all__ = ["main"]

#: what export.json says of its "preprocessing" entry
_EXPORT_NOTE = "feed the model raw pixels transformed as 'preprocessing' says, as in training"
_TERMINAL = {"DONE", "ERROR", "STOPPED", "STOPPING", "VIEWED"}
_HOST_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _rest(port: int, path: str, timeout: float = 10.0, *, host: str = "127.0.0.1") -> Any:
    with urllib.request.urlopen(f"{_url(host, port)}/api/v1/nni/{path}", timeout=timeout) as response:
        return json.loads(response.read().decode())


def _nnictl() -> str:
    here = Path(sys.executable).parent / "nnictl"
    return str(here) if here.exists() else (shutil.which("nnictl") or "nnictl")


def follow(port: int, *, timeout: float, poll: float = 3.0, out: Any = sys.stdout, host: str = "127.0.0.1") -> str:
    """Print each trial as it ends until the experiment is over (or ``timeout`` s); return the status."""
    seen: set[str] = set()
    deadline = time.time() + timeout
    status = "UNKNOWN"
    while True:
        try:
            status = _rest(port, "check-status", host=host).get("status", "UNKNOWN")
            trials = _rest(port, "trial-jobs", host=host)
            results = SearchResults.from_metric_data(_rest(port, "metric-data", host=host))
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
                print(f"  trial {tid}: {state}  {trial_label(r)} FAILED: {r['failed'][:200]}", file=out, flush=True)
            else:
                extra = ""
                if r.get("preservation_error") is not None:
                    extra = (f", start val acc {_fmt(r.get('start_val_acc'))} "
                             f"(preservation error {r['preservation_error']:.1e})")
                test = f", test acc {_fmt(r['test_acc'])}" if "test_acc" in r else ""
                params = f", {r['params']} params" if "params" in r else ""
                seconds = (r.get("timings") or {}).get("process_total")
                took = f", {seconds:.1f} s" if isinstance(seconds, (int, float)) else ""
                val = (f"trained on train+val (val acc before: {_fmt(r.get('default'))})"
                       if r.get("train_on") == "train+val" else f"val acc {_fmt(r.get('default'))}")
                print(f"  trial {tid}: {state}  {trial_label(r)}: {val}{test}{params}{extra}{took}", file=out,
                      flush=True)
        if status in _TERMINAL or (status == "NO_MORE_TRIAL" and trials and all(
                t.get("status") not in ("WAITING", "RUNNING") for t in trials) and len(seen) == len(trials)):
            return status
        if time.time() > deadline:
            print(f"  stopped following after {timeout:.0f} s; the experiment is still {status}", file=out)
            return status
        time.sleep(poll)


def export_checkpoint(checkpoint: Path, out_dir: Path, metadata: dict[str, Any] | None = None) -> Path:
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore

    from .export import export_model

    store = CheckpointStore(checkpoint.resolve().parent)
    loaded = store.load(checkpoint.stem)
    if metadata is None:  # what the checkpoint's own result says
        result = loaded.meta.get("result") if isinstance(loaded.meta.get("result"), dict) else {}
        metadata = {"candidate": result.get("candidate"), "preprocessing": result.get("normalisation"),
                    "note": _EXPORT_NOTE}
    return export_model(loaded.architecture, loaded.state_dict, out_dir, metadata=metadata)


def _cmd_setup(args: argparse.Namespace) -> int:
    from .nni import nni_patch, tuners

    for result in nni_patch.apply_all():
        print(f"NNI edit: {result}")
    for line in tuners.register_all():
        print(line)
    return 0


def _check_config(config: Path, *, resources: bool = False) -> str | None:
    """What is wrong with the experiment config (:mod:`nni_nas_ext.nni.preflight`), ``None`` if nothing.

    ``resources=True`` also loads the datasets and checks ``checkpoint_dir`` on the file system (what ``run``
    does before nnictl starts anything); without it only the file's contents are judged.
    """
    from .nni.preflight import PreflightError, check_experiment_config

    try:
        check_experiment_config(config, resources=resources)
    except PreflightError as exc:
        return str(exc)
    return None


def _check_host(host: str) -> str | None:
    """What is wrong with ``--host`` (an IP address or a host name), ``None`` if nothing."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not (0 < len(host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)
            and not labels[-1].isdigit()):
        return (f"--host must be an IP address (127.0.0.1, 0.0.0.0, ::1) or a host name (letters, digits and '-' "
                f"in dot-separated labels of 1-63 characters), but got {host!r}")
    try:
        socket.getaddrinfo(host, None)
    except OSError as exc:
        return f"--host {host!r} is a host name this machine cannot resolve ({exc}); give an IP address instead"
    return None


def _connect_host(host: str) -> str:
    """Where this process reaches a portal listening on ``host`` (the wildcard addresses: loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _cmd_run(args: argparse.Namespace) -> int:
    config = Path(args.config).resolve()
    if not config.is_file():
        print(f"error: no config file at {config}", file=sys.stderr)
        return 2
    problem = _check_host(args.host) or _check_config(config, resources=True)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    host = _connect_host(args.host)
    try:
        with socket.create_connection((host, args.port), timeout=2):
            in_use = True
    except OSError:
        in_use = False
    if in_use:
        print(f"error: port {args.port} is in use (another NNI portal?); choose another: make demo PORT=8081, "
              f"or stop it: {_nnictl()} stop --all", file=sys.stderr)
        return 2
    cmd = [_nnictl(), "create", "--config", str(config), "--port", str(args.port)]
    print("$", " ".join(cmd), flush=True)
    # the listening address, for the plugin's patch of NNI's manager (nni_patch)
    env = nnictl_env({**os.environ, "NNI_NAS_EXT_HOST": args.host})
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    print(plain(proc.stdout.strip()), file=sys.stdout, flush=True)
    if proc.returncode != 0 or "ERROR" in proc.stdout:
        print(plain(proc.stderr.strip(), sys.stderr), file=sys.stderr)
        print("error: nnictl create failed (see above)", file=sys.stderr)
        return 1
    match = re.search(r"Experiment ID:\s*(\w+)", ANSI.sub("", proc.stdout))  # nnictl colours its output
    exp_id = match.group(1) if match else "?"
    url = _url(host, args.port)
    print(f"\nweb portal: {url}  (experiment {exp_id})\nfollowing the trials ...", flush=True)
    status = follow(args.port, timeout=args.timeout, host=host)
    print(f"experiment status: {status}")
    if status == "ERROR":
        return _report_error(args.port, host, exp_id, keep=args.keep_on_error)
    code = _finish(args.port, args.export_dir, host=host)
    print(f"\nthe portal keeps running: open {url}; stop it with `{_nnictl()} stop {exp_id}`")
    return code


def _report_error(port: int, host: str, exp_id: str, *, keep: bool) -> int:
    """Print why the experiment ended in ERROR (the dispatcher's own message), stop it unless ``keep``; 1."""
    print("error: the experiment ended in ERROR", file=sys.stderr)
    for line in experiment_error(port, host=host):
        print(f"  {line}", file=sys.stderr)
    if keep:
        print(f"the experiment is kept (--keep-on-error): {_url(host, port)}; stop it with "
              f"`{_nnictl()} stop {exp_id}`", file=sys.stderr)
        return 1
    args = ["stop", exp_id] if exp_id != "?" else ["stop", "--port", str(port)]
    proc = subprocess.run([_nnictl(), *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=nnictl_env())
    outcome = "stopped" if proc.returncode == 0 else f"`nnictl stop` failed: {proc.stderr.strip()[-300:]}"
    print(f"experiment {exp_id}: {outcome} (keep a failed experiment for inspection with --keep-on-error)",
          file=sys.stderr)
    return 1


def experiment_error(port: int, *, host: str = "127.0.0.1", lines: int = 12) -> list[str]:
    """Why an experiment is in ERROR, as lines to print: the dispatcher's own message first, then NNI's.

    NNI's ``check-status`` ``errors`` hold only the manager's text ("Dispatcher stream error, tuner may have
    crashed."); the reason is what the dispatcher wrote: its ``ERROR: ...`` line in
    ``<experiment folder>/log/nnictl_stderr.log``, else the first error record of ``log/dispatcher.log``
    (the folder is the REST profile's ``logDir``).
    """
    out: list[str] = []
    try:
        status = _rest(port, "check-status", host=host)
        profile = _rest(port, "experiment", host=host)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return [f"(the REST API on port {port} does not answer: {exc})"]
    log_dir = Path(str(profile.get("logDir") or "")) / "log"
    reason = _dispatcher_reason(log_dir, lines)
    out.extend(reason or [f"(no error message found in {log_dir / 'nnictl_stderr.log'} or "
                          f"{log_dir / 'dispatcher.log'})"])
    errors = [str(e) for e in status.get("errors") or []]
    if errors:
        out.append("NNI's status: " + "; ".join(e.strip()[:300] for e in errors))
    out.append(f"logs: {log_dir / 'dispatcher.log'}, {log_dir / 'nnictl_stderr.log'}")
    return out


def _dispatcher_reason(log_dir: Path, lines: int) -> list[str]:
    """The first lines of the dispatcher's error message in the experiment's logs ([] if none is found)."""
    stderr = _read_text(log_dir / "nnictl_stderr.log")
    for i, line in enumerate(stderr):
        if line.startswith("ERROR:"):
            record = [line]
            for more in stderr[i + 1:]:  # up to NNI's own report (node's "Error: ..." and its stack)
                if len(record) >= lines or not more.strip() or re.match(r"Error: |\s+at |\[\d{4}-", more):
                    break
                record.append(more)
            return record
    dispatcher = _read_text(log_dir / "dispatcher.log")
    for i, line in enumerate(dispatcher):
        if re.search(r"\bERROR\b", line):
            record = [line]
            for more in dispatcher[i + 1:]:
                if len(record) >= lines or re.match(r"\[\d{4}-\d\d-\d\d", more):
                    break
                record.append(more)
            return record
    tail = [line for line in stderr if line.strip()]
    return tail[-lines:]


def _read_text(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _finish(port: int, export_dir: str | None, *, host: str = "127.0.0.1") -> int:
    results = SearchResults.from_metric_data(_rest(port, "metric-data", host=host))
    if not is_morphism_search(results):
        summary = summarize_other(results)
        return 0 if summary["tested"] else 1
    summary = summarize(results)
    checkpoint = summary["winner"]["checkpoint"]
    if not checkpoint:
        print("no winner to export (no trial finished)")
        return 1
    from .export import EXPORT_FILES

    out = Path(export_dir) if export_dir else Path(checkpoint).resolve().parent.parent / "export"
    final = results.winner_final or {}
    path = export_checkpoint(Path(checkpoint), out, metadata={
        "preprocessing": final.get("normalisation"), "summary": summary,
        "note": _EXPORT_NOTE})
    print(f"\nexported the winner to {path}: {', '.join(EXPORT_FILES)}\n"
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
        from .export import EXPORT_FILES

        out = export_checkpoint(Path(args.checkpoint), Path(args.out or "export"))
        print(f"exported {args.checkpoint} to {out}: {', '.join(EXPORT_FILES)}")
        return 0
    return _finish(args.port, args.out)


def _cmd_searches(args: argparse.Namespace) -> int:
    from .search_listing import search_settings_table, searches_table

    try:
        lines = searches_table() if args.name is None else search_settings_table(args.name)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from .report.command import run_command

    return run_command(args, lambda port: _rest(port, "experiment"), lambda port: _url("127.0.0.1", port))


_EXAMPLES = """\
examples:
  python -m nni_nas_ext setup                          # once per environment (what `make venv` runs)
  python -m nni_nas_ext run --config config.yml        # the main job (what `make demo` runs)
  python -m nni_nas_ext run --config examples/fashion-mnist.yml --port 8081 --export-dir winner
  python -m nni_nas_ext follow --port 8080             # watch a search started elsewhere
  python -m nni_nas_ext summary --port 8080 --json | head -c 400
  python -m nni_nas_ext export --checkpoint <experiment folder>/checkpoints/<candidate>.pt --out winner
  python -m nni_nas_ext searches nash                  # a search's tuner and settings (no name: all searches)
  python -m nni_nas_ext report <experiment id or folder>   # figures, lineage tree, trials: <folder>/report
"""


def build_parser() -> argparse.ArgumentParser:
    """The command line: every command and option, with its help (``--help`` shows examples)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m nni_nas_ext", description=__doc__.split("\n")[0],
                                     epilog=_EXAMPLES, formatter_class=fmt)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, epilog=f"example:\n  {example}", formatter_class=fmt)

    def port(p: argparse.ArgumentParser, what: str) -> None:
        p.add_argument("--port", type=int, default=8080, metavar="N",
                       help=f"port of the experiment's portal and REST API {what} (default: 8080)")

    command("setup", "fix NNI 3.0's parameter pairing and register our tuners with nnictl (idempotent)",
            "python -m nni_nas_ext setup")
    run = command("run", "check a config, nnictl create it, follow the trials, summarise and export the winner",
                  "python -m nni_nas_ext run --config examples/fashion-mnist.yml --port 8081")
    run.add_argument("--config", default="config.yml", metavar="FILE",
                     help="the experiment's YAML config, checked before anything starts (default: config.yml)")
    port(run, "to start")
    run.add_argument("--timeout", type=float, default=1800, metavar="SECONDS",
                     help="seconds to follow the trials before giving up; the experiment keeps running "
                          "(default: 1800)")
    run.add_argument("--export-dir", default=None, metavar="DIR",
                     help="where to export the winner (default: <experiment folder>/export)")
    run.add_argument("--host", default="127.0.0.1", metavar="ADDRESS",
                     help="address the portal and REST API listen on (default: 127.0.0.1); 0.0.0.0 exposes "
                          "NNI's unauthenticated REST API to the network (see README 'Security')")
    run.add_argument("--keep-on-error", action="store_true",
                     help="leave an experiment that ended in ERROR running (default: print the dispatcher's "
                          "error and stop it)")
    fol = command("follow", "print each trial of a running experiment as it ends, until the search is over",
                  "python -m nni_nas_ext follow --port 8080 --timeout 600")
    port(fol, "to follow")
    fol.add_argument("--timeout", type=float, default=1800, metavar="SECONDS",
                     help="seconds to follow before giving up (default: 1800)")
    summ = command("summary", "print the seed's and the winner's figures of an experiment, running or done",
                   "python -m nni_nas_ext summary --port 8080 --json")
    port(summ, "to read")
    summ.add_argument("--json", action="store_true", help="also print the summary as JSON (for scripts)")
    exp = command("export", "export the winner of an experiment (--port) or any checkpoint (--checkpoint) "
                            "as architecture.json, state_dict.pt, model.torchscript.pt and export.json",
                  "python -m nni_nas_ext export --checkpoint <experiment folder>/checkpoints/<candidate>.pt "
                  "--out winner")
    port(exp, "whose winner to export (ignored with --checkpoint)")
    exp.add_argument("--checkpoint", default=None, metavar="FILE",
                     help="export this checkpoint (a <candidate>.pt file of a search's checkpoint folder) instead")
    exp.add_argument("--out", default=None, metavar="DIR",
                     help="the export folder (default: ./export with --checkpoint, else <experiment folder>/export)")
    sea = command("searches", "list the searches (name, tuner, ours or NNI's, benchmark contestants, title), or "
                              "show one search's tuner and settings", "python -m nni_nas_ext searches nash")
    sea.add_argument("name", nargs="?", default=None, help="the search to show (default: list them all)")
    from .report.command import EPILOG, add_arguments  # standard library only at import

    rep = sub.add_parser("report", help="write an experiment's report (offline HTML, PNG and SVG) from its folder",
                         description="write an experiment's report (offline HTML, PNG and SVG) from its folder: "
                                     "accuracy against time, accuracy against cost with the Pareto front, "
                                     "hypervolume, lineage tree, the winner's architecture, settings, trials",
                         epilog=EPILOG, formatter_class=fmt)
    add_arguments(rep)
    return parser


@quiet_broken_pipe
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"setup": _cmd_setup, "run": _cmd_run, "follow": _cmd_follow, "summary": _cmd_summary,
               "export": _cmd_export, "searches": _cmd_searches, "report": _cmd_report}[args.command]
    return handler(args)
