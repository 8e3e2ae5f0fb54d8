"""The EAS meta-controller's tensors as plain JSON: the networks' parameters and Adam's moments, exactly.

No pickle and no ``torch.save``: every tensor is written as its dtype, its shape and its raw bytes
(little-endian, base64), so a state is readable by any JSON parser and restoring it runs no code. The
optimiser's ``state_dict`` keeps its structure: per parameter index, its tensors (Adam's ``step``,
``exp_avg``, ``exp_avg_sq``) and its plain values; the parameter groups as JSON (tuples, such as Adam's
``betas``, are read back as tuples). :func:`restore_tensors` puts everything back or, on any error, leaves
the network and the optimiser as they were.
"""

from __future__ import annotations

import base64
import binascii
import copy
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["TENSOR_DTYPES", "encode_tensors", "restore_tensors", "tensor_from_json", "tensor_to_json"]

#: The dtypes a tensor may have in a state (their names are the JSON's ``dtype``).
TENSOR_DTYPES: dict[str, torch.dtype] = {
    "float16": torch.float16, "float32": torch.float32, "float64": torch.float64, "int8": torch.int8,
    "int16": torch.int16, "int32": torch.int32, "int64": torch.int64, "uint8": torch.uint8, "bool": torch.bool,
}
_DTYPE_NAMES = {dtype: name for name, dtype in TENSOR_DTYPES.items()}
_PLAIN = (bool, int, float, str, type(None))


def tensor_to_json(tensor: torch.Tensor) -> dict[str, Any]:
    """``{"dtype", "shape", "data"}``: the tensor's raw little-endian bytes in base64 (exact)."""
    name = _DTYPE_NAMES.get(tensor.dtype)
    if name is None:
        raise ValueError(f"a state tensor must have one of the dtypes {sorted(TENSOR_DTYPES)}, but got {tensor.dtype}")
    array = tensor.detach().cpu().contiguous().numpy()
    raw = array.astype(np.dtype(name).newbyteorder("<"), copy=False).tobytes()
    return {"dtype": name, "shape": list(tensor.shape), "data": base64.b64encode(raw).decode("ascii")}


def tensor_from_json(data: Any) -> torch.Tensor:
    """The tensor of :func:`tensor_to_json`'s output; ``ValueError`` naming what is malformed."""
    if not isinstance(data, Mapping) or set(data) != {"dtype", "shape", "data"}:
        raise ValueError(f"a tensor is a JSON object with the keys 'data', 'dtype' and 'shape', but got {data!r:.80}")
    name, shape, encoded = data["dtype"], data["shape"], data["data"]
    if name not in TENSOR_DTYPES:
        raise ValueError(f"a tensor's 'dtype' must be one of {sorted(TENSOR_DTYPES)}, but got {name!r}")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in shape):
        raise ValueError(f"a tensor's 'shape' must be a list of ints >= 0, but got {shape!r}")
    if not isinstance(encoded, str):
        raise ValueError(f"a tensor's 'data' must be a base64 string, but got {type(encoded).__name__}")
    raw = base64.b64decode(encoded, validate=True)
    stored = np.dtype(name).newbyteorder("<")
    if len(raw) != math.prod(shape) * stored.itemsize:
        raise ValueError(f"a {name} tensor of shape {shape} has {math.prod(shape) * stored.itemsize} bytes, "
                         f"but 'data' holds {len(raw)}")
    array = np.frombuffer(raw, dtype=stored).astype(np.dtype(name), copy=True).reshape(shape)
    return torch.from_numpy(array)


def _plain(value: Any, where: str) -> Any:
    """``value`` as JSON (tuples as lists); ``ValueError`` for anything but numbers, strings, bools, None."""
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if not isinstance(value, _PLAIN) or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{where} must be plain JSON, but holds {value!r}")
    return value


def encode_tensors(network: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The network's ``state_dict`` and the optimiser's as plain JSON (see the module docstring)."""
    optimizer_state = optimizer.state_dict()
    entries = []
    for index, values in optimizer_state["state"].items():
        entries.append({
            "param": index,
            "tensors": {k: tensor_to_json(v) for k, v in values.items() if isinstance(v, torch.Tensor)},
            "values": {k: _plain(v, f"optimizer state {k!r}") for k, v in values.items()
                       if not isinstance(v, torch.Tensor)},
        })
    groups = [{k: _plain(v, f"optimizer group key {k!r}") for k, v in group.items()}
              for group in optimizer_state["param_groups"]]
    return {
        "network": {name: tensor_to_json(t) for name, t in network.state_dict().items()},
        "optimizer": {"state": entries, "param_groups": groups},
    }


def _optimizer_state(data: Any, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """:func:`encode_tensors`' optimiser part as a ``state_dict`` (tuples where the optimiser has tuples)."""
    if not isinstance(data, Mapping) or set(data) != {"state", "param_groups"}:
        raise ValueError("the optimizer's state must be a JSON object with the keys 'param_groups' and 'state'")
    entries, groups = data["state"], data["param_groups"]
    if not isinstance(entries, list) or not isinstance(groups, list) or \
            len(groups) != len(optimizer.param_groups):
        raise ValueError(f"the optimizer's state must list its entries and its {len(optimizer.param_groups)} "
                         "parameter group(s)")
    state: dict[int, dict[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or set(entry) != {"param", "tensors", "values"} or \
                not isinstance(entry["param"], int) or isinstance(entry["param"], bool):
            raise ValueError(f"an optimizer state entry has the keys 'param' (an int), 'tensors' and 'values', "
                             f"but got {entry!r:.80}")
        state[entry["param"]] = {**{str(k): v for k, v in dict(entry["values"]).items()},
                                 **{str(k): tensor_from_json(v) for k, v in dict(entry["tensors"]).items()}}
    param_groups = []
    for saved, current in zip(groups, optimizer.param_groups):
        if not isinstance(saved, Mapping):
            raise ValueError(f"an optimizer parameter group must be a JSON object, but got {saved!r:.80}")
        param_groups.append({str(k): tuple(v) if isinstance(current.get(k), tuple) and isinstance(v, list) else v
                             for k, v in saved.items()})
    return {"state": state, "param_groups": param_groups}


def restore_tensors(network: nn.Module, optimizer: torch.optim.Optimizer, data: Any) -> None:
    """Load :func:`encode_tensors`' output into ``network`` and ``optimizer``, all or nothing.

    Raises
    ------
    ValueError
        If ``data`` is malformed or does not fit the network (names, shapes) or the optimiser; both are
        then as they were.
    """
    if not isinstance(data, Mapping) or set(data) != {"network", "optimizer"}:
        found = sorted(map(str, data)) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"expected a JSON object with the keys 'network' and 'optimizer', but got {found}")
    try:
        if not isinstance(data["network"], Mapping):
            raise ValueError("'network' must map parameter names to tensors")
        network_state = {str(k): tensor_from_json(v) for k, v in data["network"].items()}
        optimizer_state = _optimizer_state(data["optimizer"], optimizer)
    except (binascii.Error, TypeError, KeyError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    saved_network = {k: v.clone() for k, v in network.state_dict().items()}
    saved_optimizer = copy.deepcopy(optimizer.state_dict())
    try:
        network.load_state_dict(network_state)
        optimizer.load_state_dict(optimizer_state)
    except Exception as exc:
        network.load_state_dict(saved_network)
        optimizer.load_state_dict(saved_optimizer)
        if isinstance(exc, (RuntimeError, KeyError, TypeError, ValueError)):
            raise ValueError(f"{type(exc).__name__}: {exc}") from None
        raise
