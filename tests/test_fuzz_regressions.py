"""Fuzz regressions: minimal reproducers of the parser crashes the fuzzers found (now ArchitectureError)."""

from __future__ import annotations

import copy

import pytest

from _fuzz_helpers import EXAMPLE, HUGE, parse, parse_json
from nni_nas_ext.core import ArchitectureError


def _one_node(node: dict, num_classes: int = 1) -> dict:
    return {"input_shape": [1, 8, 8], "num_classes": num_classes, "nodes": [node], "output": node.get("id")}


REGRESSIONS = {
    # `op not in OPS` hashes the value: TypeError for an unhashable op
    "op_is_list": _one_node({"id": "a", "op": [], "inputs": ["input"]}),
    "op_is_dict": _one_node({"id": "a", "op": {"name": "conv"}, "inputs": ["input"]}),
    # math.isfinite(int) converts to float: OverflowError for an integer beyond float range
    "dropout_p_huge_int": _one_node({"id": "a", "op": "dropout", "inputs": ["input"], "p": HUGE}),
    "add_weight_huge_int": _one_node({"id": "a", "op": "add", "inputs": ["input", "input"], "weights": [HUGE, 1]}),
    # sorted() of unknown keys of mixed types (a Python dict, not one loaded from JSON): TypeError
    "node_key_not_a_string": _one_node({"id": "a", "op": "relu", "inputs": ["input"], 1: 2, "x": 3}),
    "step_key_not_a_string": {**_one_node({"id": "a", "op": "gap", "inputs": ["input"]}),
                              "lineage": {"parent": "p", "steps": [{"op": "w", "site": {}, 1: 2, "x": 3}]}},
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_regression_from_dict(name):
    outcome = parse(REGRESSIONS[name])
    assert isinstance(outcome, ArchitectureError)


@pytest.mark.parametrize("text", [
    "[" * 100_000,  # json.loads: RecursionError
    "[" * 100_000 + "]" * 100_000,
    '{"input_shape": [1, 8, 8], "num_classes": ' + "1" * 5000 + "}",  # int digit limit: ValueError
], ids=["deeply_nested_open", "deeply_nested_closed", "integer_of_5000_digits"])
def test_regression_from_json(text):
    outcome = parse_json(text)
    assert isinstance(outcome, ArchitectureError)


def test_regression_id_with_trailing_newline():
    """The id pattern is anchored with ``$``, which also matches before a final newline."""
    data = copy.deepcopy(EXAMPLE)
    data["nodes"][0]["id"] = "conv1\n"
    data["nodes"][1]["inputs"] = ["conv1\n"]
    outcome = parse(data)
    assert isinstance(outcome, ArchitectureError) and "nodes[0]" in outcome.rule, outcome
