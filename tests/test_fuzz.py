"""Fuzz tests: malformed architectures give :class:`ArchitectureError`, never another exception.

Issue: "at least 500 random malformed architecture dicts each give our validation error, never another
exception". Every input below goes through :meth:`Architecture.from_dict` (or ``from_json``), and the call
must either return an :class:`Architecture` -- a mutation may happen to stay valid; then the result must
round-trip through ``to_dict`` and ``to_json`` -- or raise :class:`ArchitectureError` whose message is
``"node 'x': <rule>, but found <found>"``. Anything else escaping the parser fails the test.

Generators (examples per run; about 10,000 parser calls in all, a few seconds):

* ``test_structured_mutations_seeded`` -- 1,000 targeted mutations of diverse valid bases, drawn by
  ``random.Random`` with a fixed seed (deterministic everywhere). Where a mutation certainly breaks a
  rule (unknown op, dangling input, cycle, duplicate id, merge mismatch, kernel that does not fit, ...)
  the error must be raised and name the offending node or key; mutations that certainly keep the
  architecture valid (node order, renaming, dropping defaults) must parse. Most cases are invalid.
* ``test_structured_mutations_hypothesis`` -- 250 examples: 1-3 random edits (set a key to a random or
  plausible value, delete a key, drop/duplicate/swap nodes) anywhere in a valid dict.
* ``test_random_json_top_level`` -- 250 examples of arbitrary JSON-like values and architecture-shaped
  dicts with random values.
* ``test_random_nodes`` -- 250 examples: random nodes (random JSON or plausible node dicts) spliced into
  valid bases, or whole random graphs, loosely or well typed.
* ``test_from_json_random_text`` -- 250 examples of random text, truncated, corrupted and random JSON;
  ``test_from_json_truncated_exhaustive`` cuts every base's JSON at every position (thousands of cases).
* ``test_regression_*`` -- minimal reproducers of crashes the fuzzers found.

Hypothesis runs derandomised (and without its example database) when the environment variable ``CI``
is set, so CI sees the same examples on every run; locally it explores new ones each time.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nni_nas_ext.core import Architecture, ArchitectureError, GraphBuilder

from nni_nas_ext.search_spaces import nash_seed, plain_cnn

INPUT = "input"
NAN, INF = float("nan"), float("inf")
HUGE = 10**400  # a valid JSON integer that no float can hold

# --------------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------------

CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def fuzz_settings(max_examples: int) -> settings:
    kwargs: dict[str, Any] = {}
    if CI:
        kwargs["database"] = None
    return settings(max_examples=max_examples, deadline=None, derandomize=CI, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much], **kwargs)


# --------------------------------------------------------------------------------------------------
# The format, written out independently of the implementation (from the module docstring)
# --------------------------------------------------------------------------------------------------

REQ = object()  # a required attribute
OP_NAMES = ("conv", "bn", "relu", "maxpool", "avgpool", "gap", "linear", "dropout", "add", "concat")
_POOL_ATTRS = {"kernel": ("int", 1, REQ), "stride": ("int", 1, None), "padding": ("int", 0, 0)}
#: op -> attribute -> (kind, minimum, default)
ATTRS: dict[str, dict[str, tuple[str, Any, Any]]] = {
    "conv": {"out_channels": ("int", 1, REQ), "kernel": ("int", 1, REQ), "stride": ("int", 1, 1),
             "padding": ("int", 0, None), "groups": ("int", 1, 1), "bias": ("bool", None, True)},
    "bn": {}, "relu": {}, "gap": {}, "concat": {},
    "maxpool": _POOL_ATTRS, "avgpool": _POOL_ATTRS,
    "linear": {"out_features": ("int", 1, REQ), "bias": ("bool", None, True)},
    "dropout": {"p": ("float", 0.0, 0.5)},
    "add": {"weights": ("floats", None, None)},
}
ATTR_NAMES = sorted({name for spec in ATTRS.values() for name in spec})
MERGES = ("add", "concat")
TOP_KEYS = ("version", "input_shape", "num_classes", "nodes", "output", "lineage")
REQUIRED_TOP_KEYS = ("input_shape", "num_classes", "nodes", "output")
ID_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

#: Values of the wrong type or range for most places (plus a few right ones).
BAD_VALUES: tuple[Any, ...] = (
    "3", "", "conv", "input", 3.0, 2.5, -1.5, 0.5, True, False, None, [], [3], ["input"], [1, 8, 8], {},
    {"a": 1}, 10**30, HUGE, -1, 0, 1, -(10**30), NAN, INF, -INF, -0.0, 1e308, "NaN",
)
ODD_KEYS = ("extra", "Id", "OP", "name", "kernel_size", "in_channels", "dilation", "padding_mode",
            "activation", "inputs_", "weight", "output", "nodes", "version", "id", "op", "inputs")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return is_int(value) or math.isfinite(value)


def attr_value_breaks(kind: str, minimum: Any, value: Any) -> bool:
    """Whether a (non-None) value breaks an int/bool/float attribute's rule by itself."""
    if kind == "int":
        return not (is_int(value) and value >= minimum)
    if kind == "bool":
        return not isinstance(value, bool)
    if kind == "float":  # dropout p: a finite number in [0, 1)
        return not (is_finite_number(value) and 0 <= value < 1)
    raise AssertionError(kind)


# --------------------------------------------------------------------------------------------------
# The property: ArchitectureError or a valid, round-tripping Architecture
# --------------------------------------------------------------------------------------------------


def check_error(exc: ArchitectureError) -> None:
    assert exc.node is None or isinstance(exc.node, str), exc.node
    assert isinstance(exc.rule, str) and exc.rule, exc.rule
    assert isinstance(exc.found, str), exc.found
    where = f"node {exc.node!r}" if exc.node is not None else "architecture"
    assert str(exc) == f"{where}: {exc.rule}, but found {exc.found}"


def check_valid(arch: Architecture) -> None:
    assert isinstance(arch, Architecture)
    again = Architecture.from_dict(arch.to_dict())
    assert again == arch and again.id == arch.id
    assert Architecture.from_json(arch.to_json()) == arch
    assert hash(again) == hash(arch)


def parse(data: Any) -> Architecture | ArchitectureError:
    """``from_dict(data)``: the architecture or the ArchitectureError. Any other exception propagates."""
    snapshot = copy.deepcopy(data)
    try:
        result: Architecture | ArchitectureError = Architecture.from_dict(data)
    except ArchitectureError as exc:
        check_error(exc)
        result = exc
    else:
        check_valid(result)
    # deepcopy returns an immutable float as itself, and containers compare their items by identity first, so
    # `is` only lets a top-level NaN through (nan != nan); a changed container still fails
    assert data is snapshot or data == snapshot, "from_dict changed its argument"
    return result


def parse_json(text: str) -> Architecture | ArchitectureError:
    try:
        result: Architecture | ArchitectureError = Architecture.from_json(text)
    except ArchitectureError as exc:
        check_error(exc)
        return exc
    check_valid(result)
    return result


def record(outcome: Architecture | ArchitectureError, counts: Counter) -> None:
    if isinstance(outcome, ArchitectureError):
        counts["invalid"] += 1
        event(f"error at {'node' if outcome.node is not None else 'top level'}: {outcome.rule[:48]}")
    else:
        counts["valid"] += 1
        event("valid")


# --------------------------------------------------------------------------------------------------
# Valid bases
# --------------------------------------------------------------------------------------------------

EXAMPLE = {
    "version": 1, "input_shape": [1, 8, 8], "num_classes": 10,
    "nodes": [
        {"id": "conv1", "op": "conv", "inputs": ["input"], "out_channels": 8, "kernel": 3, "stride": 1,
         "padding": 1, "groups": 1, "bias": False},
        {"id": "bn1", "op": "bn", "inputs": ["conv1"]},
        {"id": "relu1", "op": "relu", "inputs": ["bn1"]},
        {"id": "gap1", "op": "gap", "inputs": ["relu1"]},
        {"id": "linear1", "op": "linear", "inputs": ["gap1"], "out_features": 10, "bias": True},
    ],
    "output": "linear1",
    "lineage": {"parent": "abc", "steps": [{"op": "widen", "site": {"node": "conv1"}, "params": {"width": 16}}]},
}


def _nash_like() -> Architecture:
    g = GraphBuilder((1, 8, 8), num_classes=10)
    x = g.maxpool(g.conv_bn_relu(g.input, 8), 2)
    x = g.maxpool(g.conv_bn_relu(x, 16), 2)
    x = g.conv_bn_relu(x, 16)
    return g.build(g.linear(g.gap(x), 10))


def _residual() -> Architecture:
    """Residual adds (weighted and not), depthwise + pointwise conv, avgpool, dropout."""
    g = GraphBuilder((3, 12, 12), num_classes=5)
    r1 = g.relu(g.bn(g.conv(g.input, 8, 3, bias=False)))
    b2 = g.bn(g.conv(r1, 8, 3, bias=False))
    x = g.maxpool(g.relu(g.add(r1, b2, weights=[1.0, 0.5])), 2)
    y = g.conv(g.conv(x, 8, 3, groups=8), 8, 1)
    x = g.avgpool(g.add(x, y), 3, stride=1, padding=1)
    return g.build(g.linear(g.dropout(g.gap(x), p=0.25), 5))


def _inception() -> Architecture:
    """Four-branch concat (1x1, 3x3, grouped 5x5, avgpool), strided maxpool, strided depthwise conv."""
    g = GraphBuilder((2, 10, 10), num_classes=3)
    s = g.conv_bn_relu(g.input, 6, 3)
    branches = [g.conv(s, 4, 1), g.conv(s, 4, 3), g.conv(s, 6, 5, padding=2, groups=2),
                g.avgpool(s, 3, stride=1, padding=1)]
    x = g.relu(g.bn(g.concat(*branches)))
    x = g.conv(g.maxpool(x, 3, stride=2, padding=1), 20, 3, groups=20, stride=2)
    return g.build(g.linear(g.gap(x), 3))


def _flat_merges() -> Architecture:
    """Add and concat of feature vectors, a hidden linear layer, dropout, lineage with two steps."""
    g = GraphBuilder((4, 6, 6), num_classes=7)
    f = g.gap(g.conv(g.input, 4, 3))
    a = g.add(g.linear(f, 8), g.linear(f, 8, bias=False), weights=[0.5, 0.5])
    x = g.relu(g.dropout(g.concat(a, f)))
    arch = g.build(g.linear(x, 7))
    data = arch.to_dict()
    data["lineage"] = {"parent": "0123456789abcdef", "steps": [
        {"op": "widen", "site": {"node": "linear1"}, "params": {"width": 8, "mapping": [0, 1, 1]}},
        {"op": "add_skip", "site": {"from": "gap1", "to": "concat1"}, "params": {}}]}
    return Architecture.from_dict(data)


def _tiny() -> Architecture:
    g = GraphBuilder((1, 1, 1), num_classes=1)
    return g.build(g.linear(g.gap(g.conv(g.input, 1, 1)), 1))


@dataclass
class Base:
    name: str
    arch: Architecture
    data: dict = field(init=False)

    def __post_init__(self) -> None:
        self.data = self.arch.to_dict()

    @property
    def ids(self) -> list[str]:
        return [n.id for n in self.arch.nodes]


def make_bases() -> list[Base]:
    bases = [Base("example", Architecture.from_dict(EXAMPLE)), Base("nash_like", _nash_like()),
             Base("residual", _residual()), Base("inception", _inception()),
             Base("flat_merges", _flat_merges()), Base("tiny", _tiny())]
    bases.append(Base("nash_seed", nash_seed((1, 8, 8), 10, (8, 16, 16))))
    bases.append(Base("plain_cnn", plain_cnn(depth=5, input_shape=(3, 16, 16), width=4, stages=2)))
    return bases


BASES = make_bases()
ALL_IDS = sorted({i for b in BASES for i in b.ids})


def test_bases_are_valid_and_diverse():
    ops = Counter(n.op for b in BASES for n in b.arch.nodes)
    assert set(ops) == set(OP_NAMES), ops
    assert any(n.op == "conv" and n["groups"] > 1 for b in BASES for n in b.arch.nodes)
    for base in BASES:
        assert parse(copy.deepcopy(base.data)) == base.arch


# --------------------------------------------------------------------------------------------------
# Structured mutations (seeded loop)
# --------------------------------------------------------------------------------------------------

ANY = object()  # don't check the node of the error


@dataclass
class Expect:
    """The mutation certainly breaks a rule: ArchitectureError at ``node``, message containing ``mentions``."""

    node: Any = ANY
    mentions: tuple[str, ...] = ()


VALID = "valid"  # the mutation certainly keeps the architecture valid
EQUAL = "equal"  # ... and describes the very same architecture as the base
MAYBE = None  # could go either way


@dataclass
class Case:
    kind: str
    data: Any
    expect: Any  # Expect, VALID, EQUAL or MAYBE


def node_dict(data: dict, node_id: str) -> dict:
    return next(n for n in data["nodes"] if isinstance(n, dict) and n.get("id") == node_id)


def fresh_id(base: Base, rng: random.Random, prefix: str = "fresh") -> str:
    while True:
        candidate = f"{prefix}{rng.randrange(10**6)}"
        if candidate not in base.ids:
            return candidate


def descendants(arch: Architecture, node_id: str) -> set[str]:
    return {n.id for n in arch.nodes if node_id in arch.ancestors(n.id)}


def pick(rng: random.Random, base: Base, ops: tuple[str, ...] | None = None):
    nodes = [n for n in base.arch.nodes if ops is None or n.op in ops]
    return rng.choice(nodes) if nodes else None


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
    op = rng.choice(["Conv", "conv2d", "", "identity", "pool", "CONV", "linear ", "softmax", "input", "sep_conv"])
    node["op"] = op
    return Case("unknown_op", data, Expect(node["id"], ("'op'", repr(op))))


def m_unknown_node_key(rng, base):
    data = copy.deepcopy(base.data)
    node = rng.choice(data["nodes"])
    allowed = {"id", "op", "inputs", *ATTRS[node["op"]]}
    key = rng.choice([k for k in (*ODD_KEYS, *ATTR_NAMES) if k not in allowed])
    node[key] = copy.deepcopy(rng.choice(BAD_VALUES))
    return Case("unknown_node_key", data, Expect(node["id"], (repr(key),)))


def m_dangling_input(rng, base):
    data = copy.deepcopy(base.data)
    node = rng.choice(data["nodes"])
    missing = rng.choice([fresh_id(base, rng, "missing"), "Input", "", " input", "INPUT", "conv1 "])
    if missing in base.ids:
        return None
    node["inputs"][rng.randrange(len(node["inputs"]))] = missing
    return Case("dangling_input", data, Expect(node["id"], (repr(missing),)))


def m_cycle(rng, base):
    """Rewire an input of node E to E itself or to one of its descendants."""
    early = pick(rng, base)
    later = rng.choice(sorted(descendants(base.arch, early.id)) + [early.id])
    data = copy.deepcopy(base.data)
    node_dict(data, early.id)["inputs"][rng.randrange(len(early.inputs))] = later
    # The nodes are declared in topological order, so the first node stuck in the cycle is E.
    return Case("cycle", data, Expect(early.id, ("acyclic", repr(later))))


def m_duplicate_id(rng, base):
    data = copy.deepcopy(base.data)
    node = pick(rng, base)
    if rng.random() < 0.5 or len(base.ids) < 2:  # a second copy of a node
        data["nodes"].insert(rng.randrange(len(data["nodes"]) + 1), copy.deepcopy(node_dict(data, node.id)))
    else:  # another node renamed to this node's id
        other = rng.choice([i for i in base.ids if i != node.id])
        node_dict(data, other)["id"] = node.id
    return Case("duplicate_id", data, Expect(node.id, ("unique",)))


def m_reserved_id(rng, base):
    data = copy.deepcopy(base.data)
    rng.choice(data["nodes"])["id"] = INPUT
    return Case("reserved_id", data, Expect(INPUT, ("reserved",)))


def m_bad_id(rng, base):
    data = copy.deepcopy(base.data)
    i = rng.randrange(len(data["nodes"]))
    data["nodes"][i]["id"] = rng.choice(
        ["1conv", "conv-1", "conv.1", "", "a" * 65, "con v", "\u00e9t\u00e9", " conv1", "conv1 ", "\t", "a/b",
         "\x00", 1, None, ["conv1"], {"id": "conv1"}, True, 1.5])
    return Case("bad_id", data, Expect(None, (f"nodes[{i}]",)))


def m_rename_node(rng, base):
    """Rename a node consistently (inputs and output follow): still valid."""
    data = copy.deepcopy(base.data)
    old = pick(rng, base).id
    new = rng.choice([fresh_id(base, rng, "renamed_"), "_", "A" * 64, "x" + old])
    if new in base.ids:
        return None
    for node in data["nodes"]:
        node["inputs"] = [new if i == old else i for i in node["inputs"]]
        if node["id"] == old:
            node["id"] = new
    if data["output"] == old:
        data["output"] = new
    return Case("rename_node", data, VALID)


def m_shuffle_nodes(rng, base):
    data = copy.deepcopy(base.data)
    rng.shuffle(data["nodes"])
    return Case("shuffle_nodes", data, VALID)


def m_drop_defaults(rng, base):
    """Leave out attributes that equal their defaults: the very same architecture."""
    data = copy.deepcopy(base.data)
    for node in data["nodes"]:
        defaults = {name: spec[2] for name, spec in ATTRS[node["op"]].items() if spec[2] is not REQ}
        if node["op"] == "conv":
            defaults["padding"] = node["kernel"] // 2
        if node["op"] in ("maxpool", "avgpool"):
            defaults["stride"] = node["kernel"]
        for name, default in defaults.items():
            if name in node and node[name] == default and rng.random() < 0.7:
                if rng.random() < 0.7:
                    del node[name]
                else:
                    node[name] = None  # None means "the default", too
    return Case("drop_defaults", data, EQUAL)


def m_merge_mismatch(rng, base):
    arch = base.arch
    merge = pick(rng, base, MERGES)
    if merge is None:
        return None
    data = copy.deepcopy(base.data)
    k = rng.randrange(len(merge.inputs))
    reference = arch.shape(merge.inputs[1 - k if k < 2 else 0])

    def incompatible(shape):
        if merge.op == "add":
            return shape != reference
        return len(shape) != len(reference) or shape[1:] != reference[1:]

    if rng.random() < 0.5:  # rewire one input to an earlier node of another shape
        forbidden = descendants(arch, merge.id) | {merge.id}
        sources = [s for s in (INPUT, *arch.topological_order) if s not in forbidden and incompatible(arch.shape(s))]
        if not sources:
            return None
        node_dict(data, merge.id)["inputs"][k] = rng.choice(sources)
        return Case("merge_rewire", data, Expect(merge.id, (merge.op,)))
    # resize: change the conv/linear/pool feeding input k (through bn/relu/dropout) so that it no longer fits
    x = merge.inputs[k]
    while x != INPUT and arch.node(x).op in ("bn", "relu", "dropout") and len(arch.consumers(x)) == 1:
        x = arch.node(x).inputs[0]
    others = [o for j, o in enumerate(merge.inputs) if j != k]
    if (x == INPUT or len(arch.consumers(x)) != 1
            or any(o == x or (o != INPUT and x in arch.ancestors(o)) for o in others)):
        return None
    feeder, target, delta = arch.node(x), node_dict(data, x), rng.randint(1, 3)
    if merge.op == "add" and feeder.op == "conv" and feeder["groups"] == 1:
        target["out_channels"] += delta
    elif merge.op == "add" and feeder.op == "linear":
        target["out_features"] += delta
    elif merge.op == "concat" and feeder.op in ("conv", "maxpool", "avgpool"):
        _, h, w = arch.shape(feeder.inputs[0])
        k_, p, s = feeder["kernel"], feeder["padding"], feeder["stride"]
        if (h + 2 * p - k_) // (s + delta) == (h + 2 * p - k_) // s:
            return None
        target["stride"] = s + delta
    else:
        return None
    return Case("merge_resize", data, Expect(merge.id, (merge.op,)))


def m_kernel_too_large(rng, base):
    node = pick(rng, base, ("conv", "maxpool", "avgpool"))
    _, h, w = base.arch.shape(node.inputs[0])
    data = copy.deepcopy(base.data)
    target = node_dict(data, node.id)
    target["kernel"] = rng.choice([max(h, w) + rng.randint(1, 3), max(h, w) * 4 + 1])
    target["padding"] = 0
    return Case("kernel_too_large", data, Expect(node.id, ("kernel",)))


def m_stride_padding(rng, base):
    node = pick(rng, base, ("conv", "maxpool", "avgpool"))
    data = copy.deepcopy(base.data)
    target = node_dict(data, node.id)
    variant = rng.randrange(3)
    if variant == 0:
        target["stride"] = rng.choice([0, -1, -3])
        return Case("bad_stride", data, Expect(node.id, ("'stride'",)))
    if variant == 1:
        target["padding"] = rng.choice([-1, -2])
        return Case("bad_padding", data, Expect(node.id, ("'padding'",)))
    target["padding"] = node["kernel"] // 2 + rng.randint(1, 3)
    return Case("padding_too_large", data, Expect(node.id, ("padding",)))


def m_groups(rng, base):
    node = pick(rng, base, ("conv",))
    cin, cout = base.arch.in_channels(node.id), node["out_channels"]
    groups = rng.choice([g for g in range(2, 2 * max(cin, cout) + 3) if cin % g or cout % g])
    data = copy.deepcopy(base.data)
    node_dict(data, node.id)["groups"] = groups
    return Case("groups_not_dividing", data, Expect(node.id, ("groups",)))


def m_break_output(rng, base):
    data = copy.deepcopy(base.data)
    wrong_shape = [n for n in base.ids if base.arch.shape(n) != (base.arch.num_classes,)]
    if wrong_shape and rng.random() < 0.5:
        data["output"] = rng.choice(wrong_shape)
        return Case("output_wrong_shape", data, Expect(data["output"], ("num_classes",)))
    data["output"] = rng.choice([fresh_id(base, rng, "nowhere"), INPUT, "", data["output"].upper() + "X"])
    return Case("output_missing", data, Expect(None, ("'output'",)))


def m_dead_node(rng, base):
    data = copy.deepcopy(base.data)
    new = fresh_id(base, rng, "dead")
    source = rng.choice([INPUT, *base.ids])
    data["nodes"].insert(rng.randrange(len(data["nodes"]) + 1), {"id": new, "op": "relu", "inputs": [source]})
    return Case("dead_node", data, Expect(new, ("lead to the output",)))


def m_arity(rng, base):
    node = pick(rng, base)
    data = copy.deepcopy(base.data)
    target = node_dict(data, node.id)
    if node.op in MERGES:
        target["inputs"] = rng.choice([target["inputs"][:1], []])
        return Case("arity", data, Expect(node.id, ("at least 2",)))
    target["inputs"] = rng.choice([[], target["inputs"] + [rng.choice([INPUT, *base.ids])]])
    return Case("arity", data, Expect(node.id, ("exactly 1",)))


def m_rank_mismatch(rng, base):
    """A linear layer reading a (C, H, W) tensor."""
    node = pick(rng, base, ("linear",))
    forbidden = descendants(base.arch, node.id) | {node.id}
    sources = [s for s in (INPUT, *base.ids) if s not in forbidden and len(base.arch.shape(s)) == 3]
    data = copy.deepcopy(base.data)
    node_dict(data, node.id)["inputs"] = [rng.choice(sources)]
    return Case("linear_on_spatial", data, Expect(node.id, ("gap",)))


def m_dropout_p(rng, base):
    node = pick(rng, base, ("dropout",))
    if node is None:
        return None
    data = copy.deepcopy(base.data)
    if rng.random() < 0.75:
        node_dict(data, node.id)["p"] = rng.choice([1, 1.0, 1.5, -0.1, NAN, INF, -INF, "0.5", True, [0.5], HUGE, -HUGE])
        return Case("bad_dropout_p", data, Expect(node.id, ("'p'",)))
    node_dict(data, node.id)["p"] = rng.choice([0, 0.0, 0.999, 0.1, None])
    return Case("other_dropout_p", data, VALID)


def m_add_weights(rng, base):
    node = pick(rng, base, ("add",))
    if node is None:
        return None
    n = len(node.inputs)
    data = copy.deepcopy(base.data)
    if rng.random() < 0.75:
        node_dict(data, node.id)["weights"] = rng.choice(
            [[1.0] * (n - 1), [1.0] * (n + 1), [NAN] + [1.0] * (n - 1), [1.0] * (n - 1) + [INF],
             [1, "a"][:n] + [1.0] * (n - 2), [True] + [1.0] * (n - 1), "1,1", 1.0, {}, [[1.0]] * n,
             [HUGE] + [1.0] * (n - 1), [None] * n])
        return Case("bad_add_weights", data, Expect(node.id, ("weight",)))
    node_dict(data, node.id)["weights"] = rng.choice([[1] * n, [-2.5] * n, [0.0] * n, None, [1e300] * n])
    return Case("other_add_weights", data, VALID)


def m_break_lineage(rng, base):
    data = copy.deepcopy(base.data)
    step = {"op": "widen", "site": {"node": base.ids[0]}, "params": {"width": 4}}
    bad = [
        [], "abc", 0, False, 1.5, {"parent": "a"}, {"steps": []}, {"parent": 1, "steps": []},
        {"parent": None, "steps": []}, {"parent": "a", "steps": {}}, {"parent": "a", "steps": "widen"},
        {"parent": "a", "steps": [3]}, {"parent": "a", "steps": [None]}, {"parent": "a", "steps": [[step]]},
        {"parent": "a", "steps": [], "extra": 1},
        {"parent": "a", "steps": [{**step, "op": 1}]}, {"parent": "a", "steps": [{**step, "op": None}]},
        {"parent": "a", "steps": [{"site": {}, "params": {}}]},
        {"parent": "a", "steps": [{**step, "site": []}]}, {"parent": "a", "steps": [{**step, "site": None}]},
        {"parent": "a", "steps": [{"op": "widen", "params": {}}]},
        {"parent": "a", "steps": [{**step, "params": "x"}]}, {"parent": "a", "steps": [{**step, "params": None}]},
        {"parent": "a", "steps": [{**step, "extra": 1}]}, {"parent": "a", "steps": [step, 7]},
    ]
    if rng.random() < 0.8:
        data["lineage"] = copy.deepcopy(rng.choice(bad))
        return Case("bad_lineage", data, Expect(None, ("lineage",)))
    good = [{"parent": "", "steps": []}, {"parent": "a", "steps": [{"op": "w", "site": {}}]},
            {"parent": "a", "steps": [{"op": "", "site": {"k": [1, {"x": None}]}, "params": {"m": [0.5, -1]}}]}]
    data["lineage"] = copy.deepcopy(rng.choice(good))
    return Case("other_lineage", data, VALID)


MUTATIONS: dict[str, Callable[[random.Random, Base], Case | None]] = {
    f.__name__[2:]: f for f in (
        m_del_top_key, m_unknown_top_key, m_wrong_top_value, m_bad_input_shape, m_bad_version,
        m_bad_nodes_container, m_del_node_key, m_wrong_node_value, m_huge_or_extreme_int, m_unknown_op,
        m_unknown_node_key, m_dangling_input, m_cycle, m_duplicate_id, m_reserved_id, m_bad_id, m_rename_node,
        m_shuffle_nodes, m_drop_defaults, m_merge_mismatch, m_kernel_too_large, m_stride_padding, m_groups,
        m_break_output, m_dead_node, m_arity, m_rank_mismatch, m_dropout_p, m_add_weights, m_break_lineage,
    )
}


MISSING = object()


def m_compound(rng: random.Random, base: Base) -> Case | None:
    """2-4 mutations of the same base, grafted onto each other (top-level keys and nodes by position)."""
    cases = [MUTATIONS[rng.choice(sorted(MUTATIONS))](rng, base) for _ in range(rng.randint(2, 4))]
    cases = [c for c in cases if c is not None and isinstance(c.data, dict)]
    if len(cases) < 2:
        return None
    data = cases[0].data
    for case in cases[1:]:
        other = case.data
        for key in (set(other) | set(base.data)) - {"nodes"}:
            if key not in other:
                data.pop(key, None)
            elif other[key] != base.data.get(key, MISSING):
                data[key] = other[key]
        mine, theirs, original = data.get("nodes"), other.get("nodes"), base.data["nodes"]
        if theirs == original or not isinstance(mine, list):
            continue
        if isinstance(theirs, list) and len(theirs) == len(original) == len(mine):
            data["nodes"] = [t if t != o else m for m, t, o in zip(mine, theirs, original)]
        elif mine == original:
            data["nodes"] = theirs
    return Case("compound", data, MAYBE)


N_SEEDED = 1000


def _check_expectation(case: Case, base: Base, outcome: Architecture | ArchitectureError) -> str | None:
    if isinstance(case.expect, Expect):
        if not isinstance(outcome, ArchitectureError):
            return "expected an ArchitectureError, but the dict was accepted"
        if case.expect.node is not ANY and outcome.node != case.expect.node:
            return f"expected the error at node {case.expect.node!r}, got: {outcome}"
        missing = [m for m in case.expect.mentions if m not in str(outcome)]
        if missing:
            return f"expected the message to mention {missing}, got: {outcome}"
    elif case.expect in (VALID, EQUAL):
        if isinstance(outcome, ArchitectureError):
            return f"expected a valid architecture, got: {outcome}"
        if case.expect == EQUAL and outcome != base.arch:
            return "expected the same architecture as the base"
    return None


def test_structured_mutations_seeded():
    rng = random.Random(20240531)
    generators = {**MUTATIONS, "compound": m_compound}
    used, kinds, outcomes = Counter(), Counter(), Counter()
    problems: dict[str, list[str]] = {}  # one entry per distinct problem, with its (first few) inputs
    while sum(kinds.values()) < N_SEEDED:
        name = rng.choice(sorted(generators))
        for base in rng.sample(BASES, len(BASES)) * 4:  # the first base the (randomised) mutation applies to
            case = generators[name](rng, base)
            if case is not None:
                break
        else:
            raise AssertionError(f"mutation {name} applies to none of the bases")
        used[name] += 1
        kinds[case.kind] += 1
        try:
            outcome = parse(case.data)
        except Exception as exc:  # noqa: BLE001 - anything but ArchitectureError is what we look for
            outcomes["crash"] += 1
            problem = f"{type(exc).__name__} escaped: {str(exc)[:160]}"
        else:
            outcomes["invalid" if isinstance(outcome, ArchitectureError) else "valid"] += 1
            problem = _check_expectation(case, base, outcome)
            if problem is None:
                continue
        problems.setdefault(problem, []).append(f"[{case.kind} on {base.name}] {repr(case.data)[:500]}")
    report = "\n".join(f"{p}\n    ({len(inputs)}x) e.g. {inputs[0]}" for p, inputs in problems.items())
    assert not problems, f"{sum(map(len, problems.values()))} of {N_SEEDED} cases failed:\n{report}"
    assert outcomes["invalid"] > N_SEEDED // 2, outcomes  # the majority is malformed ...
    assert outcomes["valid"] >= N_SEEDED // 20, outcomes  # ... but valid results and round trips are exercised
    assert set(used) == set(generators), set(generators) - set(used)
    assert min(used.values()) >= 10, used


# --------------------------------------------------------------------------------------------------
# Hypothesis strategies
# --------------------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=8), children, max_size=4)),
    max_leaves=12,
)
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

N_HYPOTHESIS = 250


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


BASE_JSONS = [b.arch.to_json() for b in BASES] + [json.dumps(EXAMPLE, indent=2)]


@st.composite
def json_texts(draw: Callable[[st.SearchStrategy], Any]) -> str:
    kind = draw(st.sampled_from(["text", "truncated", "corrupted", "random_json", "wrapped"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    if kind == "random_json":
        return json.dumps(draw(json_values))
    text = draw(st.sampled_from(BASE_JSONS))
    if kind == "truncated":
        return text[:draw(st.integers(0, len(text) - 1))]
    if kind == "wrapped":  # valid JSON (mostly), but the wrong container or trailing junk
        template = draw(st.sampled_from(["[{0}]", '{{"a": {0}}}', "{0}{0}", "{0},", " {0} \n", "{0} x"]))
        return json.dumps(text) if draw(st.booleans()) else template.format(text)
    i = draw(st.integers(0, len(text) - 1))  # corrupted: one character replaced, inserted or deleted
    action = draw(st.sampled_from(["replace", "insert", "delete"]))
    char = draw(st.one_of(st.sampled_from(list('{}[]",:0-9.eE tfn\\')), st.characters()))
    if action == "replace":
        return text[:i] + char + text[i + 1:]
    if action == "insert":
        return text[:i] + char + text[i:]
    return text[:i] + text[i + 1:]


def test_from_json_random_text():
    counts: Counter = Counter()

    @fuzz_settings(N_HYPOTHESIS)
    @given(text=json_texts())
    def run(text: str) -> None:
        record(parse_json(text), counts)

    run()
    assert sum(counts.values()) >= N_HYPOTHESIS
    assert counts["invalid"] > counts["valid"], counts


def test_from_json_truncated_exhaustive():
    """Every proper prefix of every base's JSON is invalid JSON and gives ArchitectureError."""
    cuts = 0
    for text in BASE_JSONS:
        for cut in range(len(text)):
            outcome = parse_json(text[:cut])
            assert isinstance(outcome, ArchitectureError), text[:cut]
            assert "valid JSON" in outcome.rule, outcome
            cuts += 1
        assert parse_json(text) == Architecture.from_dict(json.loads(text))
    assert cuts >= 500


# --------------------------------------------------------------------------------------------------
# Regressions: minimal reproducers of what the fuzzers found
# --------------------------------------------------------------------------------------------------


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
