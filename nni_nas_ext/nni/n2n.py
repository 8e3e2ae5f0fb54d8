"""N2N learning's teacher from anywhere in this project: an export folder or a checkpoint of a store.

N2N (Ashok et al., ICLR 2018, arXiv 1709.06030) compresses a *trained* teacher. The pure strategy
(:class:`~nni_nas_ext.strategies.n2n.N2NSearch`) knows the teacher's architecture only; this adapter reads the given
weights (``classArgs: {teacher: <absolute path>}``) and puts them into the search's checkpoint store under
:func:`~nni_nas_ext.strategies.n2n.imported_teacher_id`, where the first trial finds them as its parent, measures
the teacher once (0 epochs) and keeps them as the teacher's checkpoint that every student starts from.

Accepted teachers:

* an export folder (``python -m nni_nas_ext export``, ``make demo``'s ``export/``): ``architecture.json`` and
  ``state_dict.pt``. Note: the exported winner of a search is its *final training*, which trained on the
  validation images: its validation accuracy (the reward's reference) is then optimistic. That scales every
  reward by one constant, so the policy's choices do not change, but prefer the search's own checkpoint of the
  winner (trained on the training split only) when comparing accuracies;
* a checkpoint of a store (``<store>/<candidate id>.pt``, as every trial of our searches writes).

Everything is read with ``torch.load(weights_only=True)``; nothing is unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from nni_nas_ext.core import Architecture, build_module
from nni_nas_ext.core.config import ConfigError

__all__ = ["import_teacher", "load_teacher", "teacher_store"]


def load_teacher(path: str) -> tuple[Architecture, dict[str, torch.Tensor], str]:
    """The architecture and weights at ``path`` (an export folder or a checkpoint file) and what it was.

    Raises
    ------
    ConfigError
        Naming the key ``teacher``, the path and what it should be.
    """
    from nni_nas_ext.export import ARCHITECTURE_FILE, STATE_FILE
    from nni_nas_ext.trial_code.checkpoints import CheckpointError, CheckpointStore

    where = Path(path)
    try:
        if where.is_dir():
            missing = [n for n in (ARCHITECTURE_FILE, STATE_FILE) if not (where / n).is_file()]
            if missing:
                raise ValueError(f"it is a folder without {missing}: an export folder holds {ARCHITECTURE_FILE} "
                                 f"and {STATE_FILE} (python -m nni_nas_ext export)")
            arch = Architecture.from_json((where / ARCHITECTURE_FILE).read_text())
            state = torch.load(where / STATE_FILE, map_location="cpu", weights_only=True)
            kind = "export folder"
        elif where.is_file():
            if where.suffix != ".pt":
                raise ValueError("it is a file but not a checkpoint <candidate id>.pt of a checkpoint store")
            loaded = CheckpointStore(where.parent).load(where.stem)
            arch, state, kind = loaded.architecture, loaded.state_dict, "checkpoint"
        else:
            raise ValueError("nothing is there")
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError("its weights are not a state_dict of tensors")
        build_module(arch, state)  # the weights fit the architecture
    except (ValueError, OSError, RuntimeError, CheckpointError) as exc:
        raise ConfigError(f"n2n: teacher={path!r} cannot be used: {exc}; give the absolute path of an export folder "
                          "(architecture.json, state_dict.pt) or of a checkpoint <candidate id>.pt of a search's "
                          "checkpoint store", key="teacher", value=path) from None
    return arch.with_lineage(None), dict(state), kind


def teacher_store(checkpoint_dir: str | None, env: Any = None) -> Path:
    """The search's checkpoint store: ``checkpoint_dir``, else ``<experiment folder>/checkpoints`` of the
    dispatcher (the folder above ``$NNI_LOG_DIRECTORY``), as the trials find it."""
    if checkpoint_dir:
        return Path(checkpoint_dir)
    env = os.environ if env is None else env
    log_dir = env.get("NNI_LOG_DIRECTORY")
    if not log_dir:
        raise ConfigError("n2n: a given teacher is copied into the search's checkpoint store, but checkpoint_dir is "
                          "not set and this is no nnictl experiment (no NNI_LOG_DIRECTORY): set checkpoint_dir to an "
                          "absolute folder", key="checkpoint_dir", value=checkpoint_dir)
    return Path(log_dir).parent / "checkpoints"


def import_teacher(path: str, checkpoint_dir: str | None, input_shape: tuple[int, ...], num_classes: int,
                   ) -> Architecture:
    """Load the teacher at ``path``, check it fits the data, store its weights for the trials; its architecture.

    Raises
    ------
    ConfigError
        If the teacher cannot be read or does not fit the dataset (input shape, classes).
    """
    from nni_nas_ext.strategies.n2n import imported_teacher_id
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore

    arch, state, kind = load_teacher(path)
    if tuple(arch.input_shape) != tuple(input_shape) or arch.num_classes != num_classes:
        raise ConfigError(f"n2n: the teacher at {path!r} takes input {tuple(arch.input_shape)} with "
                          f"{arch.num_classes} classes, but the dataset has {tuple(input_shape)} with {num_classes}: "
                          "give a teacher trained on this dataset", key="teacher", value=path)
    store = CheckpointStore(teacher_store(checkpoint_dir))
    store.root.mkdir(parents=True, exist_ok=True)
    store.save(imported_teacher_id(arch), arch, state, meta={"imported_from": str(path), "kind": kind})
    return arch
