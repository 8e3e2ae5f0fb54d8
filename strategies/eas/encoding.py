"""A network read as EAS' state: its layers as tokens, the Net2Wider mask and the Net2Deeper blocks.

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Sec. 3 (the encoder's input) and the authors' token list; see :mod:`.strategy` for the
search and its deviations. :func:`layer_sequence` gives everything at once (:class:`LayerSequence`):

* **tokens**: the *layers* in topological order, ``conv-{filters}-{kernel}``, ``fc-{units}`` (linear) and
  ``pool`` (max, average and global average pooling); BatchNorm, ReLU and dropout are folded into the
  layer before them, as in the paper's token list. The output (classifier) layer is a token too, always
  masked ([dev] the authors' code leaves it out of the sequence).
* **wider mask**: the layers :class:`~nni_nas_ext.core.Widen` applies to with a next width on the ladder
  :data:`~nni_nas_ext.core.morphisms.WIDTHS` at most ``max_width``; pools and the output layer are masked.
* **blocks**: the layers grouped by the resolution of their output (the stages between two poolings of a
  plain CNN; the feature vectors after global pooling are the last block), in order. A block lists the
  layers after which :class:`~nni_nas_ext.core.Deepen` can insert, i.e. whose folded BN/ReLU/dropout
  tail ends in one of ``Deepen.sites`` (a ReLU): the output layer and a layer with no ReLU after it (a
  skip's 1x1 projection) are never listed, so a block may be empty (the controller never picks one).

**DAGs** (NASH's skips; the EAS search space here is the plain CNN / NASH seed family): a network with
skip connections is read as its layers in topological order. A skip's 1x1 projection is a ``conv-C-1``
token and its resolution-matching average pool a ``pool`` token (which does not split a block: blocks
follow resolution); ``add``/``concat`` merges are not tokens, so the encoder sees a linearisation of the
graph. The actions are the core's morphisms, which follow channels through merges: widening a layer that
an ``add`` couples to others widens them together (a coupled layer chosen in the same action is then
left as it is), and a layer whose activation comes after a merge (``conv-bn-add-relu``) cannot be
deepened after.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from nni_nas_ext.core.architecture import Architecture
from nni_nas_ext.core.morphisms import WIDTHS, Deepen, Widen

__all__ = ["LayerSequence", "deeper_blocks", "layer_sequence", "tokens", "wider_mask", "widths_up_to"]

#: Operators that are EAS layers (tokens), and those of them that are pooling layers.
_LAYER_OPS = frozenset({"conv", "linear"})
_POOL_OPS = frozenset({"maxpool", "avgpool", "gap"})
#: Unary operators folded into the layer before them (BN and ReLU in the paper's token list).
_FOLDED_OPS = frozenset({"bn", "relu", "dropout", "identity"})


def widths_up_to(max_width: int, ladder: Sequence[int] = WIDTHS) -> tuple[int, ...]:
    """The width ladder cut at ``max_width`` (inclusive): the widths Net2Wider may grow a layer to."""
    widths = tuple(w for w in ladder if w <= max_width)
    if not widths:
        raise ValueError(f"max_width must be at least the smallest width of the ladder {tuple(ladder)}, "
                         f"but got {max_width!r}")
    return widths


@dataclass(frozen=True)
class LayerSequence:
    """A network read as EAS' state: its layers as tokens, the wider mask and the deeper blocks.

    Attributes
    ----------
    tokens
        One per layer in topological order: ``conv-{filters}-{kernel}``, ``fc-{units}``, ``pool``.
    nodes
        The node id of each token.
    wider_mask
        ``wider_mask[i]``: whether Net2Wider can widen layer ``i`` (False for pools, the output layer and
        layers at ``max_width``).
    blocks
        Token indices of the layers after which Net2Deeper can insert, grouped by resolution (stages).
    deepen_sites
        For each token index listed in ``blocks``: the node (the layer's ReLU) after which Deepen inserts.
    """

    tokens: tuple[str, ...]
    nodes: tuple[str, ...]
    wider_mask: tuple[bool, ...]
    blocks: tuple[tuple[int, ...], ...]
    deepen_sites: Mapping[int, str]

    @property
    def can_widen(self) -> bool:
        return any(self.wider_mask)

    @property
    def can_deepen(self) -> bool:
        return any(self.blocks)


def _token(arch: Architecture, nid: str) -> str | None:
    node = arch.node(nid)
    if node.op == "conv":
        return f"conv-{node['out_channels']}-{node['kernel']}"
    if node.op == "linear":
        return f"fc-{node['out_features']}"
    if node.op in _POOL_OPS:
        return "pool"
    return None


def _layers(arch: Architecture) -> list[tuple[str, str]]:
    """``(node id, token)`` of every layer, in topological order."""
    out = []
    for nid in arch.topological_order:
        token = _token(arch, nid)
        if token is not None:
            out.append((nid, token))
    return out


def tokens(arch: Architecture) -> list[str]:
    """The layers of ``arch`` as EAS tokens, in topological order (see the module docstring)."""
    return [token for _, token in _layers(arch)]


def wider_mask(arch: Architecture, max_width: int = WIDTHS[-1]) -> list[bool]:
    """Per token: whether Net2Wider can widen the layer (a next width on the ladder, at most ``max_width``)."""
    sites = {site["node"] for site in Widen(widths=widths_up_to(max_width)).sites(arch)}
    return [nid in sites for nid, _ in _layers(arch)]


def _deepen_site(arch: Architecture, nid: str, sites: set[str]) -> str | None:
    """The last Deepen site in the chain of BN/ReLU/dropout that follows layer ``nid`` alone, if any."""
    found, current = None, nid
    while True:
        consumers = arch.consumers(current)
        if len(consumers) != 1 or arch.node(consumers[0]).op not in _FOLDED_OPS:
            return found
        current = consumers[0]
        if current in sites:
            found = current


def _blocks(arch: Architecture, layers: Sequence[tuple[str, str]]) -> tuple[tuple[tuple[int, ...], ...],
                                                                           dict[int, str]]:
    sites = {site["node"] for site in Deepen().sites(arch)}
    groups: dict[tuple[int, ...], list[int]] = {}
    deepen_sites: dict[int, str] = {}
    for i, (nid, _) in enumerate(layers):
        if arch.node(nid).op not in _LAYER_OPS:
            continue
        group = groups.setdefault(arch.shape(nid)[1:], [])
        site = _deepen_site(arch, nid, sites)
        if site is not None:
            group.append(i)
            deepen_sites[i] = site
    return tuple(tuple(g) for g in groups.values()), deepen_sites


def deeper_blocks(arch: Architecture) -> list[list[int]]:
    """Token indices of the layers Net2Deeper can insert after, grouped by output resolution (stages)."""
    return [list(block) for block in _blocks(arch, _layers(arch))[0]]


def layer_sequence(arch: Architecture, max_width: int = WIDTHS[-1]) -> LayerSequence:
    """Tokens, wider mask and deeper blocks of ``arch`` at once (see the module docstring)."""
    layers = _layers(arch)
    blocks, deepen_sites = _blocks(arch, layers)
    return LayerSequence(tuple(t for _, t in layers), tuple(n for n, _ in layers),
                         tuple(wider_mask(arch, max_width)), blocks, deepen_sites)
