"""A one-line, human summary of an architecture, for the portal's trial table and the command line.

``summarize(arch)`` lists the layers that carry the design in topological order (convolutions with their
kernel, width, stride and groups; pools; merges; the classifier), leaving out what every block has
(batch norm, ReLU, dropout), and ends with the parameter count, e.g.::

    conv3x3-32 > maxpool > conv3x3-64 > maxpool > conv3x3-128 > gap > fc-10 | 94,186 params

A merge names how many inputs it joins (``add(2)``, ``concat(2)``): a branch shows as the layers of both
paths before it. Pure: no files; no torch unless the network has cells (:func:`_cell_trees`).
"""

from __future__ import annotations

from .architecture import Architecture

#: operators left out of the summary: every block has them, they say nothing about the design
_PLAIN = frozenset({"bn", "relu", "dropout", "identity"})


def _token(op: str, attrs: dict, inputs: int) -> str:
    if op == "conv":
        k = attrs["kernel"]
        text = f"conv{k}x{k}-{attrs['out_channels']}"
        if attrs.get("stride", 1) not in (1, None):
            text += f"/s{attrs['stride']}"
        if attrs.get("groups", 1) not in (1, None):
            text += f"/g{attrs['groups']}"
        return text
    if op == "linear":
        return f"fc-{attrs['out_features']}"
    if op in ("add", "concat"):
        return f"{op}({inputs})"
    return op


def summarize(arch: Architecture, *, params: bool = True) -> str:
    """The layers of ``arch`` that carry its design, joined by ``>``, and (with ``params``) its parameter count.

    A network with cells (Path-level EAS' seed and its children) shows each cell as its tree in brackets, e.g.
    ``conv3x3-16 > [add(conv3x3, seq(conv3x3, sepconv5x5))] > maxpool > ...``.
    """
    cells = _cell_trees(arch) if any(n.op == "identity" and n.id.endswith("_in") for n in arch.nodes) else None
    inside: set[str] = set().union(*(c[1] for c in cells.values())) if cells else set()
    tokens = []
    for node_id in arch.topological_order:
        if cells and node_id in cells:
            tokens.append(f"[{cells[node_id][0]}]")
            continue
        node = arch.node(node_id)
        if node.op not in _PLAIN and node_id not in inside:
            tokens.append(_token(node.op, dict(node.attrs), len(node.inputs)))
    text = " > ".join(tokens)
    return f"{text} | {arch.num_parameters():,} params" if params else text


def _cell_trees(arch: Architecture) -> dict[str, tuple[str, set[str]]] | None:
    """Per cell's ``<name>_in`` marker: the cell's tree as text and the nodes inside it; ``None`` if a cell is not a
    tree (then every layer is listed as for any network). Imports the cells module (and torch) only here."""
    from .cells import cell_names, cell_tree, render
    from .errors import ArchitectureError

    out = {}
    for name in cell_names(arch):
        start, end = f"{name}_in", f"{name}_out"
        last = arch.node(end).inputs[0]
        try:
            text = render(cell_tree(arch, name))
        except (ArchitectureError, RecursionError):  # not a tree, or nested deeper than Python's stack (a report
            return None                                # reads architectures from any experiment folder)
        region = (set(arch.ancestors(last)) | {last, end}) - set(arch.ancestors(start)) - {start}
        out[start] = (text, region)
    return out
