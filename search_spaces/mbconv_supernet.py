"""FNA's super-network over a :class:`~nni_nas_ext.search_spaces.mbconv_space.SuperNetSpace`, and its weights.

Fang et al., "Fast Neural Network Adaptation via Parameter Remapping and Architecture Search", ICLR 2020,
sec. 3.2. :class:`MBConvSuperNet` instantiates every candidate of every slot (for ProxylessNAS-style
sampled-path search, through the :attr:`MixedLayer.mixer` hook); :func:`supernet_state_shapes` lists its
state_dict without building it, and :func:`remap_to_supernet` initialises it from a seed's weights by FNA's
parameter remapping (sec. 3.1, :mod:`nni_nas_ext.core.remap`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Callable, Literal, cast

from torch import Tensor, nn

from nni_nas_ext.core.mbconv import (
    ConvBN, MBConvArchitecture, MBConvLayer, MBConvOp, Shape, head_state_shapes, init_weights, layer_state_shapes,
    state_shapes,
)
from nni_nas_ext.core.remap import LayerTarget, StateDict, remap_to_shapes

from .mbconv_space import Choice, SuperNetSpace

__all__ = ["MBConvSuperNet", "MixedLayer", "Mixer", "remap_to_supernet", "supernet_state_shapes"]

Mixer = Callable[[Tensor, "MixedLayer"], Tensor]


class MixedLayer(nn.Module):
    """One searchable slot of :class:`MBConvSuperNet`: every candidate instantiated.

    Attributes
    ----------
    ops
        ``nn.ModuleList`` aligned with ``space.ops(stage, layer)``; a skip is an ``nn.Identity``.
    candidates
        The :class:`MBConvOp` (or ``None``) of each entry of ``ops``.
    active
        Index of the op used when no mixer is set (:meth:`MBConvSuperNet.set_path`).
    mixer
        Optional hook ``mixer(x, layer) -> Tensor``; when set, ``forward(x)`` returns it (ProxylessNAS binary
        gates, DARTS weighted sums... live in the caller).
    stage, layer, label
        The slot.
    madds
        ``space.op_madds(stage, layer)`` (for the expected-MAdds loss term).
    """

    def __init__(self, space: SuperNetSpace, stage: int, layer: int) -> None:
        super().__init__()
        cin, cout, stride, _size = space.slot_io(stage, layer)
        self.stage = stage
        self.layer = layer
        self.label = space.label(stage, layer)
        self.candidates: tuple[MBConvOp | None, ...] = tuple(space.ops(stage, layer))
        self.madds: tuple[int, ...] = tuple(space.op_madds(stage, layer))
        self.ops = nn.ModuleList(nn.Identity() if op is None else MBConvLayer(cin, cout, stride, op)
                                 for op in self.candidates)
        self.active = 0
        self.mixer: Mixer | None = None

    def forward(self, x: Tensor) -> Tensor:
        if self.mixer is not None:
            return self.mixer(x, self)
        return self.ops[self.active](x)


class MBConvSuperNet(nn.Module):
    """FNA's super-network over a :class:`SuperNetSpace` (Fang et al. 2020, sec. 3.2).

    state_dict keys: ``stem.*``, ``stages.{s}.{l}.*`` for the layers of fixed stages (as in
    :class:`MBConvNetwork`), ``searchable.{i}.ops.{j}.*`` for candidate ``j`` of the ``i``-th slot of
    ``space.layer_slots()``, ``head.*``, ``classifier.*``.
    """

    def __init__(self, space: SuperNetSpace) -> None:
        super().__init__()
        seed = space.seed
        self.space = space
        self.stem = ConvBN(seed.in_channels, seed.stem_channels, 3, seed.stem_stride)
        self.stages = nn.ModuleList(nn.ModuleDict() for _ in seed.stages)
        for s, l, cin, cout, stride, op in seed.layer_specs():
            if s not in space.searchable_stages:
                cast(nn.ModuleDict, self.stages[s])[str(l)] = MBConvLayer(cin, cout, stride, op)
        self.searchable = nn.ModuleList(MixedLayer(space, s, l) for s, l in space.layer_slots())
        self.head = ConvBN(seed.stages[-1].channels, seed.head_channels, 1)
        self.dropout = nn.Dropout(seed.dropout)
        self.classifier = nn.Linear(seed.head_channels, seed.num_classes)
        self._slot_index = {slot: i for i, slot in enumerate(space.layer_slots())}
        init_weights(self)

    def mixed_layer(self, stage: int, layer: int) -> MixedLayer:
        """The :class:`MixedLayer` of a slot."""
        self.space.check_slot(stage, layer)
        return self.searchable[self._slot_index[(stage, layer)]]  # type: ignore[return-value]

    def set_path(self, choice: Choice) -> None:
        """Set ``active`` of every slot from a (full) choice."""
        for slot, index in self.space.normalise_choice(choice).items():
            self.mixed_layer(*slot).active = index

    def set_mixer(self, mixer: Mixer | None) -> None:
        """Set (or clear, with ``None``) the mixer hook of every slot."""
        for layer in self.searchable:
            cast(MixedLayer, layer).mixer = mixer

    def features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for s, stage in enumerate(self.stages):
            if s in self.space.searchable_stages:
                for l in range(self.space.max_layers):
                    x = self.searchable[self._slot_index[(s, l)]](x)
            else:
                for layer in cast(nn.ModuleDict, stage).values():
                    x = layer(x)
        return self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))

    def extract(self, choice: Choice) -> dict[str, Tensor]:
        """The state_dict of ``build_network(space.derive(choice))`` holding this super-network's parameters
        of the chosen ops (tensors are detached clones): the derived network computes exactly what the
        super-network computes with ``set_path(choice)``."""
        norm = self.space.normalise_choice(choice)
        sd = self.state_dict()
        out: dict[str, Tensor] = {}
        for key, value in sd.items():
            if not key.startswith("searchable."):
                out[key] = value.detach().clone()
        for slot, index in norm.items():
            prefix = f"searchable.{self._slot_index[slot]}.ops.{index}."
            for key, value in sd.items():
                if key.startswith(prefix):
                    out[f"stages.{slot[0]}.{slot[1]}.{key[len(prefix):]}"] = value.detach().clone()
        order = state_shapes(self.space.derive(norm))
        return {k: out[k] for k in order}


def supernet_state_shapes(space: SuperNetSpace) -> dict[str, Shape]:
    """Every state_dict key of ``MBConvSuperNet(space)`` with its shape, without building it."""
    seed = space.seed
    out: dict[str, Shape] = {}
    for key, shape in state_shapes(seed).items():
        if key.startswith("stages."):
            s = int(key.split(".")[1])
            if s in space.searchable_stages:
                continue
        if key.startswith("head.") or key.startswith("classifier."):
            continue
        out[key] = shape
    for i, (s, l) in enumerate(space.layer_slots()):
        cin, cout, _stride, _size = space.slot_io(s, l)
        for j, op in enumerate(space.ops(s, l)):
            if op is not None:
                out.update(layer_state_shapes(f"searchable.{i}.ops.{j}", cin, cout, op))
    out.update(head_state_shapes(seed))
    return out



def remap_to_supernet(seed_arch: MBConvArchitecture, seed_state: StateDict, space: SuperNetSpace, *,
                      classifier: Literal["remap", "zero"] = "remap") -> dict[str, Tensor]:
    """The state_dict of ``MBConvSuperNet(space)`` remapped from the seed (Fang et al. 2020, sec. 3.1 and
    3.2: the super-network is initialised by remapping, no pre-training).

    Candidate ``j`` of slot ``(s, l)`` takes seed layer ``depth_source(l, L_seed)`` of stage ``s``, remapped to
    its op; fixed stages, stem, head and classifier as in :func:`~nni_nas_ext.core.remap.remap_state_dict`.
    Consequently ``MBConvSuperNet.extract(choice)`` of the result equals
    ``remap_state_dict(seed_arch, seed_state, space.derive(choice))`` for every choice.
    """
    return remap_to_shapes(seed_arch, seed_state, space.seed, supernet_state_shapes(space), _layer_targets(space),
                           classifier=classifier)


def _layer_targets(space: SuperNetSpace) -> Iterator[LayerTarget]:
    """Every MBConv layer of ``MBConvSuperNet(space)`` with the seed slot it is remapped from: the fixed
    stages' layers, then every candidate of every searchable slot."""
    for s, l, cin, cout, _stride, op in space.seed.layer_specs():
        if s not in space.searchable_stages:
            yield s, l, f"stages.{s}.{l}", cin, cout, op
    for i, (s, l) in enumerate(space.layer_slots()):
        cin, cout, _stride, _size = space.slot_io(s, l)
        for j, candidate in enumerate(space.ops(s, l)):
            if candidate is not None:
                yield s, l, f"searchable.{i}.ops.{j}", cin, cout, candidate
