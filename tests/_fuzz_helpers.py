"""Shared pieces of the architecture-parser fuzz tests (``tests/test_fuzz_*.py``).

Issue: "at least 500 random malformed architecture dicts each give our validation error, never another
exception". Every input goes through :meth:`Architecture.from_dict` (or ``from_json``), and the call
must either return an :class:`Architecture` -- a mutation may happen to stay valid; then the result must
round-trip through ``to_dict`` and ``to_json`` -- or raise :class:`ArchitectureError` whose message is
``"node 'x': <rule>, but found <found>"``. Anything else escaping the parser fails the test.

This module holds what several fuzz test modules use: the Hypothesis settings, the format written out
independently of the implementation, the property (:func:`parse`, :func:`parse_json`), the diverse valid
bases, the expectations a mutation declares (:class:`Case`, :class:`Expect`) and the JSON-value strategies.

Hypothesis runs derandomised (and without its example database) when the environment variable ``CI``
is set, so CI sees the same examples on every run; locally it explores new ones each time.
"""

from __future__ import annotations

import copy
import math
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, settings
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


N_HYPOTHESIS = 250


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

# --------------------------------------------------------------------------------------------------
# Mutation cases: what a structured mutation declares about its outcome
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


# --------------------------------------------------------------------------------------------------
# JSON-like values (Hypothesis strategies)
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
