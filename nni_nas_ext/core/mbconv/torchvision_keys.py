"""torchvision's ``mobilenet_v2`` checkpoints: key mapping both ways and the architecture of a checkpoint.

:func:`torchvision_to_state_dict` converts a torchvision state_dict (keys ``features.{i}.conv...``,
``classifier.1.*``) into the keys of :func:`~.modules.build_network`, :func:`state_dict_to_torchvision` goes
back, and :func:`torchvision_architecture` reads the :class:`~.spec.MBConvArchitecture` of a checkpoint from
its tensor shapes. Pure functions over state_dicts: no module is built, no file is read.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..errors import ArchitectureError
from .mobilenet import MOBILENET_V2_SETTING, STANDARD_WIDTHS, make_divisible, small_input_strides
from .shapes import BN_KEYS, Shape, state_shapes
from .spec import MBConvArchitecture, MBConvOp, Stage

__all__ = ["state_dict_to_torchvision", "torchvision_architecture", "torchvision_to_state_dict"]


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
