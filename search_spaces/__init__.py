"""Every search space of nni-nas-ext (``nni_nas_ext.search_spaces``): pure values and ``torch`` modules, no ``nni``.

* :mod:`.seeds` -- seed networks, from which the morphism searches grow their space;
* :mod:`.mbconv_space` -- FNA's search space around a MobileNetV2-family seed (:class:`SuperNetSpace`);
* :mod:`.mbconv_supernet` -- FNA's super-network over it and its remapped initialisation;
* :mod:`.cnn_space` -- the CNN-stage space of the NNI baselines: a sample's stages and their network.

The ``nni.nas`` model spaces that wrap them live in :mod:`nni_nas_ext.nni`.
"""

from __future__ import annotations

from .cnn_space import CnnSpaceConfig, ConvStageNetwork, StageSpec, build_cnn_space_model, stages_of
from .mbconv_space import Choice, SuperNetSpace
from .mbconv_supernet import MBConvSuperNet, MixedLayer, Mixer, remap_to_supernet, supernet_state_shapes
from .seeds import SEEDS, cell_cnn, create_seed, list_seeds, nash_seed, plain_cnn

__all__ = [
    "SEEDS", "Choice", "CnnSpaceConfig", "ConvStageNetwork", "MBConvSuperNet", "MixedLayer", "Mixer", "StageSpec",
    "SuperNetSpace", "cell_cnn", "build_cnn_space_model", "create_seed", "list_seeds", "nash_seed", "plain_cnn",
    "remap_to_supernet", "stages_of", "supernet_state_shapes",
]
