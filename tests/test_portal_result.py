"""The portal form of a final result (nni_nas_ext.results): a few keys for NNI's portal, the rest under ``details``.

NNI's portal draws an axis of its "Hyper-parameter" tab for every numeric key of a final result; a trial reports
about twenty. What NNI receives keeps only :data:`PORTAL_KEYS` at the top; every reader gets the whole result back.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from nni_nas_ext.results import DETAILS_KEY, PORTAL_KEYS, decode_metric, final_results, flat_result, portal_result

#: a child's final result as trial_code.trial.run_candidate makes it (the keys of a real one, abridged values)
RESULT: dict[str, Any] = {
    "default": 0.8576, "summary": "child: conv3x3-4 > maxpool > fc-10 | 2 morphisms | 6,656 params",
    "lineage": "s0-seed + deepen, widen", "candidate": "s1-c2", "arch_id": "a1b2", "role": "child", "step": 1,
    "parent": "s0-seed", "morphisms": ["deepen", "widen"], "params": 6656, "macs": 120_000, "flops": 120_000,
    "preservation_error": 3.2e-7, "distilled": False, "start_val_acc": 0.81, "epochs": 2, "epochs_trained": 2,
    "early_stopped": False, "train_on": "train", "checkpoint": "/x/checkpoints/s1-c2.pt",
    "normalisation": {"scale": 16.0, "mean": [0.3], "std": [0.4]}, "timings": {"train": 1.5, "total": 2.0},
}


def _numeric_keys(metric: dict[str, Any]) -> set[str]:
    return {k for k, v in metric.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_the_portal_form_keeps_only_the_portal_keys_at_the_top_and_loses_nothing() -> None:
    sent = portal_result(RESULT)
    assert set(sent) == {k for k in RESULT if k in PORTAL_KEYS} | {DETAILS_KEY}
    assert _numeric_keys(sent) == {"default", "step", "params", "macs"}  # numbers (strings: categorical axes)
    assert set(sent) - _numeric_keys(sent) == {"role", "summary", "lineage", DETAILS_KEY}
    assert isinstance(sent[DETAILS_KEY], str)  # a string: a table column, never an axis
    assert "preservation_error" in json.loads(sent[DETAILS_KEY])
    assert flat_result(sent) == RESULT
    assert flat_result(json.loads(json.dumps(sent))) == RESULT


def test_every_reader_of_nni_records_gets_the_result_as_the_trial_made_it() -> None:
    # NNI keeps the trial's JSON text, and its REST API encodes that once more
    data = json.dumps(json.dumps(portal_result(RESULT)))
    assert decode_metric(data) == RESULT
    assert final_results([{"type": "FINAL", "data": data, "trialJobId": "Ab1"}]) == {"s1-c2": {**RESULT,
                                                                                              "trial": "Ab1"}}


def test_a_result_with_only_portal_keys_has_no_details() -> None:
    failure = {"default": 0.0, "failed": "NaN loss in epoch 1"}
    assert portal_result(failure) == failure
    assert flat_result(failure) == failure


def test_a_failure_keeps_its_reason_at_the_top() -> None:
    failure = {"default": 0.0, "candidate": "s1-c2", "failed": "NaN loss in epoch 1"}
    sent = portal_result(failure)
    assert sent["failed"] == failure["failed"] and json.loads(sent[DETAILS_KEY]) == {"candidate": "s1-c2"}
    assert decode_metric(json.dumps(sent)) == failure


def test_a_result_of_its_own_details_key_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'details'.*rename it"):
        portal_result({**RESULT, "details": "mine"})


@pytest.mark.parametrize("metric", [0.9, "text", None, {"default": 0.9, "details": "not json"},
                                    {"default": 0.9, "details": "[1, 2]"}, {"default": 0.9, "details": 3}])
def test_anything_else_is_returned_as_it_is(metric: Any) -> None:
    assert flat_result(metric) == metric


def test_the_top_level_keys_win_over_details_of_the_same_name() -> None:
    assert flat_result({"default": 0.9, "details": json.dumps({"default": 0.1, "epochs": 2})}) == \
        {"default": 0.9, "epochs": 2}


def test_non_finite_figures_travel_as_json_does() -> None:
    back = flat_result(json.loads(json.dumps(portal_result({"default": 0.5, "preservation_error": math.inf}))))
    assert back["preservation_error"] == math.inf


def test_nni_reporter_sends_the_portal_form(monkeypatch: pytest.MonkeyPatch) -> None:
    import nni

    from nni_nas_ext.nni.evaluator import NniReporter

    sent: list[Any] = []
    monkeypatch.setattr(nni, "report_final_result", sent.append)
    NniReporter().final(dict(RESULT))
    assert sent == [portal_result(RESULT)]


def test_the_dispatcher_reads_the_trial_s_result_back() -> None:
    from nni_nas_ext.nni.dispatcher.loop import _load_metric

    assert _load_metric(json.dumps(json.dumps(portal_result(RESULT)))) == RESULT
