"""The MobileNetV2 family: architectures, the network builder and FNA's super-network.

An :class:`MBConvArchitecture` is a frozen, JSON-serialisable value: a stem (3x3 conv, BN, ReLU6), a
sequence of :class:`Stage` s of inverted-residual (MBConv) layers, a head (1x1 conv, BN, ReLU6), global
average pooling, dropout and a linear classifier -- the network of Sandler et al., "MobileNetV2: Inverted
Residuals and Linear Bottlenecks" (CVPR 2018), as torchvision builds it. :func:`mobilenet_v2` returns
exactly torchvision's ``mobilenet_v2`` (same modules, same parameter count, same function once its
state_dict is converted with :func:`torchvision_to_state_dict`).

:class:`SuperNetSpace` is the search space of FNA (Fang et al., "Fast Neural Network Adaptation via
Parameter Remapping and Architecture Search", ICLR 2020, sec. 3.2): around a seed, every searchable stage
has ``max_layers`` layers, each choosing an MBConv with kernel {3, 5, 7} and expansion {3, 6}, or skip
(except a stage's first layer, which carries the stride and the channel change). :class:`MBConvSuperNet`
instantiates every candidate of every slot (for ProxylessNAS-style sampled-path search, through the
:attr:`MixedLayer.mixer` hook).

state_dict keys of :func:`build_network` (class :class:`MBConvNetwork`)
-------------------------------------------------------------------------
=================================================  ==============================================
``stem.conv.weight``, ``stem.bn.*``                 3x3 conv (stride ``stem_stride``), BN
``stages.{s}.{l}.expand.conv.weight``, ``.bn.*``    1x1 expansion conv, BN (absent if expansion 1)
``stages.{s}.{l}.depthwise.conv.weight``, ``.bn.*`` kxk depthwise conv (stride on layer 0), BN
``stages.{s}.{l}.project.conv.weight``, ``.bn.*``   1x1 linear projection conv, BN
``head.conv.weight``, ``head.bn.*``                 1x1 conv to ``head_channels``, BN
``classifier.weight``, ``classifier.bias``          linear layer
=================================================  ==============================================

``s`` is the stage index and ``l`` the *slot* index of the layer in its stage: a skipped slot (``None``)
has no parameters and leaves a gap in ``l``, so that slot ``l`` of a derived network and slot ``l`` of the
super-network hold the same candidate's parameters. ``.bn.*`` are ``weight``, ``bias``, ``running_mean``,
``running_var`` and ``num_batches_tracked``. Convolutions have no bias (like torchvision).

MAdds are counted like FNA's ``multadds_count`` and ProxylessNAS: for every convolution
``H_out * W_out * C_out * (C_in / groups) * k * k``, plus ``in * out`` for the classifier; BatchNorm,
activations, residual additions and pooling are not counted. MobileNetV2 (width 1.0, 224x224) has
300,774,272 MAdds by this count, the "300M" of Sandler et al. (2018), Table 4.

Small inputs
------------
:func:`mobilenet_v2` keeps torchvision's layout (total stride 32; a 7x7 last feature map at 224x224) for
inputs of 33x33 and more. For smaller inputs it turns the *earliest* stride-2 positions into stride 1 --
the stem first, then the first layer of stages 1, 2, 3 and 5 (0-based; the stages of 24, 32, 64 and 160
channels at width 1) in that order -- until the last feature map is at least 2x2: it keeps the largest
number ``n <= 5`` of halvings such that halving the input ``n`` times (rounding up) leaves >= 2
(:func:`small_input_strides`). Inputs of 17-32 keep 4 halvings, 9-16 keep 3, 5-8 keep 2, 3-4 keep 1.
28x28: the stem becomes stride 1 (28 -> 28 -> 14 -> 7 -> 4 -> 2); 8x8: the stem and stages 1 and 2 become
stride 1 (8 -> 8 -> 4 -> 2). This follows the usual CIFAR practice of keeping the early resolution high
(deviation: neither Sandler et al. nor Fang et al. give a rule for inputs this small).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Union

import torch
from torch import Tensor, nn

from .errors import ArchitectureError

__all__ = [
    "EXPANSIONS",
    "KERNELS",
    "MOBILENET_V2_SETTING",
    "STANDARD_WIDTHS",
    "ConvBN",
    "MBConvArchitecture",
    "MBConvLayer",
    "MBConvNetwork",
    "MBConvOp",
    "MBConvSuperNet",
    "MixedLayer",
    "Stage",
    "SuperNetSpace",
    "build_network",
    "layer_state_shapes",
    "make_divisible",
    "mbconv_madds",
    "mobilenet_v2",
    "small_input_strides",
    "state_dict_to_torchvision",
    "state_shapes",
    "supernet_state_shapes",
    "torchvision_architecture",
    "torchvision_to_state_dict",
]

KERNELS: tuple[int, ...] = (3, 5, 7)
EXPANSIONS: tuple[int, ...] = (3, 6)

#: torchvision's MobileNetV2 setting: (expansion t, channels c, layers n, stride s) per stage.
MOBILENET_V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)

#: Width multipliers of common MobileNetV2 checkpoints (Sandler et al. 2018 evaluate 0.35 to 1.4).
STANDARD_WIDTHS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 1.3, 1.4)

FORMAT = "mbconv"
FORMAT_VERSION = 1
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

Choice = Mapping[Union[tuple[int, int], str], int]
Shape = tuple[int, ...]
_OP_NAME = re.compile(r"k(\d+)_e(\d+)")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of ``divisor`` the way torchvision (and the TF MobileNet code)
    does: to the nearest multiple, at least ``min_value`` (default ``divisor``), never more than 10% below
    ``value``."""
    if min_value is None:
        min_value = divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def _conv_out(size: int, stride: int) -> int:
    """Spatial output of a conv with odd kernel k, padding k // 2 and this stride: ``ceil(size / stride)``."""
    return (size + stride - 1) // stride


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


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
        if not _is_int(self.kernel) or self.kernel < 1 or self.kernel % 2 == 0:
            raise ArchitectureError(None, "MBConvOp kernel must be an odd positive integer", repr(self.kernel))
        if not _is_int(self.expansion) or self.expansion < 1:
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


def _op_name(op: MBConvOp | None) -> str:
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
        if not _is_int(self.channels) or self.channels < 1:
            raise ArchitectureError(None, "Stage channels must be a positive integer", repr(self.channels))
        if self.stride not in (1, 2) or not _is_int(self.stride):
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
        multiplied and rounded, see :func:`make_divisible`).
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
            if not _is_int(value) or value < 1:
                raise ArchitectureError(None, f"{name} must be a positive integer", repr(value))
        if self.stem_stride not in (1, 2) or not _is_int(self.stem_stride):
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
        size = _conv_out(self.input_size, self.stem_stride)
        out = [size]
        for stage in self.stages:
            size = _conv_out(size, stage.stride)
            out.append(size)
        return out

    def stage_input_size(self, stage: int) -> int:
        """Spatial size of the input of stage ``stage``."""
        return self.feature_sizes()[stage]

    # ---------------------------------------------------------------- costs

    def num_parameters(self) -> int:
        """Number of trainable parameters of :func:`build_network` (computed from shapes alone; equal to
        torchvision's count for :func:`mobilenet_v2`)."""
        return sum(math.prod(shape) for key, shape in state_shapes(self).items()
                   if key.rsplit(".", 1)[-1] not in BN_BUFFERS)

    def num_madds(self) -> int:
        """Multiply-adds of one forward pass of one image at ``input_size`` (see the module docstring)."""
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
            ops = " ".join(_op_name(op) for op in st.layers)
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


def mbconv_madds(in_channels: int, out_channels: int, stride: int, op: MBConvOp, input_size: int) -> int:
    """MAdds of one MBConv layer on an ``input_size`` x ``input_size`` input (convs only)."""
    hidden = in_channels * op.expansion
    out_size = _conv_out(input_size, stride)
    total = 0
    if op.expansion != 1:
        total += input_size ** 2 * hidden * in_channels
    total += out_size ** 2 * hidden * op.kernel ** 2
    total += out_size ** 2 * out_channels * hidden
    return total


def _bn_shapes(prefix: str, channels: int) -> dict[str, Shape]:
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def layer_state_shapes(prefix: str, in_channels: int, out_channels: int, op: MBConvOp) -> dict[str, Shape]:
    """state_dict shapes of one :class:`MBConvLayer` under ``prefix`` (e.g. ``"stages.1.0"``)."""
    hidden = in_channels * op.expansion
    out: dict[str, Shape] = {}
    if op.expansion != 1:
        out[f"{prefix}.expand.conv.weight"] = (hidden, in_channels, 1, 1)
        out.update(_bn_shapes(f"{prefix}.expand.bn", hidden))
    out[f"{prefix}.depthwise.conv.weight"] = (hidden, 1, op.kernel, op.kernel)
    out.update(_bn_shapes(f"{prefix}.depthwise.bn", hidden))
    out[f"{prefix}.project.conv.weight"] = (out_channels, hidden, 1, 1)
    out.update(_bn_shapes(f"{prefix}.project.bn", out_channels))
    return out


def state_shapes(arch: MBConvArchitecture) -> dict[str, Shape]:
    """Every state_dict key of ``build_network(arch)`` with its shape, in module order, without building it."""
    out: dict[str, Shape] = {"stem.conv.weight": (arch.stem_channels, arch.in_channels, 3, 3)}
    out.update(_bn_shapes("stem.bn", arch.stem_channels))
    for s, l, cin, cout, _stride, op in arch.layer_specs():
        out.update(layer_state_shapes(f"stages.{s}.{l}", cin, cout, op))
    out["head.conv.weight"] = (arch.head_channels, arch.stages[-1].channels, 1, 1)
    out.update(_bn_shapes("head.bn", arch.head_channels))
    out["classifier.weight"] = (arch.num_classes, arch.head_channels)
    out["classifier.bias"] = (arch.num_classes,)
    return out


# --------------------------------------------------------------------------------------------------
# MobileNetV2
# --------------------------------------------------------------------------------------------------


def small_input_strides(input_size: int, max_halvings: int = 5, min_feature: int = 2) -> tuple[bool, ...]:
    """Which of the ``max_halvings`` stride-2 positions keep stride 2 for this input size (earliest first).

    The rule (see the module docstring): keep the *last* ``n`` positions, ``n`` the largest number
    ``<= max_halvings`` such that halving ``input_size`` (rounding up) ``n`` times leaves ``>= min_feature``;
    the earlier ones become stride 1. An input smaller than ``min_feature`` keeps none.
    """
    if not _is_int(input_size) or input_size < 1:
        raise ArchitectureError(None, "input_size must be a positive integer", repr(input_size))
    n, size = 0, input_size
    while n < max_halvings and _conv_out(size, 2) >= min_feature:
        size = _conv_out(size, 2)
        n += 1
    return tuple(i >= max_halvings - n for i in range(max_halvings))


def mobilenet_v2(num_classes: int = 1000, width_mult: float = 1.0, input_size: int = 224,
                 in_channels: int = 3, dropout: float = 0.2) -> MBConvArchitecture:
    """MobileNetV2 (Sandler et al. 2018, Table 2) exactly as torchvision's ``mobilenet_v2`` builds it.

    Channels are ``make_divisible(c * width_mult, 8)``, the head has
    ``make_divisible(1280 * max(1, width_mult), 8)`` channels; all kernels are 3. For ``input_size >= 33``
    the strides are torchvision's (stem 2; stages 1, 2, 2, 2, 1, 2, 1); smaller inputs drop the earliest
    stride-2 positions by the rule of :func:`small_input_strides` (deviation from torchvision, which has no
    such rule). ``in_channels`` other than 3 changes the stem conv only.
    """
    if (isinstance(width_mult, bool) or not isinstance(width_mult, (int, float)) or not math.isfinite(width_mult)
            or width_mult <= 0):
        raise ArchitectureError(None, "width_mult must be a finite number > 0", repr(width_mult))
    keep = small_input_strides(input_size)
    positions = iter(keep)
    stem_stride = 2 if next(positions) else 1
    stages = []
    for t, c, n, s in MOBILENET_V2_SETTING:
        stride = s
        if s == 2 and not next(positions):
            stride = 1
        stages.append(Stage(make_divisible(c * width_mult), stride, tuple(MBConvOp(3, t) for _ in range(n))))
    return MBConvArchitecture(
        tuple(stages), num_classes=num_classes, input_size=input_size, in_channels=in_channels,
        width_mult=float(width_mult), stem_channels=make_divisible(32 * width_mult),
        head_channels=make_divisible(1280 * max(1.0, width_mult)), stem_stride=stem_stride, dropout=dropout)


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class ConvBN(nn.Sequential):
    """Conv (no bias) -> BatchNorm -> optional ReLU6; submodules ``conv``, ``bn``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        if relu:
            self.act = nn.ReLU6(inplace=False)


class MBConvLayer(nn.Module):
    """One inverted-residual layer (see :class:`MBConvOp`); submodules ``expand`` (if expansion > 1),
    ``depthwise``, ``project``."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, op: MBConvOp) -> None:
        super().__init__()
        hidden = in_channels * op.expansion
        self.op = op
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = ConvBN(in_channels, hidden, 1) if op.expansion != 1 else None
        self.depthwise = ConvBN(hidden, hidden, op.kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, out_channels, 1, relu=False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.project(self.depthwise(y))
        return x + y if self.use_residual else y


class MBConvNetwork(nn.Module):
    """The network of an :class:`MBConvArchitecture`; ``forward(x) -> logits``. Keys: module docstring."""

    def __init__(self, arch: MBConvArchitecture) -> None:
        super().__init__()
        self.arch = arch
        self.stem = ConvBN(arch.in_channels, arch.stem_channels, 3, arch.stem_stride)
        self.stages = nn.ModuleList(nn.ModuleDict() for _ in arch.stages)
        for s, l, cin, cout, stride, op in arch.layer_specs():
            self.stages[s][str(l)] = MBConvLayer(cin, cout, stride, op)
        self.head = ConvBN(arch.stages[-1].channels, arch.head_channels, 1)
        self.dropout = nn.Dropout(arch.dropout)
        self.classifier = nn.Linear(arch.head_channels, arch.num_classes)
        _init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        """The last feature map (after the head conv), ``(N, head_channels, h, w)``."""
        x = self.stem(x)
        for stage in self.stages:
            for layer in stage.values():
                x = layer(x)
        return self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))


def _init_weights(module: nn.Module) -> None:
    """torchvision's MobileNetV2 initialisation: kaiming-normal (fan_out) convs, BN (1, 0), linear N(0, 0.01)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build_network(arch: MBConvArchitecture) -> MBConvNetwork:
    """A freshly initialised :class:`MBConvNetwork` for ``arch`` (initialisation as torchvision's)."""
    if not isinstance(arch, MBConvArchitecture):
        raise TypeError(f"build_network needs an MBConvArchitecture, got {type(arch).__name__}")
    return MBConvNetwork(arch)


# --------------------------------------------------------------------------------------------------
# torchvision state_dicts
# --------------------------------------------------------------------------------------------------


def _torchvision_key_map(arch: MBConvArchitecture) -> dict[str, str]:
    """Our key -> torchvision's key, for every key of ``state_shapes(arch)``."""
    if any(op is None for st in arch.stages for op in st.layers):
        raise ArchitectureError(None, "a torchvision MobileNetV2 state_dict has no skipped layers",
                                "an architecture with None slots (use arch.compact())")
    mapping: dict[str, str] = {}

    def bn(ours: str, theirs: str) -> None:
        for name in BN_KEYS:
            mapping[f"{ours}.{name}"] = f"{theirs}.{name}"

    mapping["stem.conv.weight"] = "features.0.0.weight"
    bn("stem.bn", "features.0.1")
    index = 1
    for s, l, _cin, _cout, _stride, op in arch.layer_specs():
        ours, theirs = f"stages.{s}.{l}", f"features.{index}.conv"
        j = 0
        if op.expansion != 1:
            mapping[f"{ours}.expand.conv.weight"] = f"{theirs}.0.0.weight"
            bn(f"{ours}.expand.bn", f"{theirs}.0.1")
            j = 1
        mapping[f"{ours}.depthwise.conv.weight"] = f"{theirs}.{j}.0.weight"
        bn(f"{ours}.depthwise.bn", f"{theirs}.{j}.1")
        mapping[f"{ours}.project.conv.weight"] = f"{theirs}.{j + 1}.weight"
        bn(f"{ours}.project.bn", f"{theirs}.{j + 2}")
        index += 1
    mapping["head.conv.weight"] = f"features.{index}.0.weight"
    bn("head.bn", f"features.{index}.1")
    mapping["classifier.weight"] = "classifier.1.weight"
    mapping["classifier.bias"] = "classifier.1.bias"
    return mapping


def _remedy_for(key: str, expected: Shape, found: Shape, arch: MBConvArchitecture) -> str:
    if key == "classifier.1.weight" or key == "classifier.1.bias":
        return (f"the checkpoint has {found[0]} classes but the architecture {arch.num_classes}: build the seed "
                f"with mobilenet_v2(num_classes={found[0]}, ...) (or torchvision_architecture(state_dict)) and "
                "remap it to the target task with remap_state_dict, which handles a new class count")
    if key == "features.0.0.weight" and len(found) == 4 and found[1] != expected[1]:
        return (f"the checkpoint takes {found[1]} input channels but the architecture {arch.in_channels}: build "
                f"the seed with in_channels={found[1]} (remap_state_dict adapts the stem to another channel count)")
    return ("the checkpoint is for another width or layout: build the architecture with "
            "torchvision_architecture(state_dict) or the right mobilenet_v2(width_mult=...)")


def torchvision_to_state_dict(tv_state_dict: Mapping[str, Tensor], arch: MBConvArchitecture) -> dict[str, Tensor]:
    """Convert a torchvision ``mobilenet_v2`` state_dict (keys ``features.{i}.conv...``, ``classifier.1.*``)
    into the keys of ``build_network(arch)``.

    A ``module.`` prefix (DataParallel) is stripped. Tensors are not copied.

    Raises
    ------
    ValueError
        If keys are missing or unexpected, or a shape differs -- naming the key, both shapes and the remedy
        (e.g. another ``num_classes`` or ``in_channels`` for the seed).
    """
    sd = _strip_module_prefix(tv_state_dict)
    mapping = _torchvision_key_map(arch)
    shapes = state_shapes(arch)
    wanted = set(mapping.values())
    missing = [theirs for theirs in mapping.values() if theirs not in sd]
    # old torchvision checkpoints lack num_batches_tracked: tolerated, filled with 0
    missing_real = [k for k in missing if not k.endswith("num_batches_tracked")]
    unexpected = sorted(k for k in sd if k not in wanted)
    if missing_real or unexpected:
        raise ValueError(
            f"the state_dict does not match torchvision's mobilenet_v2 layout of this architecture: missing keys "
            f"{missing_real[:8]}{' ...' if len(missing_real) > 8 else ''}, unexpected keys "
            f"{unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}; build the architecture with "
            "torchvision_architecture(state_dict) or the matching mobilenet_v2(...)")
    out: dict[str, Tensor] = {}
    for ours, theirs in mapping.items():
        if theirs not in sd:
            out[ours] = torch.tensor(0, dtype=torch.long)
            continue
        value = sd[theirs]
        if not isinstance(value, Tensor):
            raise ValueError(f"state_dict[{theirs!r}] must be a tensor, got {type(value).__name__}")
        if tuple(value.shape) != shapes[ours]:
            remedy = _remedy_for(theirs, shapes[ours], tuple(value.shape), arch)
            raise ValueError(f"state_dict[{theirs!r}] has shape {tuple(value.shape)} but the architecture needs "
                             f"{shapes[ours]} (for {ours!r}): {remedy}")
        out[ours] = value
    return out


def state_dict_to_torchvision(state_dict: Mapping[str, Tensor], arch: MBConvArchitecture) -> dict[str, Tensor]:
    """Inverse of :func:`torchvision_to_state_dict`: our keys -> torchvision's ``mobilenet_v2`` keys (for an
    architecture without skipped slots). Raises ValueError on missing keys or wrong shapes."""
    mapping = _torchvision_key_map(arch)
    shapes = state_shapes(arch)
    missing = [k for k in mapping if k not in state_dict]
    unexpected = sorted(k for k in state_dict if k not in mapping)
    if missing or unexpected:
        raise ValueError(f"the state_dict does not belong to build_network(arch): missing keys {missing[:8]}, "
                         f"unexpected keys {unexpected[:8]}")
    out: dict[str, Tensor] = {}
    for ours, theirs in mapping.items():
        if tuple(state_dict[ours].shape) != shapes[ours]:
            raise ValueError(f"state_dict[{ours!r}] has shape {tuple(state_dict[ours].shape)}, the architecture "
                             f"needs {shapes[ours]}")
        out[theirs] = state_dict[ours]
    return out


def _strip_module_prefix(sd: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    if not isinstance(sd, Mapping):
        raise TypeError(f"a state_dict must be a mapping of names to tensors, got {type(sd).__name__}")
    if sd and all(isinstance(k, str) and k.startswith("module.") for k in sd):
        return {k[len("module."):]: v for k, v in sd.items()}
    return sd


def torchvision_architecture(tv_state_dict: Mapping[str, Tensor], input_size: int = 224,
                             dropout: float = 0.2) -> MBConvArchitecture:
    """The architecture of a torchvision ``mobilenet_v2`` checkpoint, read from its tensor shapes.

    Channels, expansions, kernels, number of classes and input channels come from the shapes; the number
    of layers per stage and the strides are torchvision's (:data:`MOBILENET_V2_SETTING`, with the small-input
    rule of :func:`mobilenet_v2`); ``width_mult`` is recorded as the first of :data:`STANDARD_WIDTHS` whose
    channels match (so that the result equals ``mobilenet_v2(...)`` for such a checkpoint), else as the ratio
    of the stem width to 32. Any
    state_dict written by ``torch.save(torchvision.models.mobilenet_v2(...).state_dict())`` gives an
    architecture that :func:`torchvision_to_state_dict` accepts.
    """
    sd = _strip_module_prefix(tv_state_dict)
    try:
        stem = sd["features.0.0.weight"]
        n_blocks = sum(n for *_, n, _ in MOBILENET_V2_SETTING)
        blocks: list[tuple[int, int, int]] = []  # (out channels, expansion, kernel)
        cin = stem.shape[0]
        for i in range(1, n_blocks + 1):
            p = f"features.{i}.conv"
            if f"{p}.0.0.weight" in sd and sd[f"{p}.0.0.weight"].shape[1] != 1:  # expansion conv present
                hidden = sd[f"{p}.0.0.weight"].shape[0]
                kernel = sd[f"{p}.1.0.weight"].shape[-1]
                cout = sd[f"{p}.2.weight"].shape[0]
            else:
                hidden = sd[f"{p}.0.0.weight"].shape[0]
                kernel = sd[f"{p}.0.0.weight"].shape[-1]
                cout = sd[f"{p}.1.weight"].shape[0]
            if hidden % cin:
                raise ValueError(f"features.{i}: hidden width {hidden} is not a multiple of its input {cin}")
            blocks.append((cout, hidden // cin, kernel))
            cin = cout
        head = sd[f"features.{n_blocks + 1}.0.weight"]
        classifier = sd["classifier.1.weight"]
    except KeyError as exc:
        raise ValueError(f"not a torchvision mobilenet_v2 state_dict: key {exc.args[0]!r} is missing") from None
    keep = iter(small_input_strides(input_size))
    stem_stride = 2 if next(keep) else 1
    stages, i = [], 0
    for _t, _c, n, s in MOBILENET_V2_SETTING:
        chunk = blocks[i:i + n]
        i += n
        stride = s if s == 1 or next(keep) else 1
        if len({c for c, _, _ in chunk}) != 1:
            raise ValueError(f"a stage of the checkpoint has unequal channels {[c for c, _, _ in chunk]}")
        stages.append(Stage(chunk[0][0], stride, tuple(MBConvOp(k, e) for _, e, k in chunk)))
    width = float(stem.shape[0]) / 32
    for candidate in STANDARD_WIDTHS:  # record the multiplier the checkpoint was most likely made with
        if ([make_divisible(c * candidate) for _t, c, _n, _s in MOBILENET_V2_SETTING] == [st.channels for st in stages]
                and make_divisible(32 * candidate) == stem.shape[0]):
            width = candidate
            break
    return MBConvArchitecture(tuple(stages), num_classes=int(classifier.shape[0]), input_size=input_size,
                              in_channels=int(stem.shape[1]), width_mult=width,
                              stem_channels=int(stem.shape[0]), head_channels=int(head.shape[0]),
                              stem_stride=stem_stride, dropout=dropout)


# --------------------------------------------------------------------------------------------------
# FNA's search space and super-network
# --------------------------------------------------------------------------------------------------


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
        if not _is_int(max_layers) or max_layers < 1:
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
            if not _is_int(s) or not 0 <= s < len(seed.stages):
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
        self._check_slot(stage, layer)
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
        self._check_slot(stage, layer)
        return list(self._candidates) + ([None] if layer > 0 else [])

    def op_names(self, stage: int, layer: int) -> list[str]:
        """Names of :meth:`ops` (``"k3_e6"``, ..., ``"skip"``)."""
        return [_op_name(op) for op in self.ops(stage, layer)]

    def _check_slot(self, stage: int, layer: int) -> None:
        if stage not in self.searchable_stages or not _is_int(layer) or not 0 <= layer < self.max_layers:
            raise KeyError(f"({stage!r}, {layer!r}) is not a searchable slot: stages {list(self.searchable_stages)}, "
                           f"layers 0..{self.max_layers - 1}")

    def slot_io(self, stage: int, layer: int) -> tuple[int, int, int, int]:
        """``(in_channels, out_channels, stride, input_size)`` of the slot's layer."""
        self._check_slot(stage, layer)
        st = self.seed.stages[stage]
        size = self.seed.stage_input_size(stage)
        if layer == 0:
            return self.seed.stage_in_channels(stage), st.channels, st.stride, size
        return st.channels, st.channels, 1, _conv_out(size, st.stride)

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
            if not _is_int(index) or not 0 <= index < n:
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
                    raise ValueError(f"slot {self.label(s, l)}: {_op_name(op)} is not among {self.op_names(s, l)}")
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
                self.stages[s][str(l)] = MBConvLayer(cin, cout, stride, op)
        self.searchable = nn.ModuleList(MixedLayer(space, s, l) for s, l in space.layer_slots())
        self.head = ConvBN(seed.stages[-1].channels, seed.head_channels, 1)
        self.dropout = nn.Dropout(seed.dropout)
        self.classifier = nn.Linear(seed.head_channels, seed.num_classes)
        self._slot_index = {slot: i for i, slot in enumerate(space.layer_slots())}
        _init_weights(self)

    def mixed_layer(self, stage: int, layer: int) -> MixedLayer:
        """The :class:`MixedLayer` of a slot."""
        self.space._check_slot(stage, layer)
        return self.searchable[self._slot_index[(stage, layer)]]  # type: ignore[return-value]

    def set_path(self, choice: Choice) -> None:
        """Set ``active`` of every slot from a (full) choice."""
        for slot, index in self.space.normalise_choice(choice).items():
            self.mixed_layer(*slot).active = index

    def set_mixer(self, mixer: Mixer | None) -> None:
        """Set (or clear, with ``None``) the mixer hook of every slot."""
        for layer in self.searchable:
            layer.mixer = mixer  # type: ignore[union-attr]

    def features(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for s, stage in enumerate(self.stages):
            if s in self.space.searchable_stages:
                for l in range(self.space.max_layers):
                    x = self.searchable[self._slot_index[(s, l)]](x)
            else:
                for layer in stage.values():
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
    out["head.conv.weight"] = (seed.head_channels, seed.stages[-1].channels, 1, 1)
    out.update(_bn_shapes("head.bn", seed.head_channels))
    out["classifier.weight"] = (seed.num_classes, seed.head_channels)
    out["classifier.bias"] = (seed.num_classes,)
    return out

