"""FNA's checkpoints and seeds: MobileNetV2-family networks in the checkpoint store, a user's seed file, and a seed
moved to a target task's input and classes.

Seed checkpoints: ``<checkpoint_dir>/<job id>.pt``, files of the checkpoint store
(:class:`~.checkpoints.CheckpointStore`, written atomically: architecture JSON, state_dict, meta), read with
``torch.load(weights_only=True)``; a user's ``seed_checkpoint`` may be such a file or any torchvision ``mobilenet_v2``
state_dict (its architecture is read from the tensor shapes). Nothing is downloaded. Nothing here imports ``nni``.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from nni_nas_ext.core.mbconv import (
    MOBILENET_V2_SETTING, MBConvArchitecture, small_input_strides, torchvision_architecture,
    torchvision_to_state_dict,
)

from .checkpoints import CHECKPOINT_FORMAT, CheckpointError, CheckpointStore

__all__ = ["LEGACY_CHECKPOINT_FORMAT", "MBCONV_META_KEY", "load_checkpoint", "load_seed_checkpoint", "save_checkpoint",
           "seed_for_target"]

#: FNA's checkpoints are files of the checkpoint store (:class:`~.checkpoints.CheckpointStore`, one format for every
#: search); their MobileNetV2-family architecture is kept in ``meta`` under this key (the store's own
#: ``architecture`` field holds the morphism searches' :class:`~nni_nas_ext.core.Architecture` values)
MBCONV_META_KEY = "mbconv_architecture"
#: The format of FNA's checkpoints before they moved into the store: still read, never written
LEGACY_CHECKPOINT_FORMAT = "nni-nas-ext mbconv checkpoint"




def save_checkpoint(path: str | Path, arch: MBConvArchitecture, state: Mapping[str, Tensor],
                    meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``<folder>/<id>.pt`` as a file of the checkpoint store (:meth:`~.checkpoints.CheckpointStore.save_weights`:
    atomic, read back with ``weights_only=True``), the architecture in ``meta`` under :data:`MBCONV_META_KEY`.

    Raises
    ------
    ValueError
        If the path is not ``<absolute folder>/<id>.pt`` with an id the store allows, or ``meta`` is not JSON.
    """
    target = Path(path)
    if target.suffix != ".pt" or not target.is_absolute():
        raise ValueError(f"an FNA checkpoint is <absolute folder>/<id>.pt, but got {str(path)!r}")
    if MBCONV_META_KEY in (meta or {}):
        raise ValueError(f"meta may not have its own {MBCONV_META_KEY!r} (the architecture goes there)")
    try:
        return CheckpointStore(target.parent).save_weights(target.stem, state,
                                                           {**dict(meta or {}), MBCONV_META_KEY: arch.to_dict()})
    except CheckpointError as exc:
        raise ValueError(str(exc)) from None


def load_checkpoint(path: str | Path) -> tuple[MBConvArchitecture, dict[str, Tensor], dict[str, Any]]:
    """Read :func:`save_checkpoint`'s file (or an FNA checkpoint of the older format) with ``weights_only=True``;
    ``ValueError`` names the file and the problem."""
    payload = _torch_load(path)
    if isinstance(payload, dict) and payload.get("format") == LEGACY_CHECKPOINT_FORMAT:
        try:
            arch = MBConvArchitecture.from_dict(json.loads(payload["architecture"]))
            return arch, dict(payload["state_dict"]), json.loads(payload.get("meta", "{}"))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path} is a damaged checkpoint: {type(exc).__name__}: {exc}") from None
    if not _is_fna_checkpoint(payload):
        raise ValueError(f"{path} is not an FNA checkpoint of this project (a checkpoint-store file with "
                         f"{MBCONV_META_KEY!r} in its meta)")
    file = Path(path).absolute()
    try:
        weights = CheckpointStore(file.parent).load_weights(file.stem)
        meta = dict(weights.meta)
        arch = MBConvArchitecture.from_dict(meta.pop(MBCONV_META_KEY))
    except (CheckpointError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path} is a damaged checkpoint: {type(exc).__name__}: {exc}") from None
    return arch, dict(weights.state_dict), meta


def _is_fna_checkpoint(payload: Any) -> bool:
    """Whether a loaded file is one of :func:`save_checkpoint`'s (either format)."""
    if not isinstance(payload, dict):
        return False
    if payload.get("format") == LEGACY_CHECKPOINT_FORMAT:
        return True
    if payload.get("format") != CHECKPOINT_FORMAT or not isinstance(payload.get("meta"), str):
        return False
    try:
        meta = json.loads(payload["meta"])
    except ValueError:
        return False
    return isinstance(meta, dict) and MBCONV_META_KEY in meta


def _torch_load(path: str | Path) -> Any:
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"no checkpoint file at {file}: give the absolute path of an existing file")
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - damaged files and refused objects alike
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise ValueError(f"{file} could not be read with torch.load(weights_only=True) ({type(exc).__name__}: "
                         f"{first}); it must hold tensors only (a state_dict), not a pickled model") from exc


def load_seed_checkpoint(path: str | Path, input_size: int = 224) -> tuple[MBConvArchitecture, dict[str, Tensor]]:
    """A seed from a file: this project's checkpoint, or a torchvision ``mobilenet_v2`` state_dict.

    A torchvision file may be the bare ``state_dict`` or a dict holding it under ``"state_dict"`` or
    ``"model"``; its architecture (width, classes, input channels) is read from the tensor shapes by
    :func:`nni_nas_ext.core.mbconv.torchvision_architecture`, with strides for ``input_size``.

    Raises
    ------
    ValueError
        Naming the file and what is wrong with it.
    """
    payload = _torch_load(path)
    if _is_fna_checkpoint(payload):
        arch, state, _meta = load_checkpoint(path)
        return arch, state
    sd = payload
    if isinstance(sd, dict):
        for key in ("state_dict", "model"):
            if isinstance(sd.get(key), dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, Tensor) for k, v in sd.items()):
        raise ValueError(f"{path} holds neither a checkpoint of this project nor a state_dict of tensors")
    try:
        arch = torchvision_architecture(sd, input_size=input_size)
        return arch, torchvision_to_state_dict(sd, arch)
    except ValueError as exc:
        raise ValueError(f"{path} is not a torchvision mobilenet_v2 state_dict: {exc}") from None


def _target_strides(seed: MBConvArchitecture, input_size: int) -> tuple[int, tuple[int, ...]]:
    """Stem and stage strides of MobileNetV2 at ``input_size`` (the small-input rule of ``mobilenet_v2``)."""
    if len(seed.stages) != len(MOBILENET_V2_SETTING):
        return seed.stem_stride, tuple(st.stride for st in seed.stages)
    keep = iter(small_input_strides(input_size))
    stem = 2 if next(keep) else 1
    strides = tuple(s if s == 1 else (2 if next(keep) else 1) for _t, _c, _n, s in MOBILENET_V2_SETTING)
    return stem, strides


def seed_for_target(arch: MBConvArchitecture, state: Mapping[str, Tensor], input_shape: tuple[int, int, int],
                    num_classes: int, *, seed: int = 0) -> tuple[MBConvArchitecture, dict[str, Tensor]]:
    """The seed network moved to the target task: same layers and weights, the target's input and classes.

    * input size: MobileNetV2's strides for the target's image size (the small-input rule of
      :func:`~nni_nas_ext.core.mbconv.mobilenet_v2`); weights do not depend on strides;
    * input channels: the stem's weights are summed over input channels for a 1-channel target, or
      repeated and scaled by ``c_seed / c_target`` otherwise (timm's ``adapt_input_conv``) **[dev]**: not
      in FNA, whose tasks are all RGB;
    * classes: a new classifier initialised as torchvision's (N(0, 0.01), zero bias) from ``seed`` when the
      class counts differ, as FNA gives every target task a new head.
    """
    c, h, w = input_shape
    if h != w:
        raise ValueError(f"MobileNetV2 seeds here take square images, but the target's are {h}x{w}")
    stem_stride, strides = _target_strides(arch, h)
    stages = tuple(dataclasses.replace(st, stride=s) for st, s in zip(arch.stages, strides))
    target = dataclasses.replace(arch, stages=stages, stem_stride=stem_stride, input_size=h, in_channels=c,
                                 num_classes=num_classes)
    out = {k: v.clone() for k, v in state.items()}
    stem = out["stem.conv.weight"]
    if stem.shape[1] != c:
        if c == 1:
            out["stem.conv.weight"] = stem.sum(dim=1, keepdim=True)
        else:
            reps = math.ceil(c / stem.shape[1])
            out["stem.conv.weight"] = stem.repeat(1, reps, 1, 1)[:, :c] * (stem.shape[1] / c)
    if arch.num_classes != num_classes:
        gen = torch.Generator().manual_seed(seed)
        weight = out["classifier.weight"]
        out["classifier.weight"] = torch.randn(num_classes, weight.shape[1], generator=gen, dtype=weight.dtype) * 0.01
        out["classifier.bias"] = torch.zeros(num_classes, dtype=weight.dtype)
    return target, out
