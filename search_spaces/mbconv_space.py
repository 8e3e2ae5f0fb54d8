"""FNA's search space around a MobileNetV2-family seed: :class:`SuperNetSpace` (pure values, no ``torch``).

Fang et al., "Fast Neural Network Adaptation via Parameter Remapping and Architecture Search", ICLR 2020,
sec. 3.2: around a seed, every searchable stage has ``max_layers`` layers, each choosing an MBConv with
kernel {3, 5, 7} and expansion {3, 6}, or skip (except a stage's first layer, which carries the stride and
the channel change). A *choice* maps each slot (``(stage, layer)`` or its label ``"s{stage}_l{layer}"``) to
an op index; :meth:`SuperNetSpace.derive` turns it into an
:class:`~nni_nas_ext.core.mbconv.MBConvArchitecture`. The network that instantiates every candidate of
every slot is :class:`~nni_nas_ext.search_spaces.mbconv_supernet.MBConvSuperNet`; the ``nni.nas`` model
space with NNI's own mutables is :class:`nni_nas_ext.nni.mbconv_space.MBConvModelSpace`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Union

from nni_nas_ext.core.errors import ArchitectureError
from nni_nas_ext.core.mbconv import (
    EXPANSIONS, KERNELS, MBConvArchitecture, MBConvOp, Stage, conv_out, is_int, mbconv_madds, op_name,
)

__all__ = ["Choice", "SuperNetSpace"]

#: A choice of op per slot: ``{(stage, layer) or "s{stage}_l{layer}": op index}``.
Choice = Union[Mapping[tuple[int, int], int], Mapping[str, int], Mapping[Union[tuple[int, int], str], int]]


class SuperNetSpace:
    """FNA's search space around a seed (Fang et al. 2020, sec. 3.2).

    The stem, the head, the classifier and every stage not in ``searchable_stages`` (by default the first
    MBConv stage, MobileNetV2's expansion-1 stage) are fixed as in the seed. Each searchable stage keeps the
    seed's channels and stride and gets ``max_layers`` slots; slot ``l`` chooses among :meth:`ops` ``(s, l)``:
    the ``len(kernels) * len(expansions)`` MBConv ops (kernel-major order: k3_e3, k3_e6, k5_e3, ...) and,
    except for ``l == 0``, ``None`` (skip) as the last candidate. FNA uses ``max_layers = 4``, kernels
    {3, 5, 7} and expansions {3, 6}.

    Feature-map sizes do not depend on the choice (the stride is on slot 0, which is never skipped), so the
    MAdds of a choice are exactly ``fixed_madds() + sum over slots of op_madds(s, l)[choice]``: the expected
    MAdds under slot probabilities ``p`` is ``fixed + sum p . op_madds``, differentiable in ``p`` (the cost
    term of FNA's search loss, task loss + lambda * log(MAdds), sec. 3.2).

    Parameters
    ----------
    seed
        The seed architecture (e.g. :func:`mobilenet_v2`).
    max_layers
        Slots per searchable stage, >= 1.
    kernels, expansions
        Candidate kernels (odd) and expansions.
    searchable_stages
        Indices of the searchable stages; default every stage but the first.
    """

    def __init__(self, seed: MBConvArchitecture, max_layers: int = 4, kernels: Sequence[int] = KERNELS,
                 expansions: Sequence[int] = EXPANSIONS, searchable_stages: Sequence[int] | None = None) -> None:
        if not isinstance(seed, MBConvArchitecture):
            raise TypeError(f"SuperNetSpace needs an MBConvArchitecture seed, got {type(seed).__name__}")
        if not is_int(max_layers) or max_layers < 1:
            raise ArchitectureError(None, "max_layers must be a positive integer", repr(max_layers))
        kernels = tuple(kernels)
        expansions = tuple(expansions)
        if not kernels or len(set(kernels)) != len(kernels):
            raise ArchitectureError(None, "kernels must be a non-empty list of distinct odd integers", repr(kernels))
        if not expansions or len(set(expansions)) != len(expansions):
            raise ArchitectureError(None, "expansions must be a non-empty list of distinct positive integers",
                                    repr(expansions))
        candidates = tuple(MBConvOp(k, e) for k in kernels for e in expansions)  # validates each
        if searchable_stages is None:
            searchable_stages = tuple(range(1, len(seed.stages)))
        searchable = tuple(searchable_stages)
        for s in searchable:
            if not is_int(s) or not 0 <= s < len(seed.stages):
                raise ArchitectureError(None, f"searchable_stages must be stage indices in [0, {len(seed.stages)})",
                                        repr(searchable))
        if len(set(searchable)) != len(searchable) or list(searchable) != sorted(searchable):
            raise ArchitectureError(None, "searchable_stages must be distinct and increasing", repr(searchable))
        if not searchable:
            raise ArchitectureError(None, "searchable_stages must name at least one stage", "none")
        self.seed = seed
        self.max_layers = max_layers
        self.kernels = kernels
        self.expansions = expansions
        self.searchable_stages = searchable
        self._candidates = candidates

    # ---------------------------------------------------------------- slots and ops

    def layer_slots(self) -> list[tuple[int, int]]:
        """The searchable slots ``(stage, layer)`` in network order."""
        return [(s, l) for s in self.searchable_stages for l in range(self.max_layers)]

    def label(self, stage: int, layer: int) -> str:
        """The slot's label, e.g. ``"s2_l0"`` (used as the NNI mutable label)."""
        self.check_slot(stage, layer)
        return f"s{stage}_l{layer}"

    def slot_of(self, label: str) -> tuple[int, int]:
        """Inverse of :meth:`label`."""
        match = re.fullmatch(r"s(\d+)_l(\d+)", label) if isinstance(label, str) else None
        if match is None or (int(match.group(1)), int(match.group(2))) not in self.layer_slots():
            labels = [self.label(*slot) for slot in self.layer_slots()]
            raise KeyError(f"unknown slot label {label!r}: known are {labels}")
        return int(match.group(1)), int(match.group(2))

    def ops(self, stage: int, layer: int) -> list[MBConvOp | None]:
        """The candidates of a slot: the MBConv ops, then ``None`` (skip) unless ``layer == 0``."""
        self.check_slot(stage, layer)
        return list(self._candidates) + ([None] if layer > 0 else [])

    def op_names(self, stage: int, layer: int) -> list[str]:
        """Names of :meth:`ops` (``"k3_e6"``, ..., ``"skip"``)."""
        return [op_name(op) for op in self.ops(stage, layer)]

    def check_slot(self, stage: int, layer: int) -> None:
        """Raise ``KeyError`` naming the searchable stages and layers unless ``(stage, layer)`` is a slot."""
        if stage not in self.searchable_stages or not is_int(layer) or not 0 <= layer < self.max_layers:
            raise KeyError(f"({stage!r}, {layer!r}) is not a searchable slot: stages {list(self.searchable_stages)}, "
                           f"layers 0..{self.max_layers - 1}")

    def slot_io(self, stage: int, layer: int) -> tuple[int, int, int, int]:
        """``(in_channels, out_channels, stride, input_size)`` of the slot's layer."""
        self.check_slot(stage, layer)
        st = self.seed.stages[stage]
        size = self.seed.stage_input_size(stage)
        if layer == 0:
            return self.seed.stage_in_channels(stage), st.channels, st.stride, size
        return st.channels, st.channels, 1, conv_out(size, st.stride)

    # ---------------------------------------------------------------- choices

    def normalise_choice(self, choice: Choice) -> dict[tuple[int, int], int]:
        """``{(stage, layer): index}`` for every slot, from keys that are slots or labels. Raises
        ``ValueError`` naming missing/unknown slots and out-of-range indices."""
        if not isinstance(choice, Mapping):
            raise ValueError(f"a choice must map slots or labels to op indices, got {type(choice).__name__}")
        out: dict[tuple[int, int], int] = {}
        slots = set(self.layer_slots())
        for key, index in choice.items():
            if isinstance(key, str):
                try:
                    slot = self.slot_of(key)
                except KeyError as exc:
                    raise ValueError(exc.args[0]) from None
            elif isinstance(key, tuple) and tuple(key) in slots:
                slot = (int(key[0]), int(key[1]))
            else:
                raise ValueError(f"unknown slot {key!r} in the choice: known are "
                                 f"{[self.label(*s) for s in self.layer_slots()]}")
            if slot in out:
                raise ValueError(f"slot {self.label(*slot)} is given twice in the choice")
            n = len(self.ops(*slot))
            if not is_int(index) or not 0 <= index < n:
                raise ValueError(f"choice[{self.label(*slot)}] must be an op index in [0, {n}) "
                                 f"({self.op_names(*slot)}), got {index!r}")
            out[slot] = int(index)
        missing = [self.label(*s) for s in self.layer_slots() if s not in out]
        if missing:
            raise ValueError(f"the choice misses slots {missing}; every slot needs an op index")
        return out

    def derive(self, choice: Choice) -> MBConvArchitecture:
        """The architecture a choice selects: searchable stages take the chosen op of each slot.

        A skip stays as ``None`` in its slot (no parameters, identity): slot ``l`` of the derived network
        is slot ``l`` of the super-network, with the same state_dict keys and the same remapping source.
        Deviation from FNA, whose derived networks move skips to the end of the stage
        (``sort_net_config``) and so remap a layer after a skip from an earlier seed layer than it had in
        the super-network; :meth:`MBConvArchitecture.compact` gives that layout if wanted.
        """
        norm = self.normalise_choice(choice)
        stages = list(self.seed.stages)
        for s in self.searchable_stages:
            layers = tuple(self.ops(s, l)[norm[(s, l)]] for l in range(self.max_layers))
            stages[s] = Stage(self.seed.stages[s].channels, self.seed.stages[s].stride, layers)
        seed = self.seed
        return MBConvArchitecture(tuple(stages), seed.num_classes, seed.input_size, seed.in_channels,
                                  seed.width_mult, seed.stem_channels, seed.head_channels, seed.stem_stride,
                                  seed.dropout)

    def encode(self, arch: MBConvArchitecture) -> dict[str, int]:
        """The choice (by label) that derives ``arch``; raises ``ValueError`` if ``arch`` is not in the space
        (fixed parts differ, a stage has more slots than ``max_layers``, or an op is not a candidate). A
        searchable stage with fewer slots than ``max_layers`` is padded with skips."""
        if len(arch.stages) != len(self.seed.stages):
            raise ValueError(f"the architecture has {len(arch.stages)} stages, the space {len(self.seed.stages)}")
        out: dict[str, int] = {}
        for s, (st, seed_st) in enumerate(zip(arch.stages, self.seed.stages)):
            if (st.channels, st.stride) != (seed_st.channels, seed_st.stride):
                raise ValueError(f"stage {s} has channels/stride {(st.channels, st.stride)}, the space "
                                 f"{(seed_st.channels, seed_st.stride)}")
            if s not in self.searchable_stages:
                if st != seed_st:
                    raise ValueError(f"stage {s} is fixed in the space but differs from the seed's")
                continue
            if len(st.layers) > self.max_layers:
                raise ValueError(f"stage {s} has {len(st.layers)} slots, the space at most {self.max_layers}")
            layers = list(st.layers) + [None] * (self.max_layers - len(st.layers))
            for l, op in enumerate(layers):
                candidates = self.ops(s, l)
                if op not in candidates:
                    raise ValueError(f"slot {self.label(s, l)}: {op_name(op)} is not among {self.op_names(s, l)}")
                out[self.label(s, l)] = candidates.index(op)
        rebuilt = self.derive(out)
        if rebuilt.to_dict() | {"stages": None} != arch.to_dict() | {"stages": None}:
            raise ValueError("the architecture's stem, head, classes or input differ from the space's seed")
        return out

    # ---------------------------------------------------------------- costs

    def op_madds(self, stage: int, layer: int) -> list[int]:
        """MAdds of each candidate of the slot at its position (skip = 0), aligned with :meth:`ops`."""
        cin, cout, stride, size = self.slot_io(stage, layer)
        return [0 if op is None else mbconv_madds(cin, cout, stride, op, size) for op in self.ops(stage, layer)]

    def fixed_madds(self) -> int:
        """MAdds of the parts no choice changes: stem, fixed stages, head and classifier."""
        seed = self.seed
        sizes = seed.feature_sizes()
        total = sizes[0] ** 2 * seed.stem_channels * seed.in_channels * 9
        for s, l, cin, cout, stride, op in seed.layer_specs():
            if s not in self.searchable_stages:
                total += mbconv_madds(cin, cout, stride, op, sizes[s] if l == 0 else sizes[s + 1])
        total += sizes[-1] ** 2 * seed.head_channels * seed.stages[-1].channels
        total += seed.head_channels * seed.num_classes
        return total

    def size(self) -> int:
        """Number of distinct choices."""
        return math.prod(len(self.ops(*slot)) for slot in self.layer_slots())

    # ---------------------------------------------------------------- (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (the seed architecture included)."""
        return {"seed": self.seed.to_dict(), "max_layers": self.max_layers, "kernels": list(self.kernels),
                "expansions": list(self.expansions), "searchable_stages": list(self.searchable_stages)}

    @classmethod
    def from_dict(cls, data: Any) -> SuperNetSpace:
        """Inverse of :meth:`to_dict`."""
        keys = {"seed", "max_layers", "kernels", "expansions", "searchable_stages"}
        if not isinstance(data, Mapping) or set(data) != keys:
            raise ArchitectureError(None, f"a SuperNetSpace dict has exactly the keys {sorted(keys)}",
                                    repr(data)[:200])
        return cls(MBConvArchitecture.from_dict(data["seed"]), data["max_layers"], data["kernels"],
                   data["expansions"], data["searchable_stages"])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SuperNetSpace) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def __repr__(self) -> str:
        return (f"SuperNetSpace(seed={self.seed.id}, max_layers={self.max_layers}, kernels={self.kernels}, "
                f"expansions={self.expansions}, searchable_stages={self.searchable_stages})")
