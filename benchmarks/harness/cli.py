"""The command line that protocol v2 (``compare_v2.py``) and the Pareto benchmark (``compare_pareto.py``) share:
the task and schedule options after each script's own budget options, the results folder, ``--supersede``, and
the settings and contestant names read from them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nni_nas_ext.core.errors import unknown_name

__all__ = ["add_run_options", "contestant_names", "parse_run_args", "task_settings"]


def add_run_options(p: argparse.ArgumentParser, *, out: Path, final_epochs_help: str | None = None) -> None:
    """The options both scripts take after their own: schedule, task, results folder, port, report, supersede."""
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seed-epochs", type=int, default=4)
    p.add_argument("--final-epochs", type=int, default=10, help=final_epochs_help)
    p.add_argument("--seed-widths", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--out", type=Path, default=out)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--supersede", nargs="+", default=[], metavar="CONTESTANT",
                   help="move these contestants' finished runs to `superseded` (kept, with --why) so that they run "
                        "again, e.g. after a change of the contestant's code; never after looking at test results")
    p.add_argument("--why", default=None, help="the reason recorded with --supersede (required with it)")


def parse_run_args(p: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """``p``'s arguments; ``--supersede`` without a reason is an error of the command line."""
    args = p.parse_args(argv)
    if args.supersede and not (args.why and args.why.strip()):
        p.error("--supersede needs --why: the reason is recorded beside the superseded runs")
    return args


def task_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The settings of :func:`add_run_options` and ``--minutes``, by their names in the results file."""
    return {"dataset": args.dataset, "limit": args.limit, "minutes": args.minutes, "epochs": args.epochs,
            "seed_epochs": args.seed_epochs, "final_epochs": args.final_epochs, "seed_widths": args.seed_widths}


def contestant_names(items: Sequence[str], known: Sequence[str]) -> list[str]:
    """The contestants asked for (space- or comma-separated); an unknown name is a ValueError with close matches."""
    names = [n.strip() for item in items for n in item.split(",") if n.strip()]
    for name in names:
        if name not in known:
            raise ValueError(unknown_name("contestant", name, list(known)))
    return names
