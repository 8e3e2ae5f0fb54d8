"""Cells as trees: the tree view of a cell's subgraph, for Path-level EAS.

Cai, Yang, Zhang, Han, Yu, *Path-Level Network Transformation for Efficient Architecture Search*, ICML 2018,
sec. 3.2: a cell is a tree whose internal nodes merge their children's outputs (``add`` or ``concat``) and whose
leaves are layers (or identity edges). The graph is the only truth here (an :class:`~.architecture.Architecture`
is what trials build, store and replay); the tree is read back from it, so it can never disagree with it.

A cell is the subgraph between two ``identity`` marker nodes, ``<name>_in`` and ``<name>_out`` (the seed network
of :mod:`search_spaces.path_level` places them). The path-level transformations of
:mod:`.morphisms.path_level` keep every cell series-parallel, which is what :func:`cell_tree` parses:

* :class:`Leaf` -- a layer (``conv [-> pointwise] [-> BN] [-> ReLU]`` or a pooling), or an identity edge;
* :class:`Merge` -- ``add`` or ``concat`` of branches that all start at the same node;
* :class:`Seq` -- parts applied one after the other.

Each node of a tree has a *path* (the child indices from the root) by which the meta-controller names it;
:func:`leaves` lists them. :meth:`Tree.signature` is the structure without node ids or widths: cells are "the same
cell repeated" when their signatures are equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Union

from .architecture import INPUT, Architecture, Step
from .errors import ArchitectureError, MorphismError
from .morphisms.base import MorphismResult
from .morphisms.path_level import layer_chain, layer_primitive
from .morphisms.registry import replay

__all__ = ["PATH_LEVEL_OPS", "Leaf", "Merge", "Path", "Seq", "Tree", "cell_names", "cell_tree", "edit_cells", "leaves",
           "render", "subtree", "walk"]

Path = tuple[int, ...]
#: The transformations :func:`edit_cells` applies (:mod:`.morphisms.path_level`).
PATH_LEVEL_OPS = ("replicate_add", "split_concat", "insert_layer")
_MERGES = ("add", "concat")
_MARKER = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)_in")


@dataclass(frozen=True)
class Leaf:
    """A layer (its nodes, first to last) or an identity edge (no nodes)."""

    nodes: tuple[str, ...]
    primitive: str  # e.g. conv3x3, sepconv5x5, maxpool3x3; "identity" for an edge with no layer

    def signature(self) -> Any:
        return self.primitive


@dataclass(frozen=True)
class Merge:
    """``add`` or ``concat`` (``node``) of branches that start at the same node."""

    scheme: str
    node: str
    branches: tuple[Tree, ...]

    def signature(self) -> Any:
        return {self.scheme: [b.signature() for b in self.branches]}


@dataclass(frozen=True)
class Seq:
    """Parts applied in order (at least two)."""

    parts: tuple[Tree, ...]

    def signature(self) -> Any:
        return {"seq": [p.signature() for p in self.parts]}


Tree = Union[Leaf, Merge, Seq]


def cell_names(arch: Architecture) -> list[str]:
    """The cells of ``arch``: names ``x`` with identity nodes ``x_in`` and ``x_out``, in execution order."""
    names = []
    for nid in arch.topological_order:
        match = _MARKER.fullmatch(nid)
        if match and arch.node(nid).op == "identity" and f"{match['name']}_out" in arch \
                and arch.node(f"{match['name']}_out").op == "identity":
            names.append(match["name"])
    return names


def cell_tree(arch: Architecture, name: str) -> Tree:
    """The tree of cell ``name`` (between ``name_in`` and ``name_out``).

    Raises
    ------
    ArchitectureError
        No such cell, or its subgraph is not series-parallel (a connection into or out of the cell's middle).
    """
    start, end = f"{name}_in", f"{name}_out"
    if name not in cell_names(arch):
        raise ArchitectureError(None, f"a cell {name!r} needs identity nodes {start!r} and {end!r}",
                                f"cells are {cell_names(arch)}")
    last = arch.node(end).inputs[0]
    inside = (arch.ancestors(last) | {last}) - arch.ancestors(start) - {start}
    for nid in inside:
        outside = [c for c in arch.consumers(nid) if c not in inside and c != end]
        foreign = [i for i in arch.node(nid).inputs if i not in inside and i != start]
        if outside or foreign:
            raise ArchitectureError(nid, f"cell {name!r} must be entered only at {start!r} and left only at {end!r}",
                                    f"{nid} reads {foreign} / feeds {outside}")
    return _parse(arch, start, last)


def _seq(*parts: Tree) -> Tree:
    flat: list[Tree] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, Seq) else (part,))
    flat = [p for p in flat if not (isinstance(p, Leaf) and not p.nodes)] or flat[:1]
    return flat[0] if len(flat) == 1 else Seq(tuple(flat))


def _split_point(arch: Architecture, start: str, inputs: tuple[str, ...]) -> str:
    """The latest node that every one of ``inputs`` depends on (or is), at or after ``start``."""
    common = None
    for i in inputs:
        reach = (arch.ancestors(i) | {i}) if i != start else {start}
        common = reach if common is None else common & reach
    assert common is not None
    # the latest of them: walk back from the earliest input (a node every input reaches comes at or before each
    # of them). The split point is usually a few nodes back, where sorting all the common nodes made a deep cell
    # quadratic (3 s for 1,500 nested merges)
    order = arch.topological_order
    top = min(-1 if i == INPUT else order.index(i) for i in inputs)
    for nid in reversed(order[:top + 1]):
        if nid in common and (nid == start or start in arch.ancestors(nid)):
            return nid
    if start not in common:
        raise ValueError(f"{start!r} precedes none of {list(inputs)}")
    return start  # the network input


def _parse(arch: Architecture, start: str, end: str) -> Tree:
    if end == start:
        return Leaf((), "identity")
    node = arch.node(end)
    if node.op in _MERGES:
        split = _split_point(arch, start, node.inputs)
        merge = Merge(node.op, end, tuple(_parse(arch, split, i) for i in node.inputs))
        return merge if split == start else _seq(_parse(arch, start, split), merge)
    # walk back over single-input, single-consumer nodes to the start of this run of layers
    run = [end]
    while True:
        prev = arch.node(run[0]).inputs[0]
        if prev == start or arch.node(prev).op in _MERGES or len(arch.consumers(prev)) != 1:
            break
        run.insert(0, prev)
    layers: list[Tree] = []
    i = 0
    while i < len(run):
        nid = run[i]
        op = arch.node(nid).op
        if op == "conv":
            chain = layer_chain(arch, nid) or (nid,)
            chain = tuple(c for c in chain if c in run[i:])
            layers.append(Leaf(chain, layer_primitive(arch, chain)))
            i += len(chain)
        elif op in ("maxpool", "avgpool"):
            layers.append(Leaf((nid,), layer_primitive(arch, (nid,))))
            i += 1
        else:  # a lone BN, ReLU or identity: part of no layer
            layers.append(Leaf((nid,), op))
            i += 1
    head = _parse(arch, start, prev) if prev != start else Leaf((), "identity")
    return _seq(head, *layers)


def subtree(tree: Tree, path: Path) -> Tree:
    """The node of ``tree`` at ``path`` (child indices from the root); ``KeyError`` if there is none."""
    node = tree
    for i in path:
        children = node.branches if isinstance(node, Merge) else node.parts if isinstance(node, Seq) else ()
        if not 0 <= i < len(children):
            raise KeyError(f"no node at path {list(path)} of the tree")
        node = children[i]
    return node


def walk(tree: Tree, path: Path = ()) -> Iterator[tuple[Path, Tree]]:
    """Every node with its path, parents before children."""
    yield path, tree
    children = tree.branches if isinstance(tree, Merge) else tree.parts if isinstance(tree, Seq) else ()
    for i, child in enumerate(children):
        yield from walk(child, (*path, i))


def leaves(tree: Tree) -> list[tuple[Path, Leaf]]:
    """The leaves with their paths, left to right."""
    return [(p, n) for p, n in walk(tree) if isinstance(n, Leaf)]


def render(tree: Tree) -> str:
    """A one-line text form, e.g. ``add(conv3x3, seq(conv3x3, sepconv5x5))``."""
    if isinstance(tree, Leaf):
        return tree.primitive
    if isinstance(tree, Merge):
        return f"{tree.scheme}({', '.join(render(b) for b in tree.branches)})"
    return f"seq({', '.join(render(p) for p in tree.parts)})"


def edit_cells(arch: Architecture, op: str, path: Path, params: Mapping[str, Any],
               cells: Sequence[str] | None = None) -> MorphismResult:
    """Apply one path-level transformation at the leaf ``path`` of every cell: the same cell, repeated.

    ``op`` is ``replicate_add`` or ``split_concat`` (at the leaf's first node, a convolution) or ``insert_layer``
    (after the leaf's last node); ``params`` are the step's parameters (e.g. ``{"branches": 2}``), the same in
    every cell. The child's lineage holds one step per cell, so a trial replays it like any chain of morphisms.

    Raises
    ------
    MorphismError
        ``path`` is not a leaf with a layer in some cell, or the transformation does not apply there.
    """
    if op not in PATH_LEVEL_OPS:
        raise MorphismError(f"edit_cells: op must be one of {list(PATH_LEVEL_OPS)}, but got {op!r}")
    steps = []
    for name in cell_names(arch) if cells is None else cells:
        try:
            leaf = subtree(cell_tree(arch, name), tuple(path))
        except KeyError as exc:
            raise MorphismError(f"{op} in cell {name}: {exc.args[0]}") from None
        if not isinstance(leaf, Leaf) or not leaf.nodes:
            raise MorphismError(f"{op} in cell {name}: path {list(path)} is not a leaf with a layer "
                                f"(the cell is {render(cell_tree(arch, name))})")
        site = leaf.nodes[-1] if op == "insert_layer" else leaf.nodes[0]
        steps.append(Step(op, {"node": site}, dict(params)))
    if not steps:
        raise MorphismError(f"edit_cells: {arch!r} has no cells (identity nodes <name>_in and <name>_out)")
    return replay(arch, steps)
