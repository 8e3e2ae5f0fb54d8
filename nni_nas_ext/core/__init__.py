"""The pure architecture core: no ``nni``, no files.

* :mod:`.architecture` -- frozen architecture values, validation with shape inference, (de)serialisation;
* :mod:`.builder` -- ``torch.nn.Module`` from an architecture, with node-derived parameter names;
* :mod:`.morphisms` -- function-preserving operators, compressions and their weight transformations;
* :mod:`.preservation` -- measure the output difference between a parent and a child;
* :mod:`.config` -- typed, frozen settings dataclasses validated from their field metadata (every layer's);
* :mod:`.jobs` -- what a search hands to a trial, the wire format's two payload kinds: :class:`Candidate`
  (the morphism searches) and :class:`FnaJob` (FNA's pipeline);
* :mod:`.mbconv` -- the MobileNetV2 family: its values and costs, network builder and torchvision checkpoints;
* :mod:`.remap` -- FNA's parameter remapping (state_dict in, state_dict out);
* :mod:`.rewards` -- N2N learning's reward (compression times relative accuracy).
"""

from __future__ import annotations

from .architecture import INPUT, OPS, Architecture, GraphBuilder, Lineage, Node, Step
from .builder import ArchitectureModule, activation_moments, build_module, state_key
from .config import Config, ConfigError, ConfigRow, describe_config, option, parse_config
from .errors import ArchitectureError, MorphismError
from .jobs import JOB_KINDS, ROLES, TRAIN_ON, Candidate, FnaJob, candidate_id
from .morphisms import (
    COMPRESSIONS, MORPHISMS, AddSkip, Branch, ConcatSkip, Deepen, Morphism, MorphismResult, RemoveLayer, RemoveSkip,
    Shrink, WeightTransform, Widen, WidenKernel, chain_is_exact, create_morphism, list_compressions, list_morphisms,
    random_chain, replay, step_is_exact,
)
from .preservation import PreservationError, max_output_difference, preservation_error
from .summary import summarize
from .mbconv import (
    EXPANSIONS, KERNELS, MBConvArchitecture, MBConvNetwork, MBConvOp, Stage, build_network, mobilenet_v2,
    state_dict_to_torchvision, torchvision_architecture, torchvision_to_state_dict,
)
from .remap import RemapError, depth_source, remap_channels, remap_kernel, remap_state_dict

__all__ = [
    "INPUT", "MORPHISMS", "OPS", "AddSkip", "Architecture", "ArchitectureError", "ArchitectureModule", "Branch",
    "ConcatSkip", "Deepen", "GraphBuilder", "Lineage", "Morphism", "MorphismError", "MorphismResult", "Node",
    "PreservationError", "Step", "WeightTransform", "Widen", "WidenKernel", "activation_moments",
    "build_module", "create_morphism", "list_morphisms", "max_output_difference", "preservation_error",
    "random_chain", "replay", "state_key", "summarize",
]
__all__ += [
    "COMPRESSIONS", "RemoveLayer", "RemoveSkip", "Shrink", "chain_is_exact", "list_compressions", "step_is_exact",
]
__all__ += [
    "JOB_KINDS", "ROLES", "TRAIN_ON", "Candidate", "Config", "ConfigError", "ConfigRow", "FnaJob", "candidate_id",
    "describe_config", "option", "parse_config",
]
__all__ += [
    "EXPANSIONS", "KERNELS", "MBConvArchitecture", "MBConvNetwork", "MBConvOp", "RemapError", "Stage",
    "build_network", "depth_source", "mobilenet_v2", "remap_channels", "remap_kernel", "remap_state_dict",
    "state_dict_to_torchvision", "torchvision_architecture", "torchvision_to_state_dict",
]
