"""Path-level transformations (Cai et al., ICML 2018) and the tree view of cells (issue 19).

Every transformation preserves the function (eval mode, and train mode where stated), property-tested over
random cell trees grown from random seeds; replication breaks the copies' symmetry exactly; pooling insertion
is reported as not exact; the cells stay "the same cell repeated"; errors name the value and the remedy.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nni_nas_ext.core import Architecture, GraphBuilder, build_module, preservation_error, replay
from nni_nas_ext.core.cells import (
    Leaf, Merge, Seq, cell_names, cell_tree, edit_cells, leaves, render, subtree,
)
from nni_nas_ext.core.errors import ArchitectureError, MorphismError
from nni_nas_ext.core.summary import summarize
from nni_nas_ext.core.morphisms import (
    EXACT_PRIMITIVES, POOL_PRIMITIVES, InsertLayer, ReplicateAdd, SplitConcat, layer_chain, primitive_applies,
    split_sizes, step_is_exact,
)
from nni_nas_ext.search_spaces import cell_cnn

TOLERANCE = 1e-5
_settings = settings(max_examples=40, deadline=None, derandomize=bool(os.environ.get("CI")),
                     suppress_health_check=[HealthCheck.too_slow])


def _random_state(arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
    """Weights with non-trivial BatchNorm statistics and affine parameters (so an identity is not by luck)."""
    torch.manual_seed(seed)
    state = {k: v.clone() for k, v in build_module(arch).state_dict().items()}
    for key, value in state.items():
        if key.endswith("running_var"):
            state[key] = torch.rand_like(value) + 0.5
        elif key.endswith("running_mean") or (key.endswith(".bias") and value.dim() == 1):
            state[key] = torch.randn_like(value) * 0.2
        elif key.endswith(".weight") and value.dim() == 1:
            state[key] = torch.rand_like(value) + 0.5
    return state


def _split_width(arch: Architecture, path: tuple[int, ...]) -> int:
    """The fewest output channels of the leaf's split convolution (its last) over the cells."""
    return min([arch.node(n)["out_channels"] for n in subtree(cell_tree(arch, c), path).nodes
                if arch.node(n).op == "conv"][-1] for c in cell_names(arch))


def _random_edit(arch: Architecture, rng: np.random.Generator) -> tuple[str, tuple[int, ...], dict]:
    """A random path-level edit that applies at the same leaf of every cell."""
    tree = cell_tree(arch, cell_names(arch)[0])
    options = []
    for path, leaf in leaves(tree):
        if not leaf.nodes:
            continue
        head = arch.node(leaf.nodes[0])
        options.append(("insert_layer", path))
        if head.op == "conv":
            options.append(("replicate_add", path))
            separable = len(leaf.nodes) > 1 and arch.node(leaf.nodes[1]).op == "conv"
            if (head["groups"] == 1 or separable) and _split_width(arch, path) >= 4:
                options.append(("split_concat", path))
    op, path = options[int(rng.integers(len(options)))]
    if op == "insert_layer":
        widths = [arch.shape(subtree(cell_tree(arch, c), path).nodes[-1])[0] for c in cell_names(arch)]
        fits = [p for p in EXACT_PRIMITIVES if all(primitive_applies(p, w, 2) is None for w in widths)]
        primitive = str(rng.choice(fits))
        return op, path, {"primitive": primitive, **({"groups": 2} if primitive == "gconv3x3" else {})}
    if op == "split_concat":  # each branch needs a channel, in every cell
        return op, path, {"branches": int(rng.choice([b for b in (2, 3) if 2 * b <= _split_width(arch, path)]))}
    params = {"branches": int(rng.choice([2, 3]))}
    if op == "replicate_add" and rng.random() < 0.7:
        params["seed"] = int(rng.integers(0, 2**31 - 1))
    return op, path, params


@_settings
@given(seed=st.integers(0, 2**32 - 1), n_edits=st.integers(1, 5))
def test_random_trees_of_edits_preserve_the_function(seed: int, n_edits: int) -> None:
    rng = np.random.default_rng(seed)
    widths = tuple(int(w) for w in rng.choice([4, 6, 8], size=int(rng.integers(1, 3))))
    arch = cell_cnn(input_shape=(int(rng.choice([1, 3])), 8, 8), widths=widths,
                    cells_per_stage=int(rng.integers(1, 3)), stem_width=4)
    state = _random_state(arch, seed % 10_000)
    batch = torch.randn(6, *arch.input_shape, generator=torch.Generator().manual_seed(seed % 997))
    parent, parent_state = arch, state
    steps = []
    for _ in range(n_edits):
        op, path, params = _random_edit(arch, rng)
        result = edit_cells(arch, op, path, params)
        assert len(result.steps) == len(cell_names(arch))  # one step per cell
        steps.extend(result.steps)
        state = result.transform(state, batch)
        arch = result.child
        signatures = {repr(cell_tree(arch, c).signature()) for c in cell_names(arch)}
        assert len(signatures) == 1, f"the cells differ: {[render(cell_tree(arch, c)) for c in cell_names(arch)]}"
    error = preservation_error(parent, parent_state, arch, state, batch)
    assert error.relative <= TOLERANCE, f"{[s.describe() for s in steps]}: {error}"
    # the whole story replays from JSON to the same child and the same weights
    again = replay(parent, [type(s).from_dict(s.to_dict()) for s in steps])
    assert again.child == arch.with_lineage(None).with_lineage(again.child.lineage)
    again_state = again.transform(parent_state, batch)
    assert all(torch.equal(again_state[k], state[k]) for k in state)


def test_seed_cells_are_single_layers_between_markers() -> None:
    arch = cell_cnn(widths=(8, 16), cells_per_stage=2)
    assert cell_names(arch) == ["cell0", "cell1", "cell2", "cell3"]
    tree = cell_tree(arch, "cell2")
    assert isinstance(tree, Leaf) and tree.primitive == "conv3x3" and len(tree.nodes) == 3
    assert arch.shape("cell2_out") == (16, 14, 14)


def test_split_concat_is_exact_in_train_mode_and_slices_the_weights() -> None:
    arch = cell_cnn(widths=(7,), cells_per_stage=1, stem_width=4)  # 7 channels: 3 branches of 3, 2, 2
    state = _random_state(arch, 0)
    batch = torch.randn(5, 1, 28, 28)
    result = edit_cells(arch, "split_concat", (), {"branches": 3})
    child_state = result.transform(state, batch)
    assert preservation_error(arch, state, result.child, child_state, batch, train_mode=True).max_abs < 1e-5
    tree = cell_tree(result.child, "cell0")
    assert isinstance(tree, Merge) and tree.scheme == "concat" and len(tree.branches) == 3
    conv = tree.branches[0].nodes[0]
    assert split_sizes(7, 3) == [3, 2, 2]
    parent_w = state[f"layers.{conv}.weight"]
    pieces = [child_state[f"layers.{b.nodes[0]}.weight"] for b in tree.branches]
    assert [p.shape[0] for p in pieces] == [3, 2, 2]
    assert torch.equal(torch.cat(pieces), parent_w)


def _branch_convs(arch: Architecture) -> list[str]:
    tree = cell_tree(arch, "cell0")
    assert isinstance(tree, Merge)
    return [b.nodes[0] for b in tree.branches]


@pytest.mark.parametrize("mode, separate", [("exact", True), ("replicate", False)])
def test_exact_replication_breaks_symmetry_where_copies_stay_copies(mode: str, separate: bool) -> None:
    arch = cell_cnn(widths=(6,), cells_per_stage=1, stem_width=4)
    state = _random_state(arch, 1)
    batch = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    step = ReplicateAdd(branches=(2,), mode=mode).apply(arch, {"node": cell_tree(arch, "cell0").nodes[0]},
                                                      np.random.default_rng(0))
    child_state = step.transform(state, batch)
    assert preservation_error(arch, state, step.child, child_state, batch, train_mode=True).relative < 1e-5
    model = build_module(step.child, child_state).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(batch), torch.arange(16) % 10).backward()
        opt.step()
    a, b = (model.layers[c].weight.detach() for c in _branch_convs(step.child))
    assert (not torch.allclose(a / a.norm(), b / b.norm(), atol=1e-6)) == separate


def test_pooling_insertion_is_offered_only_on_request_and_is_not_exact() -> None:
    arch = cell_cnn(widths=(4,), cells_per_stage=1, stem_width=4)
    assert set(InsertLayer().primitives) == set(EXACT_PRIMITIVES)
    state = _random_state(arch, 2)
    batch = torch.randn(4, 1, 28, 28)
    for primitive in POOL_PRIMITIVES:
        result = edit_cells(arch, "insert_layer", (), {"primitive": primitive})
        assert not step_is_exact(result.steps[0])
        error = preservation_error(arch, state, result.child, result.transform(state, batch), batch)
        assert error.relative > 1e-3  # a 3x3 pooling is no identity
        assert render(cell_tree(result.child, "cell0")) == f"seq(conv3x3, {primitive})"
    for primitive in EXACT_PRIMITIVES:
        params = {"primitive": primitive, **({"groups": 2} if primitive == "gconv3x3" else {})}
        result = edit_cells(arch, "insert_layer", (), params)
        assert step_is_exact(result.steps[0])
        assert render(cell_tree(result.child, "cell0")) == f"seq(conv3x3, {primitive})"


def test_trees_nest_and_paths_name_their_nodes() -> None:
    arch = cell_cnn(widths=(6,), cells_per_stage=2, stem_width=4)
    arch = edit_cells(arch, "replicate_add", (), {"branches": 2}).child
    arch = edit_cells(arch, "insert_layer", (1,), {"primitive": "sepconv5x5"}).child
    arch = edit_cells(arch, "split_concat", (1, 0), {"branches": 2}).child
    for cell in cell_names(arch):
        tree = cell_tree(arch, cell)
        assert render(tree) == "add(conv3x3, seq(concat(conv3x3, conv3x3), sepconv5x5))"
        assert isinstance(subtree(tree, (1,)), Seq)
        assert [p for p, _ in leaves(tree)] == [(0,), (1, 0, 0), (1, 0, 1), (1, 1)]
    # the one-line summary (the portal's trial table) shows each cell as its tree
    text = summarize(arch, params=False)
    assert text == ("conv3x3-4 > [add(conv3x3, seq(concat(conv3x3, conv3x3), sepconv5x5))] > "
                    "[add(conv3x3, seq(concat(conv3x3, conv3x3), sepconv5x5))] > gap > fc-10")
    with pytest.raises(MorphismError, match=r"path \[1\] is not a leaf with a layer"):
        edit_cells(arch, "replicate_add", (1,), {"branches": 2})
    with pytest.raises(MorphismError, match=r"no node at path \[5\]"):
        edit_cells(arch, "insert_layer", (5,), {"primitive": "conv1x1"})


def test_bad_parameters_are_named_with_the_remedy() -> None:
    arch = cell_cnn(widths=(4,), cells_per_stage=1, stem_width=4)
    with pytest.raises(MorphismError, match=r"number of branches must be an integer in \[2, 8\], but got 1"):
        edit_cells(arch, "replicate_add", (), {"branches": 1})
    with pytest.raises(MorphismError, match="3 branches for 4 output channels; each branch keeps at least 2, so use at "
                                            "most 2 branches here"):
        edit_cells(arch, "split_concat", (), {"branches": 3})
    with pytest.raises(MorphismError, match="grouped convolution on 4 channels needs groups >= 2 .* groups=4"):
        edit_cells(arch, "insert_layer", (), {"primitive": "gconv3x3", "groups": 4})
    with pytest.raises(MorphismError, match="primitive must be one of .* but got 'conv9x9'"):
        edit_cells(arch, "insert_layer", (), {"primitive": "conv9x9"})
    with pytest.raises(MorphismError, match="op must be one of .* but got 'widen'"):
        edit_cells(arch, "widen", (), {})
    with pytest.raises(ValueError, match="mode must be 'exact' or 'replicate', but got 'noise'"):
        ReplicateAdd(mode="noise")
    with pytest.raises(ValueError, match="primitives must be a non-empty subset"):
        InsertLayer(primitives=("conv2x2",))
    # a grouped convolution's outputs cannot be split on their own
    grouped = edit_cells(arch, "insert_layer", (), {"primitive": "gconv3x3", "groups": 2}).child
    gconv = cell_tree(grouped, "cell0").parts[1].nodes[0]
    assert "grouped convolution" in SplitConcat().check(grouped, {"node": gconv})


def test_a_connection_into_the_middle_of_a_cell_is_not_a_tree() -> None:
    g = GraphBuilder((1, 8, 8), 3)
    stem = g.conv_bn_relu(g.input, 4)
    x = g.identity(stem, node_id="c_in")
    y = g.conv_bn_relu(x, 4)
    y = g.node("add", [y, stem])  # the stem reaches into the cell
    x = g.identity(g.conv_bn_relu(y, 4), node_id="c_out")
    arch = g.build(g.linear(g.gap(x), 3))
    assert cell_names(arch) == ["c"]
    with pytest.raises(ArchitectureError, match="must be entered only at 'c_in'"):
        cell_tree(arch, "c")
    with pytest.raises(ArchitectureError, match="a cell 'd' needs identity nodes"):
        cell_tree(arch, "d")


def test_layer_chain_groups_a_separable_convolution() -> None:
    arch = cell_cnn(widths=(4,), cells_per_stage=1, stem_width=4)
    arch = edit_cells(arch, "insert_layer", (), {"primitive": "sepconv3x3"}).child
    sep = cell_tree(arch, "cell0").parts[1]
    assert sep.primitive == "sepconv3x3" and len(sep.nodes) == 4
    assert layer_chain(arch, sep.nodes[0]) == sep.nodes
    assert layer_chain(arch, "nope") is None


def test_a_cell_nested_deeper_than_the_stack_is_summarised_flat_not_raised() -> None:
    g = GraphBuilder((1, 8, 8), 3)
    x = g.identity(g.conv_bn_relu(g.input, 4), node_id="c_in")
    for _ in range(1500):  # architectures come from any experiment folder (the report): no RecursionError
        x = g.node("add", [g.relu(x), x])
    arch = g.build(g.linear(g.gap(g.identity(x, node_id="c_out")), 3))
    text = summarize(arch, params=False)
    assert text.startswith("conv3x3-4 > add(2) > add(2)") and "[" not in text
