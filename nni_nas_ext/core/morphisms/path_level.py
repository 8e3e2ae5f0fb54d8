"""Path-level network transformations: a layer becomes a multi-branch motif; a leaf gets a new layer.

Cai, Yang, Zhang, Han, Yu, *Path-Level Network Transformation for Efficient Architecture Search*, ICML 2018,
sec. 3.1 (arXiv 1806.02639). Applied again to the branches they create, they grow a cell into a tree
(:mod:`nni_nas_ext.core.cells` reads the tree back from the graph).

A *layer* here is the chain the rest of the project builds: ``conv [-> pointwise conv] [-> BN] [-> ReLU]``,
each node the only consumer of the one before (:func:`layer_chain`); the pointwise convolution follows a
depthwise one (a depthwise-separable layer).

* :class:`ReplicateAdd` -- the paper's *replication*: the layer is copied into ``n`` branches whose outputs are
  added with weights ``1/n``.
* :class:`SplitConcat` -- the paper's *split*: the layer's output channels are divided among ``n`` branches
  (each branch computes its slice of them from the whole input) and concatenated. Exact in eval and train
  mode (BatchNorm is per channel), and the branches start different.
* :class:`InsertLayer` -- the paper's new layer on a leaf, of a chosen primitive (1x1 conv, 3x3/5x5/7x7
  depthwise-separable conv, 3x3 grouped conv, 3x3 max or average pooling), initialised to the identity.

Deviations from the paper, each marked where it is made:

* **Symmetry breaking in replication** (``mode="exact"``, the default). Exact copies receive the same gradients
  and stay copies (the search issue's lesson: they add MACs, not capacity). Here copy ``k`` scales its output
  channel ``c`` by ``a[k, c] > 0`` with ``sum_k a[k, c] = n`` (a seeded draw): the ReLU is positively homogeneous,
  so ``sum_k relu(a[k, c] z_c) / n = relu(z_c)`` exactly, in eval and in train mode, while the copies' gradients
  differ in size from the first step, so their weights separate. ``mode="replicate"`` is the paper's operator
  (``a = 1``).
* **Identity initialisation** follows deepen (:mod:`.deepen`): the new layer is ``... -> BN -> ReLU`` after a
  non-negative node, with the BatchNorm identity set from a calibration batch. **Pooling cannot be an identity**:
  an inserted 3x3 pooling (stride 1) changes the function, so its steps are not exact
  (:meth:`InsertLayer.is_exact`) and the primitives drawn by default are the five exact ones; the paper says its
  new layers are initialised near the identity without detailing pooling.
* The paper's depthwise-separable convolutions are DARTS-style stacks of two; here one depthwise + pointwise pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..architecture import Architecture, Node, Step
from ..builder import activation_moments, state_key
from ..errors import MorphismError
from .base import Morphism, Site, StateDict, WeightTransform, insert_after, rewire
from .deepen import Deepen, bn_identity

__all__ = ["EXACT_PRIMITIVES", "POOL_PRIMITIVES", "PRIMITIVES", "InsertLayer", "ReplicateAdd", "SplitConcat",
           "layer_chain", "layer_primitive", "primitive_applies", "split_sizes"]

#: The primitives a new layer can be (Cai et al. 2018, sec. 4.1).
PRIMITIVES = ("conv1x1", "sepconv3x3", "sepconv5x5", "sepconv7x7", "gconv3x3", "maxpool3x3", "avgpool3x3")
POOL_PRIMITIVES = ("maxpool3x3", "avgpool3x3")
#: Those that can start as an exact identity (every one but pooling).
EXACT_PRIMITIVES = tuple(p for p in PRIMITIVES if p not in POOL_PRIMITIVES)
#: The parameters and buffers a node of a layer may have in a state_dict.
_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_MAX_BRANCHES = 8


def _is_depthwise(arch: Architecture, node: Node) -> bool:
    """A depthwise convolution: one group per channel, at least 2 channels (:class:`InsertLayer` and
    :class:`SplitConcat` keep every grouped convolution below that and every branch at 2 channels or more, so that a
    layer's primitive reads the same in every cell whatever its width)."""
    return node.op == "conv" and node["groups"] > 1 and node["groups"] == arch.shape(node.inputs[0])[0] == \
        node["out_channels"]


def primitive_applies(primitive: str, channels: int, groups: int | None = None) -> str | None:
    """``None`` if a new layer of ``primitive`` fits a ``channels``-channel tensor, else why not."""
    if primitive.startswith("sepconv") and channels < 2:
        return f"a depthwise-separable convolution needs at least 2 channels, not {channels}"
    if primitive == "gconv3x3":
        if isinstance(groups, bool) or not isinstance(groups, int) or not 2 <= groups < channels \
                or channels % groups:
            return (f"a grouped convolution on {channels} channels needs groups >= 2 that divide them and are fewer "
                    f"(groups == channels is depthwise: use a sepconv), but got groups={groups!r}")
    return None


def layer_chain(arch: Architecture, conv: str) -> tuple[str, ...] | None:
    """The layer that starts at convolution ``conv``: ``conv [-> pointwise conv] [-> BN] [-> ReLU]``.

    Each node of the chain is the only consumer of the one before it; ``None`` if ``conv`` is not a
    convolution on an image tensor.
    """
    if conv not in arch:
        return None
    node = arch.node(conv)
    if node.op != "conv":
        return None
    chain = [conv]
    expect = ("pw", "bn", "relu") if _is_depthwise(arch, node) else ("bn", "relu")
    for kind in expect:
        consumers = arch.consumers(chain[-1])
        if len(consumers) != 1 or chain[-1] == arch.output:
            break
        nxt = arch.node(consumers[0])
        if kind == "pw":
            if not (nxt.op == "conv" and nxt["kernel"] == 1 and nxt["groups"] == 1 and nxt["stride"] == 1):
                continue
        elif nxt.op != kind:
            continue
        chain.append(nxt.id)
    return tuple(chain)


def layer_primitive(arch: Architecture, chain: Sequence[str]) -> str:
    """A layer's primitive name, e.g. ``conv3x3``, ``sepconv5x5``, ``gconv3x3``, ``maxpool3x3``."""
    node = arch.node(chain[0])
    if node.op in ("maxpool", "avgpool"):
        return f"{node.op}{node['kernel']}x{node['kernel']}"
    k = node["kernel"]
    if _is_depthwise(arch, node) and len(chain) > 1 and arch.node(chain[1]).op == "conv":
        return f"sepconv{k}x{k}"
    return f"gconv{k}x{k}" if node["groups"] > 1 else f"conv{k}x{k}"


def split_sizes(channels: int, branches: int) -> list[int]:
    """``channels`` divided into ``branches`` near-equal parts, the larger ones first."""
    base, extra = divmod(channels, branches)
    return [base + (1 if i < extra else 0) for i in range(branches)]


def _check_branches(owner: str, branches: Any) -> int:
    if isinstance(branches, bool) or not isinstance(branches, int) or not 2 <= branches <= _MAX_BRANCHES:
        raise MorphismError(f"{owner}: the number of branches must be an integer in [2, {_MAX_BRANCHES}], "
                            f"but got {branches!r}")
    return branches


def _check_layer(arch: Architecture, site: Site) -> tuple[str, ...] | str:
    """The layer at ``site``, or why there is none."""
    nid = site["node"]
    node = arch.node(nid)
    if node.op != "conv":
        return f"{nid} is a {node.op}, not a convolution starting a layer"
    chain = layer_chain(arch, nid)
    assert chain is not None
    if arch.output in chain:
        return "the output layer keeps its place"
    return chain


def _copy_params(state: StateDict, src: str, dst: str, out: dict[str, Tensor]) -> None:
    for name in _PARAMS:
        key = state_key(src, name)
        if key in state:
            out[state_key(dst, name)] = state[key].clone()


@dataclass(frozen=True)
class ReplicateAdd(Morphism):
    """Replace a layer by ``n`` copies on the same input whose outputs are added with weights ``1/n``.

    Cai et al. 2018, sec. 3.1, *replication*. See the module docstring for ``mode``: ``"exact"`` (the default;
    per-channel positive output scales summing to ``n``, a deviation that breaks the copies' symmetry exactly)
    or ``"replicate"`` (the paper's plain copies).

    Parameters
    ----------
    branches
        Numbers of branches to draw from.
    mode
        ``"exact"`` or ``"replicate"``.
    """

    branches: tuple[int, ...] = (2, 3)
    mode: str = "exact"
    name = "replicate_add"

    def __post_init__(self) -> None:
        for b in self.branches:
            _check_branches("ReplicateAdd", b)
        if not self.branches:
            raise ValueError("ReplicateAdd: branches must not be empty")
        if self.mode not in ("exact", "replicate"):
            raise ValueError(f"ReplicateAdd: mode must be 'exact' or 'replicate', but got {self.mode!r}")

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": n.id} for n in arch.nodes if n.op == "conv"]

    def check(self, arch: Architecture, site: Site) -> str | None:
        found = _check_layer(arch, site)
        return found if isinstance(found, str) else None

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        params: dict[str, Any] = {"branches": int(rng.choice(self.branches))}
        if self.mode == "exact":
            params["seed"] = int(rng.integers(0, 2**31 - 1))
        return Step(self.name, dict(site), params)

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        chain = _check_layer(arch, step.site)
        assert not isinstance(chain, str)
        n = _check_branches("replicate_add", step.params.get("branches"))
        seed = step.params.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise MorphismError(f"replicate_add: params.seed must be an integer, but got {seed!r}")
        taken: list[str] = []

        def fresh(prefix: str) -> str:
            taken.append(arch.fresh_id(prefix, taken))
            return taken[-1]

        first = arch.node(chain[0])
        copies: list[list[Node]] = []
        for _ in range(n - 1):
            branch: list[Node] = []
            for i, nid in enumerate(chain):
                node = arch.node(nid)
                inputs = first.inputs if i == 0 else (branch[-1].id,)
                branch.append(Node(fresh(node.op), node.op, inputs, dict(node.attrs)))
            copies.append(branch)
        last = chain[-1]
        merge = Node(fresh("add"), "add", (last, *(b[-1].id for b in copies)), {"weights": (1.0 / n,) * n})
        nodes = rewire(arch.nodes, last, merge.id, skip=frozenset(taken))
        child = arch.with_nodes(insert_after(nodes, last, [n_ for b in copies for n_ in b] + [merge]))
        # the node whose output channels are scaled: the BatchNorm if the layer has one, else its last conv
        scaled = next((i for i in range(len(chain) - 1, -1, -1) if arch.node(chain[i]).op in ("bn", "conv")))
        channels = arch.shape(chain[scaled])[0]

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = dict(state)
            for branch in copies:
                for src, dst in zip(chain, branch):
                    _copy_params(state, src, dst.id, new)
            if seed is None:
                return new
            gen = torch.Generator().manual_seed(seed)
            raw = torch.rand(n, channels, generator=gen, dtype=torch.float64) + 0.5  # U(0.5, 1.5)
            scales = raw * n / raw.sum(dim=0, keepdim=True)  # positive, summing to n per channel
            for k, ids in enumerate([list(chain)] + [[x.id for x in b] for b in copies]):
                for name in ("weight", "bias"):
                    key = state_key(ids[scaled], name)
                    if key in new:
                        t = new[key]
                        s = scales[k].to(t.dtype).reshape(-1, *([1] * (t.dim() - 1)))
                        new[key] = t * s
            return new

        return child, WeightTransform(transform, description=step.describe())


@dataclass(frozen=True)
class SplitConcat(Morphism):
    """Divide a layer's output channels among ``n`` branches on the same input, concatenated.

    Cai et al. 2018, sec. 3.1, *split*: branch ``b`` computes output channels ``[s_b, s_b + c_b)`` of the layer
    (its convolution's rows, its BatchNorm's entries; a depthwise convolution before a pointwise one is copied
    whole into every branch). Exact, and the branches hold different weights from the start.

    Parameters
    ----------
    branches
        Numbers of branches to draw from (each branch gets at least one channel).
    """

    branches: tuple[int, ...] = (2, 3)
    name = "split_concat"

    def __post_init__(self) -> None:
        if not self.branches:
            raise ValueError("SplitConcat: branches must not be empty")
        for b in self.branches:
            _check_branches("SplitConcat", b)

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": n.id} for n in arch.nodes if n.op == "conv"]

    @staticmethod
    def _split_conv(arch: Architecture, chain: Sequence[str]) -> int:
        """Index in ``chain`` of the convolution whose output channels are split (the last one)."""
        return max(i for i, nid in enumerate(chain) if arch.node(nid).op == "conv")

    def check(self, arch: Architecture, site: Site) -> str | None:
        found = _check_layer(arch, site)
        if isinstance(found, str):
            return found
        conv = arch.node(found[self._split_conv(arch, found)])
        if conv["groups"] != 1:
            return f"{conv.id} is a grouped convolution: its output channels cannot be split without its input"
        if conv["out_channels"] < 2 * min(self.branches):
            return (f"{conv.id} has {conv['out_channels']} output channels: {min(self.branches)} branches of at "
                    "least 2 channels each need more")
        return None

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        chain = _check_layer(arch, site)
        assert not isinstance(chain, str)
        channels = arch.node(chain[self._split_conv(arch, chain)])["out_channels"]
        allowed = [b for b in self.branches if 2 * b <= channels]
        return Step(self.name, dict(site), {"branches": int(rng.choice(allowed))})

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site, check=lambda a, s: SplitConcat(branches=(2,)).check(a, s))
        chain = _check_layer(arch, step.site)
        assert not isinstance(chain, str)
        n = _check_branches("split_concat", step.params.get("branches"))
        at = self._split_conv(arch, chain)
        channels = arch.node(chain[at])["out_channels"]
        if 2 * n > channels:
            raise MorphismError(f"split_concat {chain[at]}: {n} branches for {channels} output channels; each branch "
                                f"keeps at least 2, so use at most {channels // 2} branches here")
        sizes = split_sizes(channels, n)
        starts = [sum(sizes[:b]) for b in range(n)]
        taken: list[str] = []

        def fresh(prefix: str) -> str:
            taken.append(arch.fresh_id(prefix, taken))
            return taken[-1]

        first = arch.node(chain[0])
        branches: list[list[Node]] = []
        for b in range(n):
            branch: list[Node] = []
            for i, nid in enumerate(chain):
                node = arch.node(nid)
                attrs = dict(node.attrs)
                if i == at:
                    attrs["out_channels"] = sizes[b]
                inputs = first.inputs if i == 0 else (branch[-1].id,)
                branch.append(Node(nid if b == 0 else fresh(node.op), node.op, inputs, attrs))
            branches.append(branch)
        last = chain[-1]
        merge = Node(fresh("concat"), "concat", tuple(br[-1].id for br in branches), {})
        narrowed = {x.id: x for x in branches[0]}
        nodes = [narrowed.get(x.id, x) for x in arch.nodes]
        nodes = rewire(nodes, last, merge.id, skip=frozenset(taken))
        child = arch.with_nodes(insert_after(nodes, last, [x for br in branches[1:] for x in br] + [merge]))

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = dict(state)
            for b, branch in enumerate(branches):
                rows = slice(starts[b], starts[b] + sizes[b])
                for i, (src, dst) in enumerate(zip(chain, branch)):
                    for name in _PARAMS:
                        key = state_key(src, name)
                        if key not in state:
                            continue
                        value = state[key]
                        if i >= at and name != "num_batches_tracked":  # the split conv and what follows it
                            value = value[rows]
                        new[state_key(dst.id, name)] = value.clone()
            return new

        return child, WeightTransform(transform, description=step.describe())


@dataclass(frozen=True)
class InsertLayer(Morphism):
    """Insert a new layer of a chosen primitive after a non-negative node, initialised to the identity.

    Cai et al. 2018, sec. 3.1 (a leaf's identity edge replaced by a new layer). Convolutions are
    ``conv -> BN -> ReLU`` (``sepconv``: depthwise ``k x k`` then pointwise ``1 x 1``; ``gconv``: ``groups``
    groups), each kernel the identity and the BatchNorm the identity on a calibration batch (as deepen). Pooling
    (``stride 1``, ``padding 1``) cannot be an identity: such steps are not exact.

    Parameters
    ----------
    primitives
        The primitives to draw from (:data:`PRIMITIVES`); default the exact ones.
    """

    primitives: tuple[str, ...] = EXACT_PRIMITIVES
    name = "insert_layer"

    def __post_init__(self) -> None:
        bad = [p for p in self.primitives if p not in PRIMITIVES]
        if not self.primitives or bad:
            raise ValueError(f"InsertLayer: primitives must be a non-empty subset of {list(PRIMITIVES)}, "
                             f"but got {list(self.primitives)!r}")

    @classmethod
    def is_exact(cls, step: Step) -> bool:
        """Exact unless the primitive is a pooling (which no initialisation makes an identity)."""
        return step.params.get("primitive") not in POOL_PRIMITIVES

    def candidates(self, arch: Architecture) -> list[Site]:
        return [{"node": nid} for nid in arch.topological_order]

    def check(self, arch: Architecture, site: Site) -> str | None:
        if len(arch.shape(site["node"])) != 3:
            return f"{site['node']}'s output is not an image tensor"
        return Deepen().check(arch, site)  # deepen's rule: not the output, provably non-negative

    def propose(self, arch: Architecture, site: Site, rng: np.random.Generator) -> Step:
        channels = arch.shape(site["node"])[0]
        groups = next((g for g in (4, 2) if primitive_applies("gconv3x3", channels, g) is None), None)
        fits = [p for p in self.primitives if primitive_applies(p, channels, groups) is None]
        if not fits:
            raise MorphismError(f"insert_layer at {site['node']}: none of {list(self.primitives)} fits its "
                                f"{channels} channels")
        primitive = str(rng.choice(fits))
        params: dict[str, Any] = {"primitive": primitive}
        if primitive == "gconv3x3":
            params["groups"] = groups
        return Step(self.name, dict(site), params)

    def realize(self, arch: Architecture, step: Step) -> tuple[Architecture, WeightTransform]:
        self.require(arch, step.site)
        anchor = step.site["node"]
        primitive = step.params.get("primitive")
        if primitive not in PRIMITIVES:
            raise MorphismError(f"insert_layer: params.primitive must be one of {list(PRIMITIVES)}, "
                                f"but got {primitive!r}")
        channels = arch.shape(anchor)[0]
        groups = step.params.get("groups")
        reason = primitive_applies(primitive, channels, groups)
        if reason is not None:
            raise MorphismError(f"insert_layer {primitive} after {anchor}: {reason}")
        taken: list[str] = []

        def fresh(prefix: str) -> str:
            taken.append(arch.fresh_id(prefix, taken))
            return taken[-1]

        convs: list[Node] = []
        if primitive in POOL_PRIMITIVES:
            new_nodes = [Node(fresh(primitive[:7]), primitive[:7], (anchor,), {"kernel": 3, "stride": 1, "padding": 1})]
            bn = None
        else:
            kernel = 1 if primitive == "conv1x1" else int(primitive[-1])
            conv_attrs = {"out_channels": channels, "kernel": kernel, "stride": 1, "padding": kernel // 2,
                          "bias": False}
            if primitive.startswith("sepconv"):
                convs.append(Node(fresh("conv"), "conv", (anchor,), {**conv_attrs, "groups": channels}))
                convs.append(Node(fresh("conv"), "conv", (convs[0].id,), {**conv_attrs, "kernel": 1, "padding": 0,
                                                                           "groups": 1}))
            else:
                convs.append(Node(fresh("conv"), "conv", (anchor,),
                                  {**conv_attrs, "groups": groups if primitive == "gconv3x3" else 1}))
            bn = Node(fresh("bn"), "bn", (convs[-1].id,), {})
            new_nodes = [*convs, bn, Node(fresh("relu"), "relu", (bn.id,), {})]
        nodes = rewire(arch.nodes, anchor, new_nodes[-1].id, skip=frozenset(taken))
        child = arch.with_nodes(insert_after(nodes, anchor, new_nodes))

        def transform(state: StateDict, calibration: Tensor | None) -> dict[str, Tensor]:
            new = dict(state)
            if bn is None:
                return new
            ref = next(iter(state.values()))
            idx = torch.arange(channels)
            for conv in convs:
                k, g = conv["kernel"], conv["groups"]
                weight = torch.zeros(channels, channels // g, k, k, dtype=ref.dtype)
                weight[idx, idx % (channels // g), k // 2, k // 2] = 1.0  # output c reads its own input channel
                new[state_key(conv.id, "weight")] = weight
            assert calibration is not None  # WeightTransform checks it
            mean, var = activation_moments(arch, state, calibration, [anchor])[anchor]
            new.update(bn_identity(bn.id, mean, var, dtype=ref.dtype))
            return new

        return child, WeightTransform(transform, needs_calibration=bn is not None, description=step.describe())
