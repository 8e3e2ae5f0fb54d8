"""What every compression's child must satisfy, shared by test_compression.py and test_compression_properties.py.

:func:`check_child` asserts the contract: the child is valid (its dict form parses back to it), smaller, loads
strictly into its module, holds only its parent's keys minus those of the removed nodes, every tensor an exact
slice of the parent's (:func:`assert_sorted_slice`), a finite preservation error, and replay of its lineage gives
the same child and the same weights bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from nni_nas_ext.core import Architecture, MorphismResult, Step, build_module, preservation_error, replay, state_key


def assert_sorted_slice(child: torch.Tensor, parent: torch.Tensor, key: str) -> None:
    """``child == parent[np.ix_(i_0, ..., i_k)]`` for strictly increasing index lists ``i_d``.

    Needs the entries of ``parent`` to differ from one another (``_archgen.distinct_state``): each entry of
    ``child`` then names the one position of ``parent`` it came from.
    """
    assert child.dim() == parent.dim() and child.dtype == parent.dtype, (key, child.shape, parent.shape)
    if child.dim() == 0:
        assert torch.equal(child, parent), key
        return
    where = {v: i for i, v in enumerate(parent.flatten().tolist())}
    assert len(where) == parent.numel(), f"{key}: the parent's entries must all differ for this check"
    values = child.flatten().tolist()
    missing = [v for v in values if v not in where]
    assert not missing, f"{key}: {len(missing)} entries of the child are not the parent's, e.g. {missing[:3]}"
    positions = np.unravel_index(np.asarray([where[v] for v in values], dtype=np.int64), tuple(parent.shape))
    for d in range(child.dim()):
        # The parent's index along d must depend on the child's index along d alone, and increase with it.
        along = np.moveaxis(positions[d].reshape(tuple(child.shape)), d, 0).reshape(child.shape[d], -1)
        assert (along == along[:, :1]).all(), f"{key}: dim {d} is not a slice of the parent's"
        assert (np.diff(along[:, 0]) > 0).all(), f"{key}: dim {d} keeps {along[:, 0].tolist()}, not ascending"


def check_child(parent: Architecture, state: dict[str, torch.Tensor], result: MorphismResult,
                batch: torch.Tensor, *, slices: bool = True) -> dict[str, torch.Tensor]:
    """Assert the contract of a compression's child (module docstring); return the child's state.

    ``slices=False`` skips :func:`assert_sorted_slice` (for hand-made weights whose entries repeat).
    """
    child = result.child
    assert Architecture.from_json(child.to_json()) == child  # valid, lineage included
    assert child.num_parameters() < parent.num_parameters()
    child_state = result.transform(state, batch)
    module = build_module(child, child_state)  # loads strictly: keys and shapes are the child's
    assert sum(p.numel() for p in module.parameters()) == child.num_parameters()
    assert set(child_state) <= set(state)
    assert set(state) - set(child_state) == {k for k in state if k.split(".")[1] not in child}
    if slices:
        for key, value in child_state.items():
            assert_sorted_slice(value, state[key], key)
    error = preservation_error(parent, state, child, child_state, batch)
    assert math.isfinite(error.max_abs) and math.isfinite(error.relative), error
    assert child.lineage is not None and child.lineage.parent == parent.id
    again = replay(parent, child.lineage.steps)
    assert again.child == child
    again_state = again.transform(state, batch)
    assert again_state.keys() == child_state.keys()
    assert all(torch.equal(again_state[k], child_state[k]) for k in child_state)
    return child_state


def expected_kept(parent: Architecture, state: dict[str, torch.Tensor], step: Step) -> list[int]:
    """The units a shrink step must keep, computed here from its definition: the ``width`` largest scores (L1 norm
    of a unit's incoming weights, or |gamma| of the BatchNorm after it), the lowest index first among equals."""
    node, width, criterion = step.site["node"], step.params["width"], step.params["criterion"]
    if criterion == "bn_scale":
        (bn,) = parent.consumers(node)
        assert parent.node(bn).op == "bn"
        scores = state[state_key(bn, "weight")].double().abs().tolist()
    else:
        assert criterion == "l1"
        scores = state[state_key(node, "weight")].double().abs().flatten(1).sum(dim=1).tolist()
    return sorted(sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:width])
