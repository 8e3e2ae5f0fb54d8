"""Read a morphism search's results from its trials' own final results (NNI REST ``metric-data``).

Every trial reports a self-describing final result (candidate, role, parent, morphisms applied,
accuracies, parameters, checkpoint). This module rebuilds the search's story from those alone, so it is
right even where NNI paired trials with the wrong parameters (NNI 3.0 bug 1): the seed, the winner, the
chain of morphisms from the seed to the winner, and the figures ``make demo`` prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DETAILS_KEY", "PORTAL_KEYS", "SearchResults", "decode_metric", "final_results", "flat_result",
           "portal_result"]

#: The keys of a trial's final result that NNI receives as they are. NNI's portal makes every key of a final
#: result a column of its trial table and an axis of its "Hyper-parameter" tab (numbers as numbers, strings as
#: categories), so only what a person compares trials by stays at the top: the ranking metric, the test accuracy of
#: a final training, the size and cost of the network, the step, the role, and the two lines that say what the
#: trial trained (``summary``) and where its weights came from (``lineage``).
PORTAL_KEYS = ("default", "test_acc", "val_acc", "params", "macs", "latency_ms", "compression", "step", "role",
               "summary", "lineage", "failed")
#: Everything else a trial reports (candidate and parent ids, preservation error, epochs, timings, checkpoint,
#: preprocessing, ...) travels under this key as one JSON text: one column of the table, one axis.
DETAILS_KEY = "details"


def portal_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """The form of a final result sent to NNI: :data:`PORTAL_KEYS` at the top, the rest as JSON under
    :data:`DETAILS_KEY`. :func:`flat_result` (called by :func:`decode_metric`) gives the result back as it was.

    Raises
    ------
    ValueError
        If the result already has a key named :data:`DETAILS_KEY`, which would be lost.
    """
    if DETAILS_KEY in result:
        raise ValueError(f"a final result may not have its own key {DETAILS_KEY!r} (it carries the keys outside "
                         f"{list(PORTAL_KEYS)}): rename it")
    out = {k: v for k, v in result.items() if k in PORTAL_KEYS}
    rest = {k: v for k, v in result.items() if k not in PORTAL_KEYS}
    if rest:
        out[DETAILS_KEY] = json.dumps(rest, sort_keys=True, separators=(",", ":"))
    return out


def flat_result(metric: Any) -> Any:
    """A final result as the trial made it: the keys of its :data:`DETAILS_KEY` JSON back at the top level.

    Anything else (a number, a result without details, details that are not a JSON object) is returned as it is.
    """
    if not isinstance(metric, Mapping) or not isinstance(metric.get(DETAILS_KEY), str):
        return metric
    try:
        details = json.loads(metric[DETAILS_KEY])
    except ValueError:
        return metric
    if not isinstance(details, dict):
        return metric
    return {**details, **{k: v for k, v in metric.items() if k != DETAILS_KEY}}


def decode_metric(data: Any) -> Any:
    """NNI stores a reported metric as JSON inside a JSON string (sometimes twice); undo all of it, and the
    portal form of a final result (:func:`flat_result`)."""
    for _ in range(4):
        if not isinstance(data, str):
            break
        try:
            data = json.loads(data)
        except ValueError:
            break
    return flat_result(data)


def final_results(metric_data: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Final results by candidate id from REST ``metric-data`` records, each with its NNI ``trial``."""
    out: dict[str, dict[str, Any]] = {}
    for record in metric_data:
        if record.get("type") != "FINAL":
            continue
        metric = decode_metric(record.get("data"))
        if isinstance(metric, Mapping) and isinstance(metric.get("candidate"), str):
            out[metric["candidate"]] = {**metric, "trial": record.get("trialJobId")}
    return out


@dataclass
class SearchResults:
    """What a search found, from its trials' final results."""

    results: dict[str, dict[str, Any]]
    failures: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_metric_data(cls, metric_data: Iterable[Mapping[str, Any]]) -> SearchResults:
        everything = final_results(metric_data)
        ok = {k: v for k, v in everything.items() if "failed" not in v}
        return cls(ok, [v for v in everything.values() if "failed" in v])

    def by_role(self, role: str) -> list[dict[str, Any]]:
        return sorted((r for r in self.results.values() if r.get("role") == role), key=lambda r: r["candidate"])

    @property
    def seed(self) -> dict[str, Any] | None:
        seeds = self.by_role("seed")
        return seeds[0] if seeds else None

    @property
    def seed_final(self) -> dict[str, Any] | None:
        finals = self.by_role("seed_final")
        return finals[0] if finals else None

    @property
    def winner_final(self) -> dict[str, Any] | None:
        finals = self.by_role("final")
        return finals[0] if finals else None

    @property
    def best_search(self) -> dict[str, Any] | None:
        """The best candidate by validation accuracy among the search's trainings (finals excluded)."""
        pool = [r for r in self.results.values() if r.get("role") in ("seed", "child", "incumbent")]
        return max(pool, key=lambda r: (r["default"], -r.get("step", 0)), default=None)

    def ancestry(self, candidate: str) -> list[dict[str, Any]]:
        """The results from the seed down to ``candidate``, following each result's ``parent``."""
        chain: list[dict[str, Any]] = []
        seen: set[str] = set()
        current: str | None = candidate
        while current is not None and current in self.results and current not in seen:
            seen.add(current)
            chain.append(self.results[current])
            current = self.results[current].get("parent")
        return chain[::-1]

    def lineage(self, candidate: str) -> list[str]:
        """The morphisms from the seed to ``candidate``, in order (``widen(node=conv2, width=32)``...)."""
        return [m for r in self.ancestry(candidate) for m in r.get("morphisms", [])]

    def preservation(self) -> list[tuple[str, float, float | None, float | None]]:
        """For every child: (candidate, preservation error, start val acc, parent's final val acc)."""
        rows = []
        for r in self.results.values():
            if r.get("preservation_error") is None:
                continue
            parent = self.results.get(r.get("parent") or "")
            rows.append((r["candidate"], r["preservation_error"], r.get("start_val_acc"),
                         parent["default"] if parent else None))
        return sorted(rows)
