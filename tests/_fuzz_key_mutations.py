"""Structured mutations of an architecture dict's keys and values, at the top level and in its nodes.

Each ``m_<name>(rng, base)`` draws one mutation of a valid base with ``random.Random`` and returns the
:class:`Case` it makes (or ``None`` where it does not apply), saying whether the parser must refuse it
(:class:`Expect`: where and what the message names), must accept it, or may go either way. The seeded loop
in ``test_fuzz_mutations.py`` runs them; the graph's wiring, shapes and ranges are in
``_fuzz_graph_mutations.py``.
"""

from __future__ import annotations

import copy
from typing import Any

from _fuzz_helpers import (
    ATTR_NAMES, ATTRS, BAD_VALUES, EQUAL, HUGE, ID_RE, INPUT, MAYBE, MERGES, NAN, ODD_KEYS, OP_NAMES, REQ,
    REQUIRED_TOP_KEYS, TOP_KEYS, VALID, Base, Case, Expect, attr_value_breaks, is_finite_number, is_int,
)


def m_del_top_key(rng, base):
    data = copy.deepcopy(base.data)
    key = rng.choice([*REQUIRED_TOP_KEYS, "version", "lineage"])
    if key not in data:
        return None
    del data[key]
    if key in REQUIRED_TOP_KEYS:
        return Case("del_top_key", data, Expect(None, (f"[{key!r}] missing",)))
    return Case("del_optional_top_key", data, EQUAL if key == "version" else VALID)


def m_unknown_top_key(rng, base):
    data = copy.deepcopy(base.data)
    key = rng.choice([k for k in ODD_KEYS if k not in TOP_KEYS] + ["Version", "inputShape", "nodes_"])
    data[key] = copy.deepcopy(rng.choice(BAD_VALUES))
    return Case("unknown_top_key", data, Expect(None, (f"unknown keys [{key!r}]",)))


def expect_for_top_value(base: Base, key: str, value: Any):
    if key == "version":
        return MAYBE if value == 1 else Expect(None, ("'version'",))
    if key == "input_shape":
        ok = isinstance(value, list) and len(value) == 3 and all(is_int(v) and v >= 1 for v in value)
        return MAYBE if ok else Expect(None, ("input_shape",))
    if key == "num_classes":
        if is_int(value) and value == base.arch.num_classes:
            return EQUAL
        if not (is_int(value) and value >= 1):
            return Expect(None, ("num_classes",))
        return Expect(base.arch.output, ("num_classes",))  # the output node's shape no longer fits
    if key == "nodes":
        if not isinstance(value, list) or not value:
            return Expect(None, ("'nodes'",))
        return Expect(None, ("nodes[0]",)) if not isinstance(value[0], dict) else MAYBE
    if key == "output":
        return MAYBE if isinstance(value, str) and value in base.ids else Expect(None, ("'output'",))
    if key == "lineage":
        return VALID if value is None else Expect(None, ("lineage",))
    raise AssertionError(key)


def m_wrong_top_value(rng, base):
    data = copy.deepcopy(base.data)
    key = rng.choice(TOP_KEYS)
    value = copy.deepcopy(rng.choice(BAD_VALUES))
    data[key] = value
    return Case("wrong_top_value", data, expect_for_top_value(base, key, value))


def m_bad_input_shape(rng, base):
    data = copy.deepcopy(base.data)
    c, h, w = base.arch.input_shape
    bad = [[c, h], [c, h, w, 1], [0, h, w], [c, -h, w], [c, h, 0], [float(c), h, w], [True, h, w],
           [c, str(h), w], f"{c},{h},{w}", None, {"c": c, "h": h, "w": w}, [[c], h, w], [c, h, NAN]]
    if rng.random() < 0.8:
        data["input_shape"] = rng.choice(bad)
        return Case("bad_input_shape", data, Expect(None, ("input_shape",)))
    data["input_shape"] = [c + rng.randint(0, 3), h + rng.randint(0, 3), w + rng.randint(0, 3)]
    return Case("other_input_shape", data, MAYBE)


def m_bad_version(rng, base):
    data = copy.deepcopy(base.data)
    data["version"] = rng.choice([0, 2, -1, "1", "v1", None, [1], 1.5, {}, NAN, HUGE])
    return Case("bad_version", data, Expect(None, ("'version'",)))


def m_bad_nodes_container(rng, base):
    data = copy.deepcopy(base.data)
    n = len(data["nodes"])
    variant = rng.randrange(4)
    if variant == 0:
        data["nodes"] = rng.choice([[], {}, "nodes", None, 3, True, {"0": data["nodes"][0]}])
        return Case("bad_nodes_container", data, Expect(None, ("'nodes'",)))
    i = rng.randrange(n + 1)
    junk = rng.choice([None, 3, "conv1", [], ["id", "conv1"], 1.5, True, list(data["nodes"][min(i, n - 1)].items())])
    if variant == 1:
        data["nodes"].insert(i, junk)
    else:
        i = min(i, n - 1)
        data["nodes"][i] = junk
    return Case("bad_node_entry", data, Expect(None, (f"nodes[{i}]",)))


def m_del_node_key(rng, base):
    data = copy.deepcopy(base.data)
    i = rng.randrange(len(data["nodes"]))
    node = data["nodes"][i]
    key = rng.choice(sorted(node))
    del node[key]
    if key == "id":
        return Case("del_node_key", data, Expect(None, (f"nodes[{i}]",)))
    if key == "op":
        return Case("del_node_key", data, Expect(node["id"], ("'op'",)))
    if key == "inputs":
        return Case("del_node_key", data, Expect(node["id"], ("inputs",)))
    if ATTRS[node["op"]][key][2] is REQ:
        return Case("del_node_key", data, Expect(node["id"], (repr(key),)))
    return Case("del_optional_attr", data, MAYBE)


def expect_for_node_value(node: dict, index: int, key: str, value: Any):
    """What setting ``node[key] = value`` (the rest of the node unchanged) certainly gives."""
    nid, op = node["id"], node["op"]
    if key == "id":
        if value == INPUT:
            return Expect(INPUT, ("reserved",))
        if isinstance(value, str) and ID_RE.fullmatch(value):
            return MAYBE
        return Expect(None, (f"nodes[{index}]",))
    if key == "op":
        return MAYBE if isinstance(value, str) and value in OP_NAMES else Expect(nid, ("'op'",))
    if key == "inputs":
        low, high = (2, None) if op in MERGES else (1, 1)
        ok = (isinstance(value, list) and all(isinstance(v, str) for v in value)
              and len(value) >= low and (high is None or len(value) <= high))
        return MAYBE if ok else Expect(nid, ())
    spec = ATTRS[op]
    if key not in spec:
        return Expect(nid, (key,))  # unknown attribute
    kind, minimum, default = spec[key]
    if value is None:  # "use the default"
        return Expect(nid, (repr(key),)) if default is REQ else MAYBE
    if kind == "floats":
        ok = (isinstance(value, list) and all(is_finite_number(v) for v in value)
              and len(value) == len(node["inputs"]))
        return MAYBE if ok else Expect(nid, ("weight",))
    return Expect(nid, (repr(key),)) if attr_value_breaks(kind, minimum, value) else MAYBE


def m_wrong_node_value(rng, base):
    data = copy.deepcopy(base.data)
    i = rng.randrange(len(data["nodes"]))
    node = data["nodes"][i]
    before = dict(node)
    key = rng.choice(["id", "op", "inputs", *ATTRS[node["op"]], rng.choice(ATTR_NAMES)])
    value = copy.deepcopy(rng.choice(BAD_VALUES))
    node[key] = value
    return Case("wrong_node_value", data, expect_for_node_value(before, i, key, value))


def m_huge_or_extreme_int(rng, base):
    data = copy.deepcopy(base.data)
    candidates = [(n, k) for n in data["nodes"] for k in ATTRS[n["op"]] if ATTRS[n["op"]][k][0] == "int"]
    node, key = rng.choice(candidates)
    node[key] = rng.choice([10**6, 2**31, 2**63, 10**30, HUGE])
    return Case("huge_int", data, MAYBE)


def m_unknown_op(rng, base):
    data = copy.deepcopy(base.data)
    node = rng.choice(data["nodes"])
    op = rng.choice(["Conv", "conv2d", "", "Identity", "pool", "CONV", "linear ", "softmax", "input", "sep_conv"])
    node["op"] = op
    return Case("unknown_op", data, Expect(node["id"], ("'op'", repr(op))))


def m_unknown_node_key(rng, base):
    data = copy.deepcopy(base.data)
    node = rng.choice(data["nodes"])
    allowed = {"id", "op", "inputs", *ATTRS[node["op"]]}
    key = rng.choice([k for k in (*ODD_KEYS, *ATTR_NAMES) if k not in allowed])
    node[key] = copy.deepcopy(rng.choice(BAD_VALUES))
    return Case("unknown_node_key", data, Expect(node["id"], (repr(key),)))
