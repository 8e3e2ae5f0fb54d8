"""The command line that protocol v2 and the Pareto benchmark share (benchmarks/harness/cli.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from harness.cli import add_run_options, contestant_names, parse_run_args, task_settings  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="x")
    p.add_argument("--minutes", type=float, default=30.0)
    add_run_options(p, out=Path("/tmp/out"), final_epochs_help="help")
    return p


def test_the_shared_options_give_the_settings_of_a_results_file() -> None:
    args = parse_run_args(_parser(), ["--dataset", "digits", "--epochs", "3", "--seed-widths", "4", "8", "8"])
    assert task_settings(args) == {"dataset": "digits", "limit": None, "minutes": 30.0, "epochs": 3, "seed_epochs": 4,
                                   "final_epochs": 10, "seed_widths": [4, 8, 8]}
    assert args.out == Path("/tmp/out") and args.supersede == [] and not args.report_only


def test_supersede_needs_a_reason_in_both_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_run_args(_parser(), ["--supersede", "nash"])
    assert exc.value.code == 2 and "--supersede needs --why" in capsys.readouterr().err
    import compare_pareto

    with pytest.raises(SystemExit) as exc:
        compare_pareto.main(["--supersede", "nash", "--report-only"])
    assert exc.value.code == 2 and "--supersede needs --why" in capsys.readouterr().err


def test_contestants_by_spaces_or_commas_and_unknown_names_get_close_matches() -> None:
    assert contestant_names(["nash,lemonade", "nni_random"], ["nash", "lemonade", "nni_random"]) == \
        ["nash", "lemonade", "nni_random"]
    with pytest.raises(ValueError, match="lemonade"):
        contestant_names(["lemonad"], ["nash", "lemonade"])
