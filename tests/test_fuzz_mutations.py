"""Fuzz: 1,000 seeded structured mutations of diverse valid bases give ArchitectureError, never another exception.

``test_structured_mutations_seeded`` -- 1,000 targeted mutations of diverse valid bases, drawn by
``random.Random`` with a fixed seed (deterministic everywhere). Where a mutation certainly breaks a
rule (unknown op, dangling input, cycle, duplicate id, merge mismatch, kernel that does not fit, ...)
the error must be raised and name the offending node or key; mutations that certainly keep the
architecture valid (node order, renaming, dropping defaults) must parse. Most cases are invalid.
The generators are in ``_fuzz_key_mutations.py`` and ``_fuzz_graph_mutations.py``; the bases, and the
property every outcome must have, in ``_fuzz_helpers.py``.
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from typing import Callable

from _fuzz_graph_mutations import (
    m_add_weights, m_arity, m_bad_id, m_break_lineage, m_break_output, m_cycle, m_dangling_input, m_dead_node,
    m_drop_defaults, m_dropout_p, m_duplicate_id, m_groups, m_kernel_too_large, m_merge_mismatch,
    m_rank_mismatch, m_rename_node, m_reserved_id, m_shuffle_nodes, m_stride_padding,
)
from _fuzz_helpers import ANY, BASES, EQUAL, MAYBE, OP_NAMES, VALID, Base, Case, Expect, parse
from _fuzz_key_mutations import (
    m_bad_input_shape, m_bad_nodes_container, m_bad_version, m_del_node_key, m_del_top_key,
    m_huge_or_extreme_int, m_unknown_node_key, m_unknown_op, m_unknown_top_key, m_wrong_node_value,
    m_wrong_top_value,
)
from nni_nas_ext.core import Architecture, ArchitectureError


def test_bases_are_valid_and_diverse():
    ops = Counter(n.op for b in BASES for n in b.arch.nodes)
    assert set(ops) == set(OP_NAMES), ops
    assert any(n.op == "conv" and n["groups"] > 1 for b in BASES for n in b.arch.nodes)
    for base in BASES:
        assert parse(copy.deepcopy(base.data)) == base.arch


# --------------------------------------------------------------------------------------------------
# Structured mutations (seeded loop)
# --------------------------------------------------------------------------------------------------

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
