"""MobileNetV2 itself (Sandler et al., CVPR 2018, Table 2), as torchvision builds it, and its channel rounding.

:func:`mobilenet_v2` returns exactly torchvision's ``mobilenet_v2`` (same modules, same parameter count, same
function once its state_dict is converted with :func:`~.torchvision_keys.torchvision_to_state_dict`).

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

import math

from ..errors import ArchitectureError
from .shapes import conv_out
from .spec import MBConvArchitecture, MBConvOp, Stage, is_int

__all__ = ["MOBILENET_V2_SETTING", "STANDARD_WIDTHS", "make_divisible", "mobilenet_v2", "small_input_strides"]

#: torchvision's MobileNetV2 setting: (expansion t, channels c, layers n, stride s) per stage.
MOBILENET_V2_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1),
)

#: Width multipliers of common MobileNetV2 checkpoints (Sandler et al. 2018 evaluate 0.35 to 1.4).
STANDARD_WIDTHS: tuple[float, ...] = (1.0, 0.75, 0.5, 0.35, 1.3, 1.4)


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


def small_input_strides(input_size: int, max_halvings: int = 5, min_feature: int = 2) -> tuple[bool, ...]:
    """Which of the ``max_halvings`` stride-2 positions keep stride 2 for this input size (earliest first).

    The rule (see the module docstring): keep the *last* ``n`` positions, ``n`` the largest number
    ``<= max_halvings`` such that halving ``input_size`` (rounding up) ``n`` times leaves ``>= min_feature``;
    the earlier ones become stride 1. An input smaller than ``min_feature`` keeps none.
    """
    if not is_int(input_size) or input_size < 1:
        raise ArchitectureError(None, "input_size must be a positive integer", repr(input_size))
    n, size = 0, input_size
    while n < max_halvings and conv_out(size, 2) >= min_feature:
        size = conv_out(size, 2)
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
