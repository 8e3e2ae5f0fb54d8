"""The unit of work of a search: one training run of one architecture (``docs/design-nash.md``).

A :class:`Candidate` is a frozen, JSON-serialisable value. Strategies propose candidates; the trial
code trains them (starting from the checkpoint of ``parent`` when it is set) and reports a result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from nni_nas_ext.core.architecture import Architecture

__all__ = ["ROLES", "TRAIN_ON", "Candidate", "candidate_id"]

#: Why a candidate is trained: the seed, a child of the incumbent, the incumbent retrained alongside its
#: children, the winner's final training, and the seed's final training (same budget, for comparison).
ROLES = ("seed", "child", "incumbent", "final", "seed_final")
#: The data a candidate trains on: ``"train+val"`` only for the final trainings.
TRAIN_ON = ("train", "train+val")

_ID = re.compile(r"(?P<arch>[0-9a-f]+)-(?P<serial>[0-9]{4,})")


def candidate_id(arch: Architecture, serial: int) -> str:
    """``f"{arch.id}-{serial:04d}"``: unique within a search whose serials are, and a checkpoint key."""
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        raise ValueError(f"serial must be an integer >= 0, but got {serial!r}")
    if not isinstance(arch, Architecture):
        raise ValueError(f"arch must be an Architecture, but got {type(arch).__name__}")
    return f"{arch.id}-{serial:04d}"


@dataclass(frozen=True)
class Candidate:
    """One training run of one architecture.

    Parameters
    ----------
    id
        Unique in the search and the checkpoint key: ``candidate_id(architecture, serial)``, i.e.
        ``f"{architecture.id}-{serial:04d}"``.
    architecture
        What to train; a child carries ``lineage`` (the parent architecture's id and the morphism steps).
    parent
        Id of the candidate whose checkpoint to start from; ``None``: fresh initialisation. When the
        architecture has a lineage the trial replays its steps on the parent's weights
        (:func:`nni_nas_ext.core.replay`); when the parent has the same architecture the weights load as
        they are.
    epochs
        Epochs of one cosine-annealed cycle; 0: evaluate only.
    train_on
        ``"train"``, or ``"train+val"`` for the final trainings.
    evaluate_test
        Whether the trial evaluates the test set (final trainings only).
    role
        One of :data:`ROLES`.
    step
        Hill-climbing step, 0 for the seed.

    Raises
    ------
    ValueError
        On construction, naming the field and the value, if any field is malformed.
    """

    id: str
    architecture: Architecture
    parent: str | None
    epochs: int
    train_on: str
    evaluate_test: bool
    role: str
    step: int

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, Architecture):
            raise ValueError(f"Candidate.architecture must be an Architecture, "
                             f"but got {type(self.architecture).__name__}")
        match = _ID.fullmatch(self.id) if isinstance(self.id, str) else None
        if match is None or match["arch"] != self.architecture.id:
            raise ValueError(f"Candidate.id must be '<architecture id>-<serial, 4+ digits>' = "
                             f"'{self.architecture.id}-NNNN' (see candidate_id), but got {self.id!r}")
        if self.parent is not None and (not isinstance(self.parent, str) or not _ID.fullmatch(self.parent)):
            raise ValueError(f"Candidate.parent must be null or a candidate id ('<architecture id>-NNNN'), "
                             f"but got {self.parent!r}")
        _require_int("epochs", self.epochs)
        _require_int("step", self.step)
        if self.train_on not in TRAIN_ON:
            raise ValueError(f"Candidate.train_on must be one of {list(TRAIN_ON)}, but got {self.train_on!r}")
        if not isinstance(self.evaluate_test, bool):
            raise ValueError(f"Candidate.evaluate_test must be true or false, but got {self.evaluate_test!r}")
        if self.role not in ROLES:
            raise ValueError(f"Candidate.role must be one of {list(ROLES)}, but got {self.role!r}")

    @property
    def serial(self) -> int:
        """The serial number in the candidate's id."""
        return int(self.id.rsplit("-", 1)[1])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; :meth:`from_dict` reads it back to an equal candidate."""
        return {"id": self.id, "architecture": self.architecture.to_dict(), "parent": self.parent,
                "epochs": self.epochs, "train_on": self.train_on, "evaluate_test": self.evaluate_test,
                "role": self.role, "step": self.step}

    @classmethod
    def from_dict(cls, data: Any) -> Candidate:
        """Read :meth:`to_dict`'s form.

        Raises
        ------
        ValueError
            Naming the missing, unknown or malformed field and its value.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a candidate must be a JSON object, but got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise ValueError(f"a candidate has the fields {names}, but got unknown field(s) {unknown}")
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"a candidate needs the fields {names}, but {missing} are missing")
        try:
            arch = Architecture.from_dict(data["architecture"])
        except ValueError as exc:
            raise ValueError(f"Candidate.architecture is not a valid architecture: {exc}") from None
        return cls(**{**{n: data[n] for n in names}, "architecture": arch})


def _require_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Candidate.{name} must be an integer >= 0, but got {value!r}")
