"""FNA's parameter remapping: pure functions from a seed's state_dict to any network of the space.

Fang et al., "Fast Neural Network Adaptation via Parameter Remapping and Architecture Search", ICLR 2020,
sec. 3.1 ("Parameter Remapping"). Three rules, applied layer by layer:

* **depth** (:func:`depth_source`): in a stage, layer ``l`` of the target takes the parameters of seed
  layer ``min(l, L_seed - 1)``: the first layers copy the seed's, extra layers copy the stage's last seed
  layer, surplus seed layers are dropped. As in FNA's code (``remap_for_archadapt`` /
  ``remap_for_paramadapt`` in JaminFong/FNA ``fna_det/tools/apis``), ``l`` is the layer's slot index in its
  stage; see :meth:`~nni_nas_ext.search_spaces.mbconv_space.SuperNetSpace.derive` for how skips keep their
  slots here.
* **width** (:func:`remap_channels`): along every channel dimension keep the first ``n`` entries of the
  seed; new entries of conv / linear weights are zero. One-dimensional parameters copy their first
  entries; the new entries of BatchNorm keep a fresh BatchNorm's values (weight 1, bias 0, running mean 0,
  running var 1), which is what FNA's code does (it writes the seed's first entries into the target
  model's own freshly initialised BN tensors); :data:`BN_FILL`. With zero weights in and out, new channels
  output exactly 0 in eval mode, so widening is function-preserving; narrowing (the usual case in FNA:
  the seed has expansion 6 and the space offers 3) is not.
* **kernel** (:func:`remap_kernel`): a smaller seed kernel sits at the centre of a zero larger kernel,
  a larger seed kernel is cropped to its centre. With padding ``k // 2`` the centred embedding computes the
  same function (exact); the crop does not.

Beyond the paper (marked): the stem, head and classifier are remapped by the same width rule (FNA never
changes them); a target layer with an expansion conv whose seed layer has none (MobileNetV2's expansion-1
stage, which FNA keeps fixed) gets an identity expansion on its first channels (not exact: ReLU6 clips).

All functions here are pure: tensors in, new tensors out; the seed's tensors are never modified and no
module is built (shapes come from :func:`~nni_nas_ext.core.mbconv.state_shapes`). FNA's super-network is
remapped by :func:`nni_nas_ext.search_spaces.mbconv_supernet.remap_to_supernet`, through
:func:`remap_to_shapes`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import torch
from torch import Tensor

from .mbconv import BN_KEYS, MBConvArchitecture, MBConvOp, Shape, layer_state_shapes, state_shapes

__all__ = [
    "BN_FILL",
    "LayerTarget",
    "RemapError",
    "depth_source",
    "remap_batchnorm",
    "remap_channels",
    "remap_kernel",
    "remap_layer",
    "remap_state_dict",
    "remap_tensor",
    "remap_to_shapes",
]

StateDict = Mapping[str, Tensor]

#: One target layer: ``(stage, slot, target_prefix, in_channels, out_channels, op)``. Its parameters come from
#: the seed layer that slot ``slot`` of stage ``stage`` maps to by the depth rule.
LayerTarget = tuple[int, int, str, int, int, MBConvOp]

#: Values of the new entries of a widened BatchNorm: a fresh ``nn.BatchNorm2d`` (as FNA's code leaves them).
BN_FILL: Mapping[str, float] = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}


class RemapError(ValueError):
    """A state_dict cannot be remapped: a key is missing or a tensor has an impossible shape."""


def remap_kernel(weight: Tensor, k: int) -> Tensor:
    """Remap the spatial size of a conv weight ``(..., kh, kw)`` to ``k x k`` (Fang et al. 2020, sec. 3.1,
    kernel level): a smaller kernel is placed at the centre of a zero ``k x k`` kernel, a larger one is
    cropped to its ``k x k`` centre. Works for full and depthwise weights (any leading dimensions).

    Raises
    ------
    RemapError
        If the kernel is not square or ``k - kh`` is odd (the centre would be ambiguous).
    """
    if weight.dim() < 2:
        raise RemapError(f"remap_kernel needs a weight (..., kh, kw), got shape {tuple(weight.shape)}")
    kh, kw = weight.shape[-2:]
    if kh != kw:
        raise RemapError(f"remap_kernel needs a square kernel, got {kh}x{kw} (shape {tuple(weight.shape)})")
    if not isinstance(k, int) or k < 1 or (k - kh) % 2:
        raise RemapError(f"the target kernel {k!r} must be a positive integer of the same parity as {kh}")
    if k == kh:
        return weight.clone()
    if k < kh:
        off = (kh - k) // 2
        return weight[..., off:off + k, off:off + k].clone()
    out = weight.new_zeros(*weight.shape[:-2], k, k)
    off = (k - kh) // 2
    out[..., off:off + kh, off:off + kh] = weight
    return out


def remap_channels(tensor: Tensor, n: int, dim: int = 0, fill: float = 0.0) -> Tensor:
    """Remap ``tensor`` to size ``n`` along ``dim`` (Fang et al. 2020, sec. 3.1, width level): keep the first
    ``n`` entries, or copy all and pad the new entries with ``fill`` (0 for weights; :data:`BN_FILL` for
    BatchNorm, see :func:`remap_batchnorm`)."""
    if not -tensor.dim() <= dim < tensor.dim():
        raise RemapError(f"dim {dim} is out of range for a tensor of shape {tuple(tensor.shape)}")
    if not isinstance(n, int) or n < 1:
        raise RemapError(f"the target size must be a positive integer, got {n!r}")
    size = tensor.shape[dim]
    if n <= size:
        return tensor.narrow(dim, 0, n).clone()
    shape = list(tensor.shape)
    shape[dim] = n
    out = torch.full(shape, fill, dtype=tensor.dtype, device=tensor.device)
    out.narrow(dim, 0, size).copy_(tensor)
    return out


def remap_tensor(tensor: Tensor, shape: Shape, fill: float = 0.0) -> Tensor:
    """Width rule on every dimension and kernel rule on the last two of a 4-D conv weight: the one rule
    FNA's code applies to every tensor (``narrow`` on out/in channels, centred spatial copy)."""
    shape = tuple(shape)
    if tensor.dim() != len(shape):
        raise RemapError(f"cannot remap a tensor of shape {tuple(tensor.shape)} to shape {shape}: ranks differ")
    if tensor.dim() == 0:
        return tensor.clone()
    out = tensor
    spatial = 2 if tensor.dim() == 4 else 0
    if spatial:
        out = remap_kernel(out, shape[-1]) if shape[-2] == shape[-1] else out
        if tuple(out.shape[-2:]) != shape[-2:]:
            raise RemapError(f"cannot remap kernel {tuple(tensor.shape[-2:])} to {shape[-2:]}")
    for d in range(tensor.dim() - spatial):
        if out.shape[d] != shape[d]:
            out = remap_channels(out, shape[d], d, fill)
    return out if out is not tensor else tensor.clone()


def remap_batchnorm(bn_state: Mapping[str, Tensor], n: int) -> dict[str, Tensor]:
    """Remap a BatchNorm's ``weight``, ``bias``, ``running_mean``, ``running_var`` (and
    ``num_batches_tracked``, copied) to ``n`` channels: first entries kept, new entries as a fresh
    BatchNorm (:data:`BN_FILL`), following FNA's code (sec. 3.1 gives no BN rule)."""
    out: dict[str, Tensor] = {}
    for name, value in bn_state.items():
        if name == "num_batches_tracked":
            out[name] = value.clone()
        elif name in BN_FILL:
            out[name] = remap_channels(value, n, 0, BN_FILL[name])
        else:
            raise RemapError(f"unknown BatchNorm entry {name!r}: known are {list(BN_KEYS)}")
    return out


def depth_source(l: int, L_seed: int) -> int:
    """The seed layer that layer ``l`` of a stage takes its parameters from: ``min(l, L_seed - 1)``
    (Fang et al. 2020, sec. 3.1, depth level; FNA's ``remap_for_archadapt``)."""
    if L_seed < 1 or l < 0:
        raise RemapError(f"depth_source needs l >= 0 and L_seed >= 1, got l={l}, L_seed={L_seed}")
    return min(l, L_seed - 1)


def _fill_for(key: str) -> float:
    """Pad value of a key: BN entries follow :data:`BN_FILL`, everything else 0."""
    parts = key.rsplit(".", 2)
    if len(parts) == 3 and parts[1] == "bn" and parts[2] in BN_FILL:
        return BN_FILL[parts[2]]
    return 0.0


def _get(state: StateDict, key: str, where: str) -> Tensor:
    try:
        value = state[key]
    except KeyError:
        raise RemapError(f"the seed state_dict has no key {key!r} ({where}); was it made for the seed "
                         "architecture (build_network(seed).state_dict() or torchvision_to_state_dict)?") from None
    if not isinstance(value, Tensor):
        raise RemapError(f"seed state_dict[{key!r}] must be a tensor, got {type(value).__name__}")
    return value


def _remap_key(state: StateDict, src: str, dst: str, shape: Shape, out: dict[str, Tensor]) -> None:
    value = _get(state, src, f"source of {dst!r}")
    try:
        out[dst] = remap_tensor(value, shape, _fill_for(dst)).detach()
    except RemapError as exc:
        raise RemapError(f"{src!r} {tuple(value.shape)} -> {dst!r} {shape}: {exc}") from None


def remap_layer(seed_state: StateDict, seed_prefix: str, seed_op: MBConvOp, target_prefix: str,
                in_channels: int, out_channels: int, target_op: MBConvOp) -> dict[str, Tensor]:
    """Remap one MBConv layer's parameters (``{seed_prefix}.expand/depthwise/project.*``) to a layer
    ``target_op`` with these channels, keys under ``target_prefix``: width rule on every channel dimension,
    kernel rule on the depthwise kernel, BN by :func:`remap_batchnorm`'s rule.

    A seed layer without an expansion conv remapped to a target with one: the expansion becomes the
    identity on its first ``min(in, hidden)`` channels with a fresh BN (beyond the paper; not exact). A
    target without expansion conv drops the seed's.
    """
    shapes = layer_state_shapes(target_prefix, in_channels, out_channels, target_op)
    out: dict[str, Tensor] = {}
    for key, shape in shapes.items():
        rest = key[len(target_prefix) + 1:]
        if rest.startswith("expand.") and seed_op.expansion == 1:
            if rest == "expand.conv.weight":
                hidden = shape[0]
                eye = torch.zeros(shape)
                idx = torch.arange(min(hidden, in_channels))
                eye[idx, idx, 0, 0] = 1.0
                dtype = _get(seed_state, f"{seed_prefix}.depthwise.conv.weight", "dtype").dtype
                out[key] = eye.to(dtype)
            else:
                name = rest.rsplit(".", 1)[-1]
                out[key] = (torch.tensor(0, dtype=torch.long) if name == "num_batches_tracked"
                            else torch.full(shape, BN_FILL[name]))
            continue
        _remap_key(seed_state, f"{seed_prefix}.{rest}", key, shape, out)
    return out


def _stage_sources(seed_arch: MBConvArchitecture, stage: int) -> list[int]:
    """The seed's present slots of a stage, in order (a source index counts present layers)."""
    return [l for l, op in enumerate(seed_arch.stages[stage].layers) if op is not None]


def _seed_layer(seed_arch: MBConvArchitecture, stage: int, slot: int) -> tuple[int, MBConvOp]:
    """The seed slot (and its op) that target slot ``slot`` of ``stage`` takes its parameters from.

    ``depth_source`` over the seed's slots; if that seed slot is a skip, the nearest present seed slot
    before it (slot 0 is never a skip)."""
    layers = seed_arch.stages[stage].layers
    src = depth_source(slot, len(layers))
    while layers[src] is None:
        src -= 1
    return src, layers[src]  # type: ignore[return-value]


def _check_compatible(seed_arch: MBConvArchitecture, target: MBConvArchitecture) -> None:
    if len(seed_arch.stages) != len(target.stages):
        raise RemapError(f"the seed has {len(seed_arch.stages)} stages and the target {len(target.stages)}: FNA "
                         "remaps stage s to stage s, so both need the same number of stages")


def _remap_fixed(seed_arch: MBConvArchitecture, seed_state: StateDict, target_shapes: Mapping[str, Shape],
                 classifier: str) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, shape in target_shapes.items():
        if key.startswith(("stem.", "head.")):
            _remap_key(seed_state, key, key, shape, out)
        elif key.startswith("classifier."):
            if classifier == "zero":
                dtype = _get(seed_state, key, "dtype").dtype
                out[key] = torch.zeros(shape, dtype=dtype)
            else:
                _remap_key(seed_state, key, key, shape, out)
    return out


def _check_seed(seed_arch: MBConvArchitecture, seed_state: StateDict) -> None:
    expected = state_shapes(seed_arch)
    for key, shape in expected.items():
        value = _get(seed_state, key, "a key of build_network(seed_arch)")
        if tuple(value.shape) != shape:
            raise RemapError(f"seed state_dict[{key!r}] has shape {tuple(value.shape)} but seed_arch needs {shape}; "
                             "is seed_arch the architecture the state_dict was trained with?")


def remap_state_dict(seed_arch: MBConvArchitecture, seed_state: StateDict, target_arch: MBConvArchitecture, *,
                     classifier: Literal["remap", "zero"] = "remap") -> dict[str, Tensor]:
    """The state_dict of ``build_network(target_arch)`` remapped from the seed (Fang et al. 2020, sec. 3.1).

    Stage ``s`` of the target takes its parameters from stage ``s`` of the seed, layer by layer by the
    depth rule, then the width and kernel rules (module docstring). The stem, head and classifier follow
    the width rule. ``remap_state_dict(seed, sd, seed)`` returns ``sd``'s values (copies).

    Parameters
    ----------
    classifier
        ``"remap"`` (default): the classifier follows the width rule (first classes kept, new ones zero);
        ``"zero"``: an all-zero classifier, for a target task whose classes are unrelated to the seed's
        (the pipeline may also overwrite ``classifier.*`` with its own initialisation).

    Raises
    ------
    RemapError
        If the seed state_dict lacks a key or has a shape other than ``seed_arch``'s (naming the key and the
        shapes), or the two architectures have different numbers of stages.
    """
    layers = ((s, l, f"stages.{s}.{l}", cin, cout, op) for s, l, cin, cout, _stride, op in target_arch.layer_specs())
    return remap_to_shapes(seed_arch, seed_state, target_arch, state_shapes(target_arch), layers,
                           classifier=classifier)


def remap_to_shapes(seed_arch: MBConvArchitecture, seed_state: StateDict, target_arch: MBConvArchitecture,
                    target_shapes: Mapping[str, Shape], layers: Iterable[LayerTarget], *,
                    classifier: Literal["remap", "zero"] = "remap") -> dict[str, Tensor]:
    """A state_dict with exactly the keys of ``target_shapes`` (in their order), remapped from the seed by
    FNA's rules (Fang et al. 2020, sec. 3.1): what :func:`remap_state_dict` does for a network, for any
    module whose MBConv layers are listed in ``layers``.

    The stem, head and classifier (keys ``stem.*``, ``head.*``, ``classifier.*``) follow the width rule (or
    ``classifier="zero"``); each :data:`LayerTarget` ``(s, l, prefix, in, out, op)`` takes the seed layer
    of stage ``s`` that slot ``l`` maps to by the depth rule, remapped to ``op`` under ``prefix``
    (:func:`remap_layer`). ``target_arch`` is the architecture whose stages the layers belong to (a
    super-network's seed): it must have as many stages as ``seed_arch``.

    Raises
    ------
    RemapError
        As :func:`remap_state_dict`.
    """
    if classifier not in ("remap", "zero"):
        raise RemapError(f"classifier must be 'remap' or 'zero', got {classifier!r}")
    _check_compatible(seed_arch, target_arch)
    _check_seed(seed_arch, seed_state)
    out = _remap_fixed(seed_arch, seed_state, target_shapes, classifier)
    for s, l, prefix, cin, cout, op in layers:
        src, seed_op = _seed_layer(seed_arch, s, l)
        out.update(remap_layer(seed_state, f"stages.{s}.{src}", seed_op, prefix, cin, cout, op))
    return {k: out[k] for k in target_shapes}

