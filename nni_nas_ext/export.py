"""Export a trained candidate so that it can be used without NNI (and without this search).

An export folder holds:

* ``architecture.json`` -- the architecture (with its lineage), :meth:`Architecture.to_json`;
* ``state_dict.pt``     -- the trained weights, keys ``layers.<node id>.<param>`` (load with ``weights_only``);
* ``model.torchscript.pt`` -- the same network as TorchScript, traced in eval mode (needs only torch);
* ``export.json``       -- where it came from (candidate, accuracies, normalisation of the inputs).

:func:`load_exported` rebuilds the ``nn.Module`` from the first two (needs torch and this package's core,
not NNI); ``torch.jit.load(folder / "model.torchscript.pt")`` needs torch alone. Both give the same
predictions (a test holds them equal).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nni_nas_ext.atomic import atomic_write
from nni_nas_ext.core import Architecture, build_module

__all__ = ["ARCHITECTURE_FILE", "EXPORT_FILES", "METADATA_FILE", "STATE_FILE", "TORCHSCRIPT_FILE", "export_model",
           "load_exported"]

ARCHITECTURE_FILE = "architecture.json"
STATE_FILE = "state_dict.pt"
TORCHSCRIPT_FILE = "model.torchscript.pt"
METADATA_FILE = "export.json"
#: every file an export writes, in the order listed above
EXPORT_FILES = (ARCHITECTURE_FILE, STATE_FILE, TORCHSCRIPT_FILE, METADATA_FILE)


def export_model(architecture: Architecture, state_dict: Mapping[str, torch.Tensor], out_dir: str | os.PathLike[str],
                 *, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write the export folder ``out_dir`` (created if missing; files in it are replaced atomically).

    Returns the folder. Raises ``ValueError`` if the weights do not fit the architecture.
    """
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        module = build_module(architecture, state_dict).eval()
    except RuntimeError as exc:
        raise ValueError(f"the state_dict does not fit architecture {architecture.id}: {exc}") from None
    # Tracing is exact here: the graph is static (no data-dependent control flow), and in eval mode
    # BatchNorm and dropout are fixed functions.
    # TorchScript is deprecated from torch 2.10 on (FutureWarning) but still the format that runs on torch alone
    # across versions, which is what the export promises; the warning is not the user's to act on.
    example = torch.zeros(2, *architecture.input_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.trace(module, example, check_trace=False)
    atomic_write(out / ARCHITECTURE_FILE, lambda f: f.write(architecture.to_json(indent=1).encode()), mode=0o644)
    cpu_state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    atomic_write(out / STATE_FILE, lambda f: torch.save(cpu_state, f), mode=0o644)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        atomic_write(out / TORCHSCRIPT_FILE, lambda f: torch.jit.save(scripted, f), mode=0o644)
    meta = {"architecture_id": architecture.id, "parameters": architecture.num_parameters(),
            "macs": architecture.num_macs(), "input_shape": list(architecture.input_shape),
            "num_classes": architecture.num_classes, **dict(metadata or {})}
    atomic_write(out / METADATA_FILE, lambda f: f.write(json.dumps(meta, indent=1, default=str).encode()), mode=0o644)
    return out


def load_exported(folder: str | os.PathLike[str]) -> nn.Module:
    """Rebuild the exported network (eval mode) from ``architecture.json`` and ``state_dict.pt``."""
    root = Path(folder)
    missing = [name for name in (ARCHITECTURE_FILE, STATE_FILE) if not (root / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{root} is not an export folder: {missing} missing (made by "
                                f"`python -m nni_nas_ext export`)")
    arch = Architecture.from_json((root / ARCHITECTURE_FILE).read_text())
    state = torch.load(root / STATE_FILE, map_location="cpu", weights_only=True)
    return build_module(arch, state).eval()
