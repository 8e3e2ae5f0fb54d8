"""A one-line, human summary of an architecture, for the portal's trial table and the command line.

``summarize(arch)`` lists the layers that carry the design in topological order (convolutions with their
kernel, width, stride and groups; pools; merges; the classifier), leaving out what every block has
(batch norm, ReLU, dropout), and ends with the parameter count, e.g.::

    conv3x3-32 > maxpool > conv3x3-64 > maxpool > conv3x3-128 > gap > fc-10 | 94,186 params

A merge names how many inputs it joins (``add(2)``, ``concat(2)``): a branch shows as the layers of both
paths before it. Pure: no torch, no files.
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
    """The layers of ``arch`` that carry its design, joined by ``>``, and (with ``params``) its parameter count."""
    tokens = []
    for node_id in arch.topological_order:
        node = arch.node(node_id)
        if node.op not in _PLAIN:
            tokens.append(_token(node.op, dict(node.attrs), len(node.inputs)))
    text = " > ".join(tokens)
    return f"{text} | {arch.num_parameters():,} params" if params else text
