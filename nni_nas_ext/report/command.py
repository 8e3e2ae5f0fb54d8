"""``python -m nni_nas_ext report``: the command's arguments and body (``cli.py`` only wires it in).

Import-light: argparse and the standard library at import time; matplotlib, networkx and the core (torch) only
when a report is written, so that ``python -m nni_nas_ext --help`` stays quick.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, TextIO

__all__ = ["FIGURE_NAMES", "add_arguments", "run_command", "run_report", "write_report"]

#: every figure a report may hold (each as .svg and .png); the ones an experiment cannot fill are left out
FIGURE_NAMES = ("accuracy-time", "accuracy-params", "accuracy-macs", "accuracy-latency", "hypervolume-time",
                "lineage-tree", "winner-architecture")
_PORTAL = re.compile(r"https?://[A-Za-z0-9.:\[\]_-]+(/[A-Za-z0-9._~/-]*)?")

EPILOG = """\
where the report goes: --out DIR, by default <experiment folder>/report (beside NNI's db/ and log/ and our
checkpoints/, so it travels with the experiment); printed on the last line of output.

examples:
  python -m nni_nas_ext report 2ksupl1w                    # an id under ~/nni-experiments (NNI's default)
  python -m nni_nas_ext report 2ksupl1w --experiment-dir /data/nni   # experimentWorkingDirectory of the config
  python -m nni_nas_ext report ~/nni-experiments/2ksupl1w --out /tmp/report
  python -m nni_nas_ext report --port 8080                 # the experiment whose portal runs there (make demo)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``report`` command's arguments."""
    parser.add_argument("experiment", nargs="?", default=None, metavar="EXPERIMENT",
                        help="an experiment id (looked up under --experiment-dir, else where NNI's manifest "
                             "~/nni-experiments/.experiment puts it, else ~/nni-experiments) or an experiment folder")
    parser.add_argument("--experiment-dir", default=None, metavar="DIR",
                        help="the folder holding experiment folders (the config's experimentWorkingDirectory)")
    parser.add_argument("--port", type=int, default=None, metavar="N",
                        help="instead of EXPERIMENT: the experiment whose portal listens on this port (asks its REST "
                             "API for its id and folder only; everything else is read from the folder)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="the report folder (default: <experiment folder>/report); files in it are replaced")
    parser.add_argument("--portal", default=None, metavar="URL",
                        help="link the trials to NNI's portal at this URL (default: http://127.0.0.1:N with --port; "
                             "none otherwise: a stopped experiment has no portal until `nnictl view`)")


def write_report(folder: Path, out: Path, *, portal: Optional[str] = None) -> Path:
    """Read the experiment folder ``folder`` and write its report into ``out``; returns ``out/index.html``."""
    from .experiment import load_experiment
    from .figures import COSTS, accuracy_against_cost, accuracy_against_time, hypervolume_against_time
    from .graphs import architecture_graph, lineage_tree, tree_of, winner
    from .html import write_index

    experiment = load_experiment(folder)
    out.mkdir(parents=True, exist_ok=True)
    charts = [accuracy_against_time(experiment, out)]
    for cost, label in COSTS:
        charts.append(accuracy_against_cost(experiment, out, cost, label))
    charts.append(hypervolume_against_time(experiment, out))
    charts.append(lineage_tree(experiment, out))
    best = winner(experiment)
    if best is not None and best.architecture is not None:
        charts.append(architecture_graph(best.architecture, out, title=f"The winner's architecture "
                                                                      f"({best.candidate})"))
    written = [c for c in charts if c is not None]
    kept = {c.name for c in written}
    for name in FIGURE_NAMES:  # a figure of an earlier report into the same folder that this one has not
        if name not in kept:
            for suffix in (".svg", ".png"):
                (out / f"{name}{suffix}").unlink(missing_ok=True)
    return write_index(out, experiment, written, tree_of(experiment), best, portal=portal)


def run_report(experiment: str, *, experiment_dir: Optional[str] = None, out: Optional[str] = None,
               portal: Optional[str] = None, stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """Locate the experiment, write its report, print the path of ``index.html``; the exit status (2: bad input)."""
    from .experiment import ReportError, locate_experiment

    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if portal is not None:
        portal = portal.rstrip("/")
        if not _PORTAL.fullmatch(portal):
            print(f"error: --portal must be an http(s) URL of NNI's portal such as http://127.0.0.1:8080, but got "
                  f"{portal!r}", file=stderr)
            return 2
    try:
        folder = locate_experiment(experiment, experiment_dir)
        target = Path(out).expanduser().resolve() if out else folder / "report"
        index = write_report(folder, target, portal=portal)
    except ReportError as exc:
        print(f"error: {exc}", file=stderr)
        return 2
    except OSError as exc:
        print(f"error: the report could not be written: {exc}", file=stderr)
        return 1
    print(str(index), file=stdout, flush=True)
    return 0


def run_command(args: argparse.Namespace, experiment_profile: Callable[[int], Any],
                portal_url: Callable[[int], str]) -> int:
    """The command: ``EXPERIMENT`` or ``--port`` (``experiment_profile(port)``: NNI's REST ``experiment``)."""
    experiment, portal = args.experiment, args.portal
    if args.port is not None:
        if experiment is not None:
            print(f"error: give EXPERIMENT or --port, not both (got {experiment!r} and --port {args.port})",
                  file=sys.stderr)
            return 2
        try:
            profile = experiment_profile(args.port)
        except (OSError, ValueError) as exc:  # URLError is an OSError
            print(f"error: no NNI REST API answers on port {args.port} ({exc}); give the experiment's id or folder "
                  "instead", file=sys.stderr)
            return 2
        experiment = str(profile.get("logDir") or "") if isinstance(profile, dict) else ""
        if not experiment:
            print(f"error: the REST API on port {args.port} names no experiment folder (logDir); give the "
                  "experiment's id or folder instead", file=sys.stderr)
            return 2
        portal = portal or portal_url(args.port)
    if experiment is None:
        print("error: give an experiment id or folder (or --port N of its running portal); "
              "`nnictl experiment list --all` lists the ids", file=sys.stderr)
        return 2
    return run_report(experiment, experiment_dir=args.experiment_dir, out=args.out, portal=portal)
