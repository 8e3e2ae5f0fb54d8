"""The MobileNetV2 family: architectures, their costs, the network builder and torchvision's checkpoints.

An :class:`MBConvArchitecture` is a frozen, JSON-serialisable value: a stem (3x3 conv, BN, ReLU6), a
sequence of :class:`Stage` s of inverted-residual (MBConv) layers, a head (1x1 conv, BN, ReLU6), global
average pooling, dropout and a linear classifier -- the network of Sandler et al., "MobileNetV2: Inverted
Residuals and Linear Bottlenecks" (CVPR 2018), as torchvision builds it. :func:`mobilenet_v2` returns
exactly torchvision's ``mobilenet_v2`` (same modules, same parameter count, same function once its
state_dict is converted with :func:`torchvision_to_state_dict`).

* :mod:`.spec` -- the values :class:`MBConvOp`, :class:`Stage`, :class:`MBConvArchitecture` (validation,
  JSON form, content id);
* :mod:`.shapes` -- state_dict shapes and MAdds from the architecture alone (how MAdds are counted);
* :mod:`.mobilenet` -- :func:`mobilenet_v2`, channel rounding and the small-input stride rule;
* :mod:`.modules` -- the ``torch`` modules and :func:`build_network` (the state_dict keys);
* :mod:`.torchvision_keys` -- torchvision checkpoints: key mapping both ways, architecture of a checkpoint.

FNA's search space and super-network over this family live in :mod:`nni_nas_ext.search_spaces.mbconv_space`
and :mod:`nni_nas_ext.search_spaces.mbconv_supernet`.
"""

from __future__ import annotations

from .mobilenet import MOBILENET_V2_SETTING, STANDARD_WIDTHS, make_divisible, mobilenet_v2, small_input_strides
from .modules import ConvBN, MBConvLayer, MBConvNetwork, build_network, init_weights
from .shapes import (
    BN_BUFFERS, BN_KEYS, Shape, bn_shapes, conv_out, head_state_shapes, layer_state_shapes, mbconv_madds,
    state_shapes,
)
from .spec import (
    EXPANSIONS, FORMAT, FORMAT_VERSION, KERNELS, MBConvArchitecture, MBConvOp, Stage, is_int, op_name,
)
from .torchvision_keys import state_dict_to_torchvision, torchvision_architecture, torchvision_to_state_dict

__all__ = [
    "BN_BUFFERS", "BN_KEYS", "EXPANSIONS", "FORMAT", "FORMAT_VERSION", "KERNELS", "MOBILENET_V2_SETTING",
    "STANDARD_WIDTHS", "ConvBN", "MBConvArchitecture", "MBConvLayer", "MBConvNetwork", "MBConvOp", "Shape", "Stage",
    "bn_shapes", "build_network", "conv_out", "head_state_shapes", "init_weights", "is_int", "layer_state_shapes",
    "make_divisible", "mbconv_madds", "mobilenet_v2", "op_name", "small_input_strides", "state_dict_to_torchvision",
    "state_shapes", "torchvision_architecture", "torchvision_to_state_dict",
]
