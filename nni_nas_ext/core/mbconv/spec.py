"""The MobileNetV2 family's values: :class:`MBConvOp`, :class:`Stage` and :class:`MBConvArchitecture`.

An :class:`MBConvArchitecture` is a frozen, JSON-serialisable value: a stem (3x3 conv, BN, ReLU6), a
sequence of :class:`Stage` s of inverted-residual (MBConv) layers, a head (1x1 conv, BN, ReLU6), global
average pooling, dropout and a linear classifier -- the network of Sandler et al., "MobileNetV2: Inverted
Residuals and Linear Bottlenecks" (CVPR 2018), as torchvision builds it. Constructing one validates it;
:meth:`MBConvArchitecture.to_dict` / :meth:`MBConvArchitecture.from_dict` round-trip it, with FNA's op names
(``"k3_e6"``) and ``null`` for a skipped slot. Its costs come from :mod:`.shapes`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ArchitectureError
from .shapes import BN_BUFFERS, conv_out, mbconv_madds, state_shapes

__all__ = [
    "EXPANSIONS", "FORMAT", "FORMAT_VERSION", "KERNELS", "MBConvArchitecture", "MBConvOp", "Stage", "is_int",
    "op_name",
]

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)

FORMAT = "mbconv"
FORMAT_VERSION = 1

_OP_NAME = re.compile(r"k(\d+)_e(\d+)")


def is_int(value: Any) -> bool:
    """An ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class MBConvOp:
    """One inverted-residual (MBConv) layer: expand 1x1 -> depthwise ``kernel`` x ``kernel`` -> project 1x1
    (Sandler et al. 2018, Table 1), BN after each conv, ReLU6 after the first two, a residual connection
    when the stride is 1 and the input and output channels are equal. With ``expansion == 1`` there is no
    expansion conv (as in torchvision). The hidden width is ``in_channels * expansion``.

    Parameters
    ----------
    kernel
        Odd, >= 1 (the padding is ``kernel // 2``). FNA searches {3, 5, 7} (:data:`KERNELS`).
    expansion
        >= 1. FNA searches {3, 6} (:data:`EXPANSIONS`); MobileNetV2 uses 6 and 1 (first stage).
    """

    kernel: int
    expansion: int

    def __post_init__(self) -> None:
        if not is_int(self.kernel) or self.kernel < 1 or self.kernel % 2 == 0:
            raise ArchitectureError(None, "MBConvOp kernel must be an odd positive integer", repr(self.kernel))
        if not is_int(self.expansion) or self.expansion < 1:
            raise ArchitectureError(None, "MBConvOp expansion must be a positive integer", repr(self.expansion))

    @property
    def name(self) -> str:
        """FNA's name of the op, e.g. ``k3_e6``."""
        return f"k{self.kernel}_e{self.expansion}"

    @classmethod
    def parse(cls, name: str) -> MBConvOp:
        """The op named ``k{kernel}_e{expansion}`` (see :attr:`name`)."""
        match = _OP_NAME.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise ArchitectureError(None, "an MBConv op name has the form 'k<kernel>_e<expansion>', e.g. 'k3_e6'",
                                    repr(name))
        return cls(int(match.group(1)), int(match.group(2)))


def op_name(op: MBConvOp | None) -> str:
    """FNA's name of a slot's op (:attr:`MBConvOp.name`), ``"skip"`` for ``None``."""
    return "skip" if op is None else op.name


@dataclass(frozen=True)
class Stage:
    """A stage of MBConv layers with ``channels`` output channels.

    Parameters
    ----------
    channels
        Output channels of every layer (already multiplied by the width multiplier and rounded).
    stride
        1 or 2, applied by the first layer.
    layers
        One entry per slot: an :class:`MBConvOp`, or ``None`` for a skipped slot (identity). ``layers[0]``
        is never ``None`` (it changes the channels and applies the stride).
    """

    channels: int
    stride: int
    layers: tuple[MBConvOp | None, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers) if isinstance(self.layers, (list, tuple))
                           else self.layers)
        if not is_int(self.channels) or self.channels < 1:
            raise ArchitectureError(None, "Stage channels must be a positive integer", repr(self.channels))
        if self.stride not in (1, 2) or not is_int(self.stride):
            raise ArchitectureError(None, "Stage stride must be 1 or 2", repr(self.stride))
        if not isinstance(self.layers, tuple) or not self.layers:
            raise ArchitectureError(None, "Stage layers must be a non-empty tuple of MBConvOp or None",
                                    repr(self.layers))
        for i, op in enumerate(self.layers):
            if op is not None and not isinstance(op, MBConvOp):
                raise ArchitectureError(None, f"Stage layers[{i}] must be an MBConvOp or None", repr(op))
        if self.layers[0] is None:
            raise ArchitectureError(None, "a stage's first layer (layers[0]) must not be a skip", "None")

    @property
    def depth(self) -> int:
        """Number of layers that are not skipped."""
        return sum(op is not None for op in self.layers)


@dataclass(frozen=True)
class MBConvArchitecture:
    """A network of the MobileNetV2 family (Sandler et al. 2018), validated on construction.

    Parameters
    ----------
    stages
        The MBConv stages, in order.
    num_classes
        Number of logits.
    input_size
        Height = width of the input images (used by :meth:`num_madds` and for the feature-map sizes).
    in_channels
        Channels of the input images.
    width_mult
        The width multiplier the channels were made with (recorded; the channels below are already
        multiplied and rounded, see :func:`~.mobilenet.make_divisible`).
    stem_channels, head_channels
        Output channels of the stem 3x3 conv and of the head 1x1 conv.
    stem_stride
        1 or 2.
    dropout
        Dropout probability before the classifier, in [0, 1).

    Raises
    ------
    ArchitectureError
        Naming the field, the value and the rule that is broken.
    """

    stages: tuple[Stage, ...]
    num_classes: int
    input_size: int
    in_channels: int = 3
    width_mult: float = 1.0
    stem_channels: int = 32
    head_channels: int = 1280
    stem_stride: int = 2
    dropout: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.stages, list):
            object.__setattr__(self, "stages", tuple(self.stages))
        if not isinstance(self.stages, tuple) or not self.stages:
            raise ArchitectureError(None, "stages must be a non-empty tuple of Stage", repr(self.stages)[:200])
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, Stage):
                raise ArchitectureError(None, f"stages[{i}] must be a Stage", repr(stage)[:200])
        for name in ("num_classes", "input_size", "in_channels", "stem_channels", "head_channels"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
                raise ArchitectureError(None, f"{name} must be a positive integer", repr(value))
        if self.stem_stride not in (1, 2) or not is_int(self.stem_stride):
            raise ArchitectureError(None, "stem_stride must be 1 or 2", repr(self.stem_stride))
        if (isinstance(self.width_mult, bool) or not isinstance(self.width_mult, (int, float))
                or not math.isfinite(self.width_mult) or self.width_mult <= 0):
            raise ArchitectureError(None, "width_mult must be a finite number > 0", repr(self.width_mult))
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
                or not 0.0 <= self.dropout < 1.0):
            raise ArchitectureError(None, "dropout must lie in [0, 1)", repr(self.dropout))
        object.__setattr__(self, "width_mult", float(self.width_mult))
        object.__setattr__(self, "dropout", float(self.dropout))

    # ---------------------------------------------------------------- structure

    def layer_specs(self) -> Iterator[tuple[int, int, int, int, int, MBConvOp]]:
        """Every present layer as ``(stage, slot, in_channels, out_channels, stride, op)``, in order."""
        cin = self.stem_channels
        for s, stage in enumerate(self.stages):
            for l, op in enumerate(stage.layers):
                if op is None:
                    continue
                yield s, l, cin if l == 0 else stage.channels, stage.channels, stage.stride if l == 0 else 1, op
            cin = stage.channels

    def stage_in_channels(self, stage: int) -> int:
        """Input channels of stage ``stage``."""
        return self.stem_channels if stage == 0 else self.stages[stage - 1].channels

    def feature_sizes(self) -> list[int]:
        """Spatial size after the stem and after each stage (``[stem, stage 0, stage 1, ...]``)."""
        size = conv_out(self.input_size, self.stem_stride)
        out = [size]
        for stage in self.stages:
            size = conv_out(size, stage.stride)
            out.append(size)
        return out

    def stage_input_size(self, stage: int) -> int:
        """Spatial size of the input of stage ``stage``."""
        return self.feature_sizes()[stage]

    # ---------------------------------------------------------------- costs

    def num_parameters(self) -> int:
        """Number of trainable parameters of :func:`~.modules.build_network` (computed from shapes alone; equal to
        torchvision's count for :func:`~.mobilenet.mobilenet_v2`)."""
        return sum(math.prod(shape) for key, shape in state_shapes(self).items()
                   if key.rsplit(".", 1)[-1] not in BN_BUFFERS)

    def num_madds(self) -> int:
        """Multiply-adds of one forward pass of one image at ``input_size`` (counted as :mod:`.shapes` says)."""
        sizes = self.feature_sizes()
        total = sizes[0] ** 2 * self.stem_channels * self.in_channels * 9
        for s, l, cin, cout, stride, op in self.layer_specs():
            size_in = sizes[s] if l == 0 else sizes[s + 1]
            total += mbconv_madds(cin, cout, stride, op, size_in)
        total += sizes[-1] ** 2 * self.head_channels * self.stages[-1].channels
        total += self.head_channels * self.num_classes
        return total

    # ---------------------------------------------------------------- (de)serialisation

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict form; layers are FNA op names (``"k3_e6"``) and ``null`` for a skip."""
        return {
            "format": FORMAT, "version": FORMAT_VERSION,
            "num_classes": self.num_classes, "input_size": self.input_size, "in_channels": self.in_channels,
            "width_mult": self.width_mult, "stem_channels": self.stem_channels,
            "head_channels": self.head_channels, "stem_stride": self.stem_stride, "dropout": self.dropout,
            "stages": [{"channels": st.channels, "stride": st.stride,
                        "layers": [None if op is None else op.name for op in st.layers]} for st in self.stages],
        }

    @classmethod
    def from_dict(cls, data: Any) -> MBConvArchitecture:
        """Inverse of :meth:`to_dict`; unknown or missing keys raise :class:`ArchitectureError`."""
        if not isinstance(data, Mapping):
            raise ArchitectureError(None, "an MBConv architecture must be a JSON object", type(data).__name__)
        if data.get("format", FORMAT) != FORMAT or data.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise ArchitectureError(None, f"format must be {FORMAT!r} version {FORMAT_VERSION}",
                                    f"{data.get('format')!r} version {data.get('version')!r}")
        fields = {"num_classes", "input_size", "in_channels", "width_mult", "stem_channels", "head_channels",
                  "stem_stride", "dropout"}
        allowed = fields | {"format", "version", "stages"}
        extra = sorted(str(k) for k in set(data) - allowed)
        if extra:
            raise ArchitectureError(None, f"an MBConv architecture has keys {sorted(allowed)}", f"extra keys {extra}")
        for key in ("stages", "num_classes", "input_size"):
            if key not in data:
                raise ArchitectureError(None, f"an MBConv architecture needs key {key!r}", "it missing")
        raw_stages = data["stages"]
        if not isinstance(raw_stages, list):
            raise ArchitectureError(None, "'stages' must be a list", repr(raw_stages)[:200])
        stages = []
        for i, st in enumerate(raw_stages):
            if not isinstance(st, Mapping) or set(st) != {"channels", "stride", "layers"}:
                raise ArchitectureError(None, f"stages[{i}] must be an object with keys channels, stride, layers",
                                        repr(st)[:200])
            if not isinstance(st["layers"], list):
                raise ArchitectureError(None, f"stages[{i}].layers must be a list", repr(st["layers"])[:200])
            layers = tuple(None if name is None else MBConvOp.parse(name) for name in st["layers"])
            stages.append(Stage(st["channels"], st["stride"], layers))
        return cls(tuple(stages), **{k: data[k] for k in fields if k in data})

    @property
    def id(self) -> str:
        """Stable short content hash (16 hex digits) of :meth:`to_dict`."""
        cached = self.__dict__.get("_id")
        if cached is None:
            body = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
            cached = hashlib.sha256(body.encode()).hexdigest()[:16]
            object.__setattr__(self, "_id", cached)
        return cached

    def describe(self) -> str:
        """Human-readable summary: one line per stage with its ops, then parameters and MAdds."""
        sizes = self.feature_sizes()
        lines = [f"MBConv network {self.id}: input {self.in_channels}x{self.input_size}x{self.input_size}, "
                 f"{self.num_classes} classes, width x{self.width_mult:g}",
                 f"  stem   conv3x3 -> {self.stem_channels} stride {self.stem_stride} ({sizes[0]}x{sizes[0]})"]
        for s, st in enumerate(self.stages):
            ops = " ".join(op_name(op) for op in st.layers)
            lines.append(f"  stage {s} -> {st.channels} stride {st.stride} ({sizes[s + 1]}x{sizes[s + 1]}): {ops}")
        lines.append(f"  head   conv1x1 -> {self.head_channels}, pool, dropout {self.dropout:g}, "
                     f"linear -> {self.num_classes}")
        lines.append(f"  {self.num_parameters():,} parameters, {self.num_madds():,} MAdds")
        return "\n".join(lines)

    def compact(self) -> MBConvArchitecture:
        """The same network with skipped slots removed (same function for the same layer parameters, but
        the layers' slot indices -- and so their state_dict keys and remapping sources -- change)."""
        stages = tuple(Stage(st.channels, st.stride, tuple(op for op in st.layers if op is not None))
                       for st in self.stages)
        return MBConvArchitecture(stages, self.num_classes, self.input_size, self.in_channels, self.width_mult,
                                  self.stem_channels, self.head_channels, self.stem_stride, self.dropout)
