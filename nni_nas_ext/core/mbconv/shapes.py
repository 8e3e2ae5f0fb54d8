"""Shapes and costs of MobileNetV2-family networks, computed from the architecture alone (nothing built).

:func:`state_shapes` gives every state_dict key of ``build_network(arch)`` with its shape (the keys are
listed in :mod:`.modules`), :func:`layer_state_shapes` those of one MBConv layer.

MAdds are counted like FNA's ``multadds_count`` and ProxylessNAS: for every convolution
``H_out * W_out * C_out * (C_in / groups) * k * k``, plus ``in * out`` for the classifier; BatchNorm,
activations, residual additions and pooling are not counted. MobileNetV2 (width 1.0, 224x224) has
300,774,272 MAdds by this count, the "300M" of Sandler et al. (2018), Table 4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import MBConvArchitecture, MBConvOp

__all__ = [
    "BN_BUFFERS", "BN_KEYS", "Shape", "bn_shapes", "conv_out", "head_state_shapes", "layer_state_shapes",
    "mbconv_madds", "state_shapes",
]

BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

Shape = tuple[int, ...]


def conv_out(size: int, stride: int) -> int:
    """Spatial output of a conv with odd kernel k, padding k // 2 and this stride: ``ceil(size / stride)``."""
    return (size + stride - 1) // stride


def mbconv_madds(in_channels: int, out_channels: int, stride: int, op: MBConvOp, input_size: int) -> int:
    """MAdds of one MBConv layer on an ``input_size`` x ``input_size`` input (convs only)."""
    hidden = in_channels * op.expansion
    out_size = conv_out(input_size, stride)
    total = 0
    if op.expansion != 1:
        total += input_size ** 2 * hidden * in_channels
    total += out_size ** 2 * hidden * op.kernel ** 2
    total += out_size ** 2 * out_channels * hidden
    return total


def bn_shapes(prefix: str, channels: int) -> dict[str, Shape]:
    """state_dict shapes of a ``BatchNorm2d`` of ``channels`` under ``prefix`` (e.g. ``"stem.bn"``)."""
    return {f"{prefix}.weight": (channels,), f"{prefix}.bias": (channels,), f"{prefix}.running_mean": (channels,),
            f"{prefix}.running_var": (channels,), f"{prefix}.num_batches_tracked": ()}


def layer_state_shapes(prefix: str, in_channels: int, out_channels: int, op: MBConvOp) -> dict[str, Shape]:
    """state_dict shapes of one :class:`~.modules.MBConvLayer` under ``prefix`` (e.g. ``"stages.1.0"``)."""
    hidden = in_channels * op.expansion
    out: dict[str, Shape] = {}
    if op.expansion != 1:
        out[f"{prefix}.expand.conv.weight"] = (hidden, in_channels, 1, 1)
        out.update(bn_shapes(f"{prefix}.expand.bn", hidden))
    out[f"{prefix}.depthwise.conv.weight"] = (hidden, 1, op.kernel, op.kernel)
    out.update(bn_shapes(f"{prefix}.depthwise.bn", hidden))
    out[f"{prefix}.project.conv.weight"] = (out_channels, hidden, 1, 1)
    out.update(bn_shapes(f"{prefix}.project.bn", out_channels))
    return out


def state_shapes(arch: MBConvArchitecture) -> dict[str, Shape]:
    """Every state_dict key of ``build_network(arch)`` with its shape, in module order, without building it."""
    out: dict[str, Shape] = {"stem.conv.weight": (arch.stem_channels, arch.in_channels, 3, 3)}
    out.update(bn_shapes("stem.bn", arch.stem_channels))
    for s, l, cin, cout, _stride, op in arch.layer_specs():
        out.update(layer_state_shapes(f"stages.{s}.{l}", cin, cout, op))
    out.update(head_state_shapes(arch))
    return out


def head_state_shapes(arch: MBConvArchitecture) -> dict[str, Shape]:
    """state_dict shapes of the head conv, its BN and the classifier (the last keys of :func:`state_shapes`)."""
    out: dict[str, Shape] = {"head.conv.weight": (arch.head_channels, arch.stages[-1].channels, 1, 1)}
    out.update(bn_shapes("head.bn", arch.head_channels))
    out["classifier.weight"] = (arch.num_classes, arch.head_channels)
    out["classifier.bias"] = (arch.num_classes,)
    return out


