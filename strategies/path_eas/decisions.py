"""Path-level EAS' decisions on a cell tree, their masks, and the child they build.

Cai, Yang, Zhang, Han, Yu, *Path-Level Network Transformation for Efficient Architecture Search*, ICML 2018,
sec. 3.3: the meta-controller visits the cell tree and decides, at a node, its merge scheme and number of
branches, and at a leaf whether to insert a layer and of which primitive. Here the decisions are read leaf by
leaf, left to right (:func:`leaf_options`): for each leaf with a layer, first *insert* (``none`` or a primitive),
then *expand* (``none``, or replication-add / split-concat into ``n`` branches). Every decision is masked to what
applies in **every** cell (the cell is repeated), so no impossible child is ever drawn. A child stops after
``max_edits`` transformations (**a deviation**: the paper decides at every node; on a CPU budget a child must
stay small), and the decisions not taken are not part of its trajectory.

A :class:`TreeTrajectory` (the parent's tree signature and the decisions with their masks) is what REINFORCE
re-scores; it round-trips through JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nni_nas_ext.core.architecture import Architecture, Lineage, Step
from nni_nas_ext.core.cells import Leaf, cell_names, cell_tree, edit_cells, leaves
from nni_nas_ext.core.morphisms import InsertLayer, ReplicateAdd, SplitConcat, primitive_applies

from .config import PathEasConfig

__all__ = ["Decision", "LeafOptions", "TreeTrajectory", "apply_decisions", "draw_decisions", "expand_choices",
           "insert_choices", "leaf_options"]

NONE = "none"


def insert_choices(config: PathEasConfig) -> tuple[str, ...]:
    """The insert decision's choices: ``none``, then the configured primitives."""
    return (NONE, *config.primitives)


def expand_choices(config: PathEasConfig) -> tuple[str, ...]:
    """The expand decision's choices: ``none``, ``add<n>`` (replication-add), ``concat<n>`` (split-concat)."""
    return (NONE, *(f"add{b}" for b in config.branches), *(f"concat{b}" for b in config.branches))


@dataclass(frozen=True)
class LeafOptions:
    """What may be done at one leaf of the tree (in every cell): the two masks, ``none`` always allowed."""

    leaf: int
    insert: tuple[bool, ...]
    expand: tuple[bool, ...]
    groups: int | None  # the grouped convolution's groups, when it is allowed


def _gconv_groups(widths: Sequence[int]) -> int | None:
    return next((g for g in (4, 2) if all(primitive_applies("gconv3x3", w, g) is None for w in widths)), None)


def leaf_options(arch: Architecture, config: PathEasConfig) -> list[LeafOptions]:
    """For each leaf of the cells' tree (left to right), which insert and expand choices apply in every cell."""
    cells = cell_names(arch)
    per_cell = [leaves(cell_tree(arch, c)) for c in cells]
    options = []
    for i, (_, leaf) in enumerate(per_cell[0]):
        same = [cell_leaves[i][1] for cell_leaves in per_cell]
        if not leaf.nodes or any(not x.nodes for x in same):
            options.append(LeafOptions(i, (True,) + (False,) * len(config.primitives),
                                       (True,) + (False,) * (2 * len(config.branches)), None))
            continue
        widths = [arch.shape(x.nodes[-1])[0] for x in same]
        can_insert = all(InsertLayer().check(arch, {"node": x.nodes[-1]}) is None for x in same)
        groups = _gconv_groups(widths)
        insert = [True] + [can_insert and all(primitive_applies(p, w, groups) is None for w in widths)
                           for p in config.primitives]
        replicate = all(ReplicateAdd().check(arch, {"node": x.nodes[0]}) is None for x in same)
        expand = [True] + [replicate for _ in config.branches]
        expand += [all(SplitConcat(branches=(b,)).check(arch, {"node": x.nodes[0]}) is None for x in same)
                   for b in config.branches]
        options.append(LeafOptions(i, tuple(insert), tuple(expand), groups))
    return options


@dataclass(frozen=True)
class Decision:
    """One decision at leaf ``leaf``: ``kind`` ``insert`` or ``expand``, ``choice`` an index into its choices,
    sampled under ``mask``."""

    leaf: int
    kind: str
    choice: int
    mask: tuple[bool, ...]

    def __post_init__(self) -> None:
        if self.kind not in ("insert", "expand"):
            raise ValueError(f"a decision's kind must be 'insert' or 'expand', but got {self.kind!r}")
        if not 0 <= self.choice < len(self.mask) or not self.mask[self.choice]:
            raise ValueError(f"decision {self.kind} at leaf {self.leaf}: choice {self.choice} is not allowed by "
                             f"its mask {list(self.mask)}")

    def to_dict(self) -> dict[str, Any]:
        return {"leaf": self.leaf, "kind": self.kind, "choice": self.choice, "mask": list(self.mask)}

    @classmethod
    def from_dict(cls, data: Any) -> Decision:
        if not isinstance(data, Mapping) or set(data) != {"leaf", "kind", "choice", "mask"}:
            raise ValueError(f"a decision is an object with keys leaf, kind, choice, mask, but got {data!r:.200}")
        mask = data["mask"]
        if not isinstance(mask, list) or not all(isinstance(m, bool) for m in mask):
            raise ValueError(f"a decision's mask must be a list of booleans, but got {mask!r:.200}")
        for key in ("leaf", "choice"):
            if isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 0:
                raise ValueError(f"a decision's {key!r} must be an integer >= 0, but got {data[key]!r}")
        return cls(data["leaf"], str(data["kind"]), data["choice"], tuple(mask))


@dataclass(frozen=True)
class TreeTrajectory:
    """The decisions that built one child, with the parent's tree signature they were taken on."""

    tree: Any
    decisions: tuple[Decision, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"tree": self.tree, "decisions": [d.to_dict() for d in self.decisions]}

    @classmethod
    def from_dict(cls, data: Any) -> TreeTrajectory:
        if not isinstance(data, Mapping) or set(data) != {"tree", "decisions"} or \
                not isinstance(data["decisions"], list):
            raise ValueError(f"a trajectory is an object with keys tree and decisions (a list), but got {data!r:.200}")
        return cls(data["tree"], tuple(Decision.from_dict(d) for d in data["decisions"]))


def draw_decisions(options: Sequence[LeafOptions], max_edits: int,
                   choose: Callable[[int, str, tuple[bool, ...]], int]) -> tuple[Decision, ...]:
    """The decisions of one child, in the order of the module docstring: leaf by leaf, *insert* then *expand*, a
    decision only where more than ``none`` is allowed, stopping once ``max_edits`` are not ``none``.

    ``choose(position, kind, mask)`` draws the choice of one decision (``position``: the leaf's index in ``options``);
    the controller samples it from its heads, the random baseline uniformly among the allowed choices.
    """
    decisions: list[Decision] = []
    edits = 0
    for position, opts in enumerate(options):
        for kind, mask in (("insert", opts.insert), ("expand", opts.expand)):
            if edits >= max_edits:
                return tuple(decisions)
            if sum(mask) <= 1:  # only 'none': nothing to decide here
                continue
            choice = choose(position, kind, mask)
            decisions.append(Decision(opts.leaf, kind, choice, mask))
            edits += choice != 0
    return tuple(decisions)


def apply_decisions(start: Architecture, decisions: Sequence[Decision], options: Sequence[LeafOptions],
                    config: PathEasConfig, rng: np.random.Generator) -> tuple[Architecture, list[str]]:
    """The child of ``start`` that ``decisions`` describe (lineage: every step, one per cell per edit); and
    what was done, in words.

    A leaf is found again after earlier edits by its first node (transformations keep the ids of the layer they
    start from), so the decisions of one child may touch several leaves in any order.
    """
    first = cell_names(start)[0]
    ids = [leaf.nodes[0] if leaf.nodes else None for _, leaf in leaves(cell_tree(start, first))]
    arch = start
    steps: list[Step] = []
    done: list[str] = []
    inserts, expands = insert_choices(config), expand_choices(config)
    for d in decisions:
        name = (inserts if d.kind == "insert" else expands)[d.choice]
        if name == NONE:
            continue
        anchor = ids[d.leaf]
        path = next(p for p, leaf in leaves(cell_tree(arch, first)) if isinstance(leaf, Leaf) and leaf.nodes
                    and leaf.nodes[0] == anchor)
        params: dict[str, Any]
        if d.kind == "insert":
            op, params = "insert_layer", {"primitive": name}
            if name == "gconv3x3":
                params["groups"] = options[d.leaf].groups
        elif name.startswith("add"):
            op, params = "replicate_add", {"branches": int(name[3:])}
            if config.replication == "exact":
                params["seed"] = int(rng.integers(0, 2**31 - 1))
        else:
            op, params = "split_concat", {"branches": int(name[6:])}
        result = edit_cells(arch, op, path, params)
        arch = result.child
        steps.extend(result.steps)
        done.append(f"{name} at leaf {d.leaf}")
    return arch.with_lineage(Lineage(start.id, tuple(steps))), done
