"""`python -m nni_nas_ext run/follow/summary` print every kind of search's results (morphism searches and FNA)."""

from __future__ import annotations

import io
import json

from nni_nas_ext.search_summary import is_morphism_search, summarize_other, trial_label
from nni_nas_ext.results import SearchResults


def _records(*metrics: dict) -> list[dict]:
    return [{"trialJobId": f"t{i}", "type": "FINAL", "data": json.dumps(json.dumps(m))} for i, m in enumerate(metrics)]


def test_fna_results_are_summarised_without_morphism_fields() -> None:
    results = SearchResults.from_metric_data(_records(
        {"default": 0.8, "candidate": "seed-0000", "role": "seed", "kind": "seed", "params": 10},
        {"default": 0.9, "candidate": "param-0003", "role": "final", "kind": "param", "params": 7, "madds": 99,
         "test_acc": 0.91},
        {"default": 0.0, "candidate": "scratch-0004", "role": "scratch", "kind": "scratch", "failed": "boom"}))
    assert not is_morphism_search(results)
    out = io.StringIO()
    summary = summarize_other(results, out)
    text = out.getvalue()
    assert [r["candidate"] for r in summary["tested"]] == ["param-0003"]
    assert "param-0003 (final): val acc 0.9000, test acc 0.9100, 7 params, 99 MAdds" in text
    assert "1 failed trial(s): scratch-0004: boom" in text


def test_morphism_results_are_recognised() -> None:
    results = SearchResults.from_metric_data(_records(
        {"default": 0.8, "candidate": "abc-0000", "role": "seed", "step": 0, "params": 10, "flops": 5}))
    assert is_morphism_search(results)


def test_what_names_role_and_step_when_present() -> None:
    assert trial_label({"candidate": "a-0001", "role": "child", "step": 2}) == "a-0001 (child, step 2)"
    assert trial_label({"candidate": "param-0003", "role": "final"}) == "param-0003 (final)"
    assert trial_label({}) == "?"
