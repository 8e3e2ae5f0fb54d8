"""Build a ``torch.nn.Module`` from an :class:`~nni_nas_ext.core.architecture.Architecture`.

Parameter names follow the node ids: the parameters of node ``conv3`` are ``layers.conv3.weight`` and
``layers.conv3.bias``, so the state_dict keys of a child follow from its parent's (a morphism keeps the
ids of the nodes it does not add). :func:`state_key` spells that rule out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .architecture import INPUT, Architecture, Node

__all__ = ["ArchitectureModule", "activation_moments", "build_module", "functional_forward", "state_key"]

StateDict = Mapping[str, Tensor]


def state_key(node_id: str, name: str) -> str:
    """The state_dict key of parameter or buffer ``name`` (``weight``, ``running_mean``...) of a node."""
    return f"layers.{node_id}.{name}"


class GlobalAvgPool(nn.Module):
    """Mean over the spatial dimensions: ``(N, C, H, W) -> (N, C)``."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3))


class WeightedSum(nn.Module):
    """``sum_i weights[i] * inputs[i]`` (a plain sum when every weight is 1)."""

    def __init__(self, weights: Sequence[float] | None) -> None:
        super().__init__()
        self.weights = None if weights is None or all(w == 1.0 for w in weights) else [float(w) for w in weights]

    def forward(self, inputs: list[Tensor]) -> Tensor:
        if self.weights is None:
            out = inputs[0]
            for x in inputs[1:]:
                out = out + x
            return out
        out = inputs[0] * self.weights[0]
        for w, x in zip(self.weights[1:], inputs[1:]):
            out = out + x * w
        return out


class Concat(nn.Module):
    """Concatenation along channels (or features)."""

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return torch.cat(inputs, dim=1)


def _make_layer(arch: Architecture, node: Node) -> nn.Module:
    a = node.attrs
    in_shape = arch.shape(node.inputs[0])
    if node.op == "conv":
        return nn.Conv2d(in_shape[0], a["out_channels"], a["kernel"], stride=a["stride"], padding=a["padding"],
                         groups=a["groups"], bias=a["bias"])
    if node.op == "bn":
        return nn.BatchNorm2d(in_shape[0]) if len(in_shape) == 3 else nn.BatchNorm1d(in_shape[0])
    if node.op == "relu":
        return nn.ReLU()
    if node.op == "maxpool":
        return nn.MaxPool2d(a["kernel"], a["stride"], a["padding"])
    if node.op == "avgpool":
        return nn.AvgPool2d(a["kernel"], a["stride"], a["padding"])
    if node.op == "gap":
        return GlobalAvgPool()
    if node.op == "linear":
        return nn.Linear(in_shape[0], a["out_features"], bias=a["bias"])
    if node.op == "dropout":
        return nn.Dropout(a["p"])
    if node.op == "identity":
        return nn.Identity()
    if node.op == "add":
        return WeightedSum(a["weights"])
    if node.op == "concat":
        return Concat()
    raise AssertionError(f"unhandled op {node.op!r}")  # Architecture validation rules this out


class ArchitectureModule(nn.Module):
    """The module of an architecture: one submodule per node in ``self.layers``, keyed by node id."""

    def __init__(self, arch: Architecture) -> None:
        super().__init__()
        self.architecture = arch
        order = arch.topological_order
        self.layers = nn.ModuleDict({nid: _make_layer(arch, arch.node(nid)) for nid in order})
        self._plan: list[tuple[str, tuple[str, ...], bool]] = [
            (nid, arch.node(nid).inputs, arch.node(nid).op in ("add", "concat")) for nid in order
        ]
        self._output = arch.output

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_nodes(x, (self._output,))[self._output]

    def forward_nodes(self, x: Tensor, nodes: Sequence[str]) -> dict[str, Tensor]:
        """Run the network and return the outputs of the named nodes (``"input"`` allowed)."""
        wanted = set(nodes)
        env: dict[str, Tensor] = {INPUT: x}
        out = {INPUT: x} if INPUT in wanted else {}
        for nid, inputs, merge in self._plan:
            layer = self.layers[nid]
            env[nid] = layer([env[i] for i in inputs]) if merge else layer(env[inputs[0]])
            if nid in wanted:
                out[nid] = env[nid]
                if len(out) == len(wanted):
                    break
        return out


def build_module(arch: Architecture, state_dict: StateDict | None = None) -> ArchitectureModule:
    """Build the module of ``arch``, loading ``state_dict`` (strictly) if given."""
    module = ArchitectureModule(arch)
    if state_dict is not None:
        module.load_state_dict(state_dict, strict=True)
    return module


def _functional_layer(arch: Architecture, node: Node, state: StateDict, xs: list[Tensor], bn_train: bool) -> Tensor:
    a = node.attrs

    def p(name: str) -> Tensor | None:
        return state.get(state_key(node.id, name))

    def required(name: str) -> Tensor:  # a tensor every such layer has
        return state[state_key(node.id, name)]

    x = xs[0]
    if node.op == "conv":
        return F.conv2d(x, required("weight"), p("bias"), a["stride"], a["padding"], 1, a["groups"])
    if node.op == "bn":  # eps and momentum as nn.BatchNorm*d's defaults, which _make_layer uses
        if bn_train:  # batch statistics; no running statistics passed, so none is updated
            return F.batch_norm(x, None, None, p("weight"), p("bias"), True, 0.1, 1e-5)
        return F.batch_norm(x, p("running_mean"), p("running_var"), p("weight"), p("bias"), False, 0.1, 1e-5)
    if node.op == "relu":
        return F.relu(x)
    if node.op == "maxpool":
        return F.max_pool2d(x, a["kernel"], a["stride"], a["padding"])
    if node.op == "avgpool":
        return F.avg_pool2d(x, a["kernel"], a["stride"], a["padding"])
    if node.op == "gap":
        return x.mean(dim=(2, 3))
    if node.op == "linear":
        return F.linear(x, required("weight"), p("bias"))
    if node.op in ("dropout", "identity"):  # dropout: off, as in eval mode
        return x
    if node.op == "add":
        weights = a["weights"] or (1.0,) * len(xs)
        out = xs[0] * weights[0] if weights[0] != 1.0 else xs[0]
        for w, y in zip(weights[1:], xs[1:]):
            out = out + (y * w if w != 1.0 else y)
        return out
    if node.op == "concat":
        return torch.cat(xs, dim=1)
    raise AssertionError(f"unhandled op {node.op!r}")


@torch.no_grad()
def functional_forward(arch: Architecture, state_dict: StateDict, x: Tensor, nodes: Sequence[str], *,
                       batchnorm: str = "eval") -> dict[str, Tensor]:
    """The outputs of the named nodes, computed straight from ``state_dict`` without building modules.

    Only the named nodes and what they depend on are computed; dropout is off; BatchNorm uses the batch's
    statistics (``batchnorm="train"``, running statistics left unchanged) or the running ones
    (``"eval"``). Gives what :class:`ArchitectureModule` computes (a test holds them equal) at a fraction
    of the cost of building one: the calibration pass of a deepening runs here.
    """
    if batchnorm not in ("train", "eval"):
        raise ValueError(f"batchnorm must be 'train' or 'eval', but got {batchnorm!r}")
    wanted = set(nodes)
    keep = wanted.union(*(arch.ancestors(n) for n in wanted))
    # Channels-last runs these convolutions about 1.5x faster on CPU; values do not depend on the layout.
    env: dict[str, Tensor] = {INPUT: x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x}
    for nid in arch.topological_order:
        if nid in keep:
            node = arch.node(nid)
            env[nid] = _functional_layer(arch, node, state_dict, [env[i] for i in node.inputs], batchnorm == "train")
    return {nid: env[nid] for nid in nodes}


@torch.no_grad()
def activation_moments(arch: Architecture, state_dict: StateDict, batch: Tensor, nodes: Sequence[str], *,
                       batchnorm: str = "train") -> dict[str, tuple[Tensor, Tensor]]:
    """Per-channel mean and (biased) variance of the named nodes' outputs on a calibration batch.

    With ``batchnorm="train"`` (the default) the network's BatchNorm layers normalise with the batch's
    own statistics, as they do during training, which is where an inserted layer must look like an
    identity first; ``"eval"`` uses their running statistics. Dropout is off either way, and
    ``state_dict`` is not changed. For ``(N, C, H, W)`` outputs the statistics are over N, H and W, as
    BatchNorm computes them; for ``(N, F)`` over N.
    """
    if batchnorm not in ("train", "eval"):
        raise ValueError(f"batchnorm must be 'train' or 'eval', but got {batchnorm!r}")
    if batch.dim() != 4 or tuple(batch.shape[1:]) != tuple(arch.input_shape) or batch.shape[0] < 2:
        raise ValueError(f"the calibration batch must have shape (N >= 2, {', '.join(map(str, arch.input_shape))}), "
                         f"but got {tuple(batch.shape)}")
    acts = functional_forward(arch, state_dict, batch, nodes, batchnorm=batchnorm)
    out = {}
    for nid in nodes:
        a = acts[nid].double()
        dims = (0, 2, 3) if a.dim() == 4 else (0,)
        out[nid] = (a.mean(dim=dims), a.var(dim=dims, unbiased=False))
    return out
