"""What ``python -m nni_nas_ext run`` and ``summary`` print at the end of a search: the seed's and the winner's
figures and the lineage between them (morphism searches), or the tested trials (FNA)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from .results import SearchResults

__all__ = ["fmt", "is_morphism_search", "summarize", "summarize_other", "trial_label"]


def fmt(value: Any, digits: int = 4) -> str:
    """A figure with ``digits`` decimals, or ``-`` for what is not a number."""
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def trial_label(r: Mapping[str, Any]) -> str:
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
        print(f"  {trial_label(r)}: val acc {fmt(r.get('default'))}, test acc {fmt(r['test_acc'])}, "
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
    print(f"  seed   {s['candidate']}: val acc {fmt(s['val_acc'])}, test acc {fmt(s['test_acc'])}, "
          f"{s['params']} params", file=out)
    print(f"  winner {w['candidate']}: val acc {fmt(w['val_acc'])}, test acc {fmt(w['test_acc'])}, "
          f"{w['params']} params, {w['flops']} MACs", file=out)
    print(f"  lineage seed -> winner ({len(w['lineage'])} morphisms):", file=out)
    for i, step in enumerate(w["lineage"], 1):
        print(f"    {i:2d}. {step}", file=out)
    if summary["failures"]:
        print(f"  {len(summary['failures'])} failed trial(s): "
              + "; ".join(f"{f['candidate']}: {f['reason'][:80]}" for f in summary["failures"]), file=out)
    out.flush()
    return summary
