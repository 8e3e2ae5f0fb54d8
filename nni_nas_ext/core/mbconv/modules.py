"""The ``torch`` modules of the MobileNetV2 family: :func:`build_network` makes an :class:`MBConvNetwork`.

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
super-network (:mod:`nni_nas_ext.search_spaces.mbconv_supernet`) hold the same candidate's parameters.
``.bn.*`` are ``weight``, ``bias``, ``running_mean``, ``running_var`` and ``num_batches_tracked``.
Convolutions have no bias (like torchvision). :func:`~.shapes.state_shapes` lists the same keys without
building anything.
"""

from __future__ import annotations

from typing import cast

from torch import Tensor, nn

from .spec import MBConvArchitecture, MBConvOp

__all__ = ["ConvBN", "MBConvLayer", "MBConvNetwork", "build_network", "init_weights"]


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
            cast(nn.ModuleDict, self.stages[s])[str(l)] = MBConvLayer(cin, cout, stride, op)
        self.head = ConvBN(arch.stages[-1].channels, arch.head_channels, 1)
        self.dropout = nn.Dropout(arch.dropout)
        self.classifier = nn.Linear(arch.head_channels, arch.num_classes)
        init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        """The last feature map (after the head conv), ``(N, head_channels, h, w)``."""
        x = self.stem(x)
        for stage in self.stages:
            for layer in cast(nn.ModuleDict, stage).values():
                x = layer(x)
        return self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        x = self.features(x).mean(dim=(2, 3))
        return self.classifier(self.dropout(x))


def init_weights(module: nn.Module) -> None:
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
