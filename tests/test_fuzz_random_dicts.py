"""Fuzz with Hypothesis: random edits, random JSON values and random graphs give ArchitectureError or parse.

Examples per run (250 each):

* ``test_structured_mutations_hypothesis`` -- 1-3 random edits (set a key to a random or plausible value,
  delete a key, drop/duplicate/swap nodes) anywhere in a valid dict.
* ``test_random_json_top_level`` -- arbitrary JSON-like values and architecture-shaped dicts with random
  values.
* ``test_random_nodes`` -- random nodes (random JSON or plausible node dicts) spliced into valid bases, or
  whole random graphs, loosely or well typed.

Hypothesis runs derandomised (and without its example database) when the environment variable ``CI``
is set (see ``_fuzz_helpers.fuzz_settings``).
"""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any, Callable

from hypothesis import given
from hypothesis import strategies as st

from _fuzz_helpers import (
    ALL_IDS, ATTR_NAMES, ATTRS, BASES, HUGE, INF, INPUT, MERGES, N_HYPOTHESIS, NAN, OP_NAMES, REQ, TOP_KEYS,
    Base, fuzz_settings, json_scalars, json_values, parse, record,
)

# --------------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------------

node_ids = st.sampled_from(["n0", "n1", "n2", "n3", INPUT, *ALL_IDS])
plausible_scalars = st.one_of(
    st.integers(-2, 20),
    st.sampled_from([True, False, None, 0.5, 1.0, 0.0, -0.0, 1.5, NAN, INF, -INF, HUGE, 2**63, "", "3", INPUT]),
    st.sampled_from(OP_NAMES),
    node_ids,
)
plausible_values = st.one_of(
    plausible_scalars,
    st.lists(node_ids, max_size=3),
    st.lists(st.integers(-1, 16), min_size=2, max_size=4),
    st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-3, 3), max_size=3),
    json_values,
)
node_like = st.fixed_dictionaries(
    {"id": st.one_of(st.sampled_from(["n0", "n1", "n2", "n3"]), st.sampled_from(ALL_IDS), node_ids, json_scalars),
     "op": st.one_of(st.sampled_from(OP_NAMES), plausible_values),
     "inputs": st.one_of(st.lists(node_ids, min_size=1, max_size=3), plausible_values)},
    optional={**{name: plausible_values for name in ATTR_NAMES},
              "extra": json_values, "": json_scalars},
)
any_node = st.one_of(node_like, json_values)


@st.composite
def plausible_graphs(draw: Callable[[st.SearchStrategy], Any]) -> dict:
    """Well-typed random graphs (random ops, small attributes, inputs among earlier nodes) that get past
    parsing into cycle, shape and output checks, and are now and then valid."""
    size = draw(st.integers(1, 9))
    input_shape = [draw(st.integers(1, 4)), size, draw(st.sampled_from([size, draw(st.integers(1, 9))]))]
    num_classes = draw(st.integers(1, 6))
    nodes: list[dict] = []
    for i in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(OP_NAMES))
        earlier = [INPUT, *(n["id"] for n in nodes)]
        first = earlier[-1] if draw(st.integers(0, 3)) else draw(st.sampled_from(earlier))
        extra = draw(st.lists(st.sampled_from(earlier), min_size=1 if op in MERGES else 0,
                              max_size=2 if op in MERGES else 0))
        node: dict[str, Any] = {"id": f"n{i}", "op": op, "inputs": [first, *extra]}
        for name, (kind, _, default) in ATTRS[op].items():
            if default is REQ or draw(st.booleans()):
                if kind == "int":
                    node[name] = draw(st.one_of(st.integers(1, 3), st.integers(-1, 7)))
                elif kind == "bool":
                    node[name] = draw(st.booleans())
                elif kind == "float":
                    node[name] = draw(st.sampled_from([0.0, 0.25, 0.5, 0.99, 1.0]))
                else:
                    node[name] = draw(st.lists(st.floats(-2, 2), min_size=len(node["inputs"]) - 1,
                                               max_size=len(node["inputs"])))
        nodes.append(node)
    output = nodes[-1]["id"]
    if draw(st.booleans()):  # a classifier head
        nodes += [{"id": "head_gap", "op": "gap", "inputs": [output]},
                  {"id": "head", "op": "linear", "inputs": ["head_gap"], "out_features": num_classes}]
        output = "head"
    if draw(st.integers(0, 4)) == 0:  # read some node from further down: a cycle
        node = draw(st.sampled_from(nodes))
        node["inputs"][0] = draw(st.sampled_from([n["id"] for n in nodes]))
    if draw(st.booleans()):
        nodes = draw(st.permutations(nodes))
    return {"input_shape": input_shape, "num_classes": num_classes, "nodes": nodes, "output": output}


# --------------------------------------------------------------------------------------------------
# Hypothesis tests
# --------------------------------------------------------------------------------------------------


def _edit(data: dict, draw: Callable[[st.SearchStrategy], Any]) -> None:
    """One random edit anywhere in an architecture dict (in place)."""
    nodes = data.get("nodes")
    where = draw(st.sampled_from(["top", "node", "node", "inputs", "nodes_list", "lineage"]))
    if where in ("node", "inputs", "nodes_list") and not (isinstance(nodes, list) and nodes):
        where = "top"
    if where == "top":
        key = draw(st.sampled_from([*TOP_KEYS, "extra"]))
        if draw(st.booleans()):
            data.pop(key, None)
        else:
            data[key] = draw(plausible_values)
    elif where == "node":
        node = nodes[draw(st.integers(0, len(nodes) - 1))]
        if not isinstance(node, dict):
            return
        key = draw(st.sampled_from(["id", "op", "inputs", *ATTR_NAMES, "extra"]))
        if draw(st.booleans()) and key in node:
            del node[key]
        else:
            node[key] = draw(plausible_values)
    elif where == "inputs":
        node = nodes[draw(st.integers(0, len(nodes) - 1))]
        if isinstance(node, dict) and isinstance(node.get("inputs"), list) and node["inputs"]:
            node["inputs"][draw(st.integers(0, len(node["inputs"]) - 1))] = draw(st.one_of(node_ids, json_scalars))
    elif where == "nodes_list":
        i, j = draw(st.integers(0, len(nodes) - 1)), draw(st.integers(0, len(nodes) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "swap", "insert"]))
        if action == "drop":
            del nodes[i]
        elif action == "duplicate":
            nodes.insert(j, copy.deepcopy(nodes[i]))
        elif action == "swap":
            nodes[i], nodes[j] = nodes[j], nodes[i]
        else:
            nodes.insert(i, draw(any_node))
    else:
        lineage = data.setdefault("lineage", {"parent": "p", "steps": [{"op": "widen", "site": {}, "params": {}}]})
        if not isinstance(lineage, dict):
            data["lineage"] = draw(plausible_values)
            return
        path = draw(st.sampled_from(["parent", "steps", "step", "op", "site", "params", "extra"]))
        steps = lineage.get("steps")
        if path in ("op", "site", "params") and isinstance(steps, list) and steps and isinstance(steps[0], dict):
            steps[0][path] = draw(json_values)
        elif path == "step" and isinstance(steps, list):
            steps.append(draw(json_values))
        else:
            lineage[path] = draw(json_values)


def test_structured_mutations_hypothesis():
    counts: Counter = Counter()

    @fuzz_settings(N_HYPOTHESIS)
    @given(base=st.sampled_from(BASES), data=st.data())
    def run(base: Base, data: st.DataObject) -> None:
        arch_dict = copy.deepcopy(base.data)
        for _ in range(data.draw(st.integers(1, 3), label="edits")):
            _edit(arch_dict, data.draw)
        record(parse(arch_dict), counts)

    run()
    assert sum(counts.values()) >= N_HYPOTHESIS
    assert counts["invalid"] > counts["valid"], counts


def test_random_json_top_level():
    counts: Counter = Counter()
    arch_shaped = st.dictionaries(st.one_of(st.sampled_from(TOP_KEYS), st.text(max_size=6)), plausible_values,
                                  max_size=7)
    with_required = st.fixed_dictionaries(
        {"input_shape": st.one_of(st.lists(st.integers(1, 9), min_size=3, max_size=3),
                                  st.lists(st.integers(1, 9), min_size=3, max_size=3),
                                  st.lists(st.integers(-1, 9), min_size=2, max_size=4), plausible_values),
         "num_classes": st.one_of(st.integers(1, 10), st.integers(1, 10), plausible_values),
         "nodes": st.one_of(st.lists(node_like, min_size=1, max_size=4), st.lists(any_node, max_size=3),
                            plausible_values),
         "output": st.one_of(node_ids, plausible_values)},
        optional={"version": st.one_of(st.just(1), st.just(1), plausible_values), "lineage": json_values})

    @fuzz_settings(N_HYPOTHESIS)
    @given(value=st.one_of(json_values, arch_shaped, with_required))
    def run(value: Any) -> None:
        record(parse(value), counts)

    run()
    assert sum(counts.values()) >= N_HYPOTHESIS
    assert counts["invalid"] > counts["valid"], counts


def test_random_nodes():
    """Random nodes spliced into valid bases, or whole random graphs (loosely or well typed)."""
    counts: Counter = Counter()

    @fuzz_settings(N_HYPOTHESIS)
    @given(base=st.sampled_from(BASES), data=st.data())
    def run(base: Base, data: st.DataObject) -> None:
        arch_dict = copy.deepcopy(base.data)
        nodes = arch_dict["nodes"]
        modes = ["replace", "insert", "graph", "plausible_graph", "plausible_graph"]
        mode = data.draw(st.sampled_from(modes), label="mode")
        if mode == "replace":
            nodes[data.draw(st.integers(0, len(nodes) - 1))] = data.draw(any_node, label="node")
        elif mode == "insert":
            nodes.insert(data.draw(st.integers(0, len(nodes))), data.draw(any_node, label="node"))
        elif mode == "graph":
            arch_dict["nodes"] = data.draw(st.lists(node_like, min_size=1, max_size=5), label="nodes")
            arch_dict["output"] = data.draw(node_ids, label="output")
        else:
            arch_dict = data.draw(plausible_graphs(), label="graph")
        record(parse(arch_dict), counts)

    run()
    assert sum(counts.values()) >= N_HYPOTHESIS
    assert counts["invalid"] > counts["valid"], counts
