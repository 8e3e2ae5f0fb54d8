"""Structured mutations of an architecture's graph: ids and wiring, merges, shapes, attribute ranges, lineage.

Each ``m_<name>(rng, base)`` draws one mutation of a valid base with ``random.Random`` and returns the
:class:`Case` it makes (or ``None`` where it does not apply): certainly invalid (a dangling input, a cycle,
a duplicate id, a merge mismatch, a kernel that does not fit, ...), certainly valid (node order, renaming,
dropping defaults) or either. The seeded loop in ``test_fuzz_mutations.py`` runs them; mutations of keys
and values are in ``_fuzz_key_mutations.py``.
"""

from __future__ import annotations

import copy

from _fuzz_helpers import (
    ATTRS, EQUAL, HUGE, INF, INPUT, MERGES, NAN, REQ, VALID, Case, Expect, descendants, fresh_id, node_dict,
    pick,
)


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
