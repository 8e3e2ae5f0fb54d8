"""The jobs a search hands to a trial: the wire format's two payload kinds (:data:`nni_nas_ext.wire.KINDS`).

* :class:`Candidate` (kind ``"candidate"``): the unit of work of the morphism searches (NASH, EAS, their
  baselines), one training run of one architecture (``docs/design-nash.md``). Strategies propose
  candidates; the trial code trains them (starting from the checkpoint of ``parent`` when it is set) and
  reports a result.
* :class:`FnaJob` (kind ``"fna_job"``): one job of FNA's pipeline (train the seed, adapt the architecture,
  adapt the parameters, or a baseline; :class:`nni_nas_ext.strategies.fna.FnaPipeline` proposes them,
  :mod:`nni_nas_ext.trial_code.fna_trial` runs them).

Both are frozen, JSON-serialisable values (``to_dict``/``from_dict``; ``from_dict`` raises ``ValueError``
naming the bad field). They live in the core because both sides of the process boundary use them: the
strategies that propose them and the trial code that runs them (which never imports a strategy).
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from typing import Any, Optional

from nni_nas_ext.core.architecture import Architecture

__all__ = ["JOB_KINDS", "ROLES", "TRAIN_ON", "Candidate", "FnaJob", "candidate_id"]

#: Why a candidate is trained: the seed, a child of the incumbent, the incumbent retrained alongside its
#: children, the winner's final training, and the seed's final training (same budget, for comparison).
ROLES = ("seed", "child", "incumbent", "final", "seed_final")
#: The data a candidate trains on: ``"train+val"`` only for the final trainings.
TRAIN_ON = ("train", "train+val")

_CANDIDATE_ID = re.compile(r"(?P<arch>[0-9a-f]+)-(?P<serial>[0-9]{4,})")


def candidate_id(arch: Architecture, serial: int) -> str:
    """``f"{arch.id}-{serial:04d}"``: unique within a search whose serials are, and a checkpoint key."""
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        raise ValueError(f"serial must be an integer >= 0, but got {serial!r}")
    if not isinstance(arch, Architecture):
        raise ValueError(f"arch must be an Architecture, but got {type(arch).__name__}")
    return f"{arch.id}-{serial:04d}"


@dataclass(frozen=True)
class Candidate:
    """One training run of one architecture (the wire format's ``candidate`` payload).

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
    stop_after, stop_below
        The early-stopping rule of a child (both set, or both ``None``: no rule): after epoch ``stop_after``
        (``1 <= stop_after < epochs``) the trial stops training if its validation accuracy is below
        ``stop_below`` (in [0, 1]; the parent's final validation accuracy minus a margin), saves its
        checkpoint and reports ``early_stopped: true`` (see :meth:`stops_early`). Written by :meth:`to_dict`
        only when set, so that a candidate without the rule serialises as it always did.
    time_limit
        Seconds from the trial's process start within which it must have reported, or ``None``: no limit. A
        budget-aware strategy sets it on its final trainings (the time left when it proposed them, less the
        scheduling latency): if the machine runs slower than the strategy's estimate, the trial stops training
        after the last epoch that leaves room for one more epoch at its slowest pace so far (for the test and
        the checkpoint), at least one epoch, and reports ``stopped_at_deadline: true`` and ``epochs_trained``
        (:meth:`past_deadline`). Written by :meth:`to_dict` only when set.

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
    stop_after: Optional[int] = None
    stop_below: Optional[float] = None
    time_limit: Optional[float] = None

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, Architecture):
            raise ValueError(f"Candidate.architecture must be an Architecture, "
                             f"but got {type(self.architecture).__name__}")
        match = _CANDIDATE_ID.fullmatch(self.id) if isinstance(self.id, str) else None
        if match is None or match["arch"] != self.architecture.id:
            raise ValueError(f"Candidate.id must be '<architecture id>-<serial, 4+ digits>' = "
                             f"'{self.architecture.id}-NNNN' (see candidate_id), but got {self.id!r}")
        if self.parent is not None and (not isinstance(self.parent, str) or not _CANDIDATE_ID.fullmatch(self.parent)):
            raise ValueError(f"Candidate.parent must be null or a candidate id ('<architecture id>-NNNN'), "
                             f"but got {self.parent!r}")
        _require_int("epochs", self.epochs)
        _require_int("step", self.step)
        if self.train_on not in TRAIN_ON:
            raise ValueError(f"Candidate.train_on must be one of {list(TRAIN_ON)}, but got {self.train_on!r}")
        if not isinstance(self.evaluate_test, bool):
            raise ValueError(f"Candidate.evaluate_test must be true or false, but got {self.evaluate_test!r}")
        if self.train_on == "train+val" and not self.evaluate_test:
            raise ValueError("Candidate.train_on 'train+val' needs evaluate_test true: a training that sees the "
                             "validation images has only the test images left to report on")
        if self.role not in ROLES:
            raise ValueError(f"Candidate.role must be one of {list(ROLES)}, but got {self.role!r}")
        self._check_stop_rule()
        limit = self.time_limit
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, numbers.Real) or not math.isfinite(limit) or \
                    limit <= 0:
                raise ValueError(f"Candidate.time_limit must be null or a finite number of seconds > 0, "
                                 f"but got {limit!r}")
            object.__setattr__(self, "time_limit", float(limit))

    def _check_stop_rule(self) -> None:
        if (self.stop_after is None) != (self.stop_below is None):
            raise ValueError(f"Candidate.stop_after and Candidate.stop_below are set together (the early-stopping "
                             f"rule) or both null, but got stop_after={self.stop_after!r}, "
                             f"stop_below={self.stop_below!r}")
        if self.stop_after is None:
            return
        after, below = self.stop_after, self.stop_below
        if isinstance(after, bool) or not isinstance(after, int) or not 1 <= after < self.epochs:
            raise ValueError(f"Candidate.stop_after must be an integer with 1 <= stop_after < epochs={self.epochs} "
                             f"(a check after the last epoch saves nothing), but got {after!r}")
        if isinstance(below, bool) or not isinstance(below, numbers.Real) or not math.isfinite(below) or \
                not 0.0 <= below <= 1.0:
            raise ValueError(f"Candidate.stop_below must be a finite accuracy in [0, 1], but got {below!r}")
        object.__setattr__(self, "stop_below", float(below))  # 0 from canonical JSON reads back as 0.0

    def stops_early(self, epoch: int, val_accuracy: float | None) -> bool:
        """Whether the trial stops after ``epoch`` (1-based) with this validation accuracy: only after epoch
        ``stop_after``, and only below ``stop_below``; never without a rule or a validation accuracy."""
        return self.stop_after is not None and self.stop_below is not None and epoch == self.stop_after and \
            val_accuracy is not None and val_accuracy < self.stop_below

    def past_deadline(self, epoch: int, elapsed: float, slowest_epoch: float) -> bool:
        """Whether a trial with a :attr:`time_limit` stops after ``epoch`` (1-based, before the last), having
        run ``elapsed`` seconds since its process started: when one more epoch at the slowest pace so far
        (``slowest_epoch`` seconds) and the same again for the evaluation and the checkpoint would end past the
        limit. Never without a limit, nor after the last epoch."""
        return self.time_limit is not None and epoch < self.epochs and \
            elapsed + 2.0 * slowest_epoch > self.time_limit

    @property
    def serial(self) -> int:
        """The serial number in the candidate's id."""
        return int(self.id.rsplit("-", 1)[1])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; :meth:`from_dict` reads it back to an equal candidate. The early-stopping rule's keys
        and the time limit appear only when set."""
        out: dict[str, Any] = {"id": self.id, "architecture": self.architecture.to_dict(), "parent": self.parent,
               "epochs": self.epochs, "train_on": self.train_on, "evaluate_test": self.evaluate_test,
               "role": self.role, "step": self.step}
        if self.stop_after is not None:
            out.update(stop_after=self.stop_after, stop_below=self.stop_below)
        if self.time_limit is not None:
            out["time_limit"] = self.time_limit
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Candidate:
        """Read :meth:`to_dict`'s form.

        Raises
        ------
        ValueError
            Naming the missing, unknown or malformed field and its value.
        """
        names = _check_json_fields(cls, data, "a candidate")
        try:
            arch = Architecture.from_dict(data["architecture"])
        except ValueError as exc:
            raise ValueError(f"Candidate.architecture is not a valid architecture: {exc}") from None
        return cls(**{**{n: data[n] for n in names if n in data}, "architecture": arch})


def _check_json_fields(cls: type, data: Any, what: str) -> list[str]:
    """The field names of the dataclass ``cls``, once ``data`` is a mapping with no unknown and no missing
    required field; raises ``ValueError`` naming ``what`` and the fields otherwise."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a JSON object, but got {type(data).__name__}")
    names = [f.name for f in fields(cls)]
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ValueError(f"{what} has the fields {names}, but got unknown field(s) {unknown}")
    required = [f.name for f in fields(cls) if f.default is MISSING]
    missing = [n for n in required if n not in data]
    if missing:
        raise ValueError(f"{what} needs the fields {required}, but {missing} are missing")
    return names


def _require_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"Candidate.{name} must be an integer >= 0, but got {value!r}")


# --------------------------------------------------------------------------------------------------
# FNA's jobs (payload kind "fna_job")
# --------------------------------------------------------------------------------------------------

#: What a job does: train the seed on the source task; architecture adaptation; parameter adaptation; and
#: the two baselines (seed fine-tuned as is; derived architecture from scratch).
JOB_KINDS = ("seed", "adapt", "param", "seed_finetune", "scratch")
#: ``role`` of each kind as the NNI adapter and reports see it (``final``: the pipeline's product).
_FNA_ROLES = {"seed": "seed", "adapt": "adapt", "param": "final", "seed_finetune": "seed_final", "scratch": "scratch"}
#: pipeline step of each kind (0: seed, 1: adaptation, 2: parameter adaptation)
_FNA_STEPS = {"seed": 0, "adapt": 1, "seed_finetune": 1, "param": 2, "scratch": 2}
_FNA_JOB_ID = re.compile(r"(?P<kind>[a-z_]+)-(?P<serial>[0-9]{4,})")


@dataclass(frozen=True)
class FnaJob:
    """One trial of the FNA pipeline: a frozen, JSON-serialisable value (the wire format's ``fna_job`` payload).

    Parameters
    ----------
    id
        ``f"{kind}-{serial:04d}"``, unique in the pipeline; also the checkpoint key.
    kind
        One of :data:`JOB_KINDS`.
    epochs
        Training epochs (seed: on the source task; adapt: of the search; others: fine-tuning).
    parent
        Id of the ``seed`` job whose checkpoint holds the seed's weights; ``None`` when they come from
        ``seed_checkpoint`` (or for the seed job itself).
    seed_checkpoint
        Absolute path of a user's seed checkpoint, or ``None``.
    architecture
        The derived target architecture (``MBConvArchitecture.to_dict()``) of ``param`` and ``scratch``
        jobs; ``None`` for the others (their architecture is the seed's, built for the dataset).
    choice
        The adaptation's choice (op index per layer label) that gave ``architecture``; ``None`` otherwise.
    adapt
        Id of the ``adapt`` job that derived ``architecture``; ``None`` otherwise.
    """

    id: str
    kind: str
    epochs: int
    parent: Optional[str] = None
    seed_checkpoint: Optional[str] = None
    architecture: Optional[dict[str, Any]] = None
    choice: Optional[dict[str, int]] = None
    adapt: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in JOB_KINDS:
            raise ValueError(f"FnaJob.kind must be one of {list(JOB_KINDS)}, but got {self.kind!r}")
        match = _FNA_JOB_ID.fullmatch(self.id) if isinstance(self.id, str) else None
        if match is None or match["kind"] != self.kind:
            raise ValueError(f"FnaJob.id must be '{self.kind}-NNNN' (kind, serial of 4+ digits), but got {self.id!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"FnaJob.epochs must be an integer >= 0, but got {self.epochs!r}")
        if self.parent is not None and (not isinstance(self.parent, str) or not _FNA_JOB_ID.fullmatch(self.parent)):
            raise ValueError(f"FnaJob.parent must be null or a job id ('seed-NNNN'), but got {self.parent!r}")
        if self.kind != "seed" and self.parent is None and self.seed_checkpoint is None:
            raise ValueError(f"FnaJob {self.id}: a {self.kind} job needs the seed's weights: a parent seed job or "
                             "a seed_checkpoint")
        needs_arch = self.kind in ("param", "scratch")
        if needs_arch and not isinstance(self.architecture, Mapping):
            raise ValueError(f"FnaJob {self.id}: a {self.kind} job needs the derived architecture (a JSON object), "
                             f"but got {type(self.architecture).__name__}")
        if not needs_arch and self.architecture is not None:
            raise ValueError(f"FnaJob {self.id}: a {self.kind} job takes no architecture (it uses the seed's)")
        if self.choice is not None and (not isinstance(self.choice, Mapping) or not all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in self.choice.items())):
            raise ValueError(f"FnaJob.choice must map layer labels to op indices, but got {self.choice!r}")

    @property
    def role(self) -> str:
        """``seed``, ``adapt``, ``final`` (parameter adaptation), ``seed_final`` (seed fine-tuned), ``scratch``."""
        return _FNA_ROLES[self.kind]

    @property
    def step(self) -> int:
        """0: the seed; 1: the adaptation (and the seed baseline); 2: the parameter adaptation (and scratch)."""
        return _FNA_STEPS[self.kind]

    @property
    def serial(self) -> int:
        return int(self.id.rsplit("-", 1)[1])

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON; :meth:`from_dict` reads it back to an equal job."""
        return {"id": self.id, "kind": self.kind, "epochs": self.epochs, "parent": self.parent,
                "seed_checkpoint": self.seed_checkpoint,
                "architecture": copy.deepcopy(self.architecture) if self.architecture is not None else None,
                "choice": dict(self.choice) if self.choice is not None else None, "adapt": self.adapt}

    @classmethod
    def from_dict(cls, data: Any) -> FnaJob:
        """Read :meth:`to_dict`'s form; raises ``ValueError`` naming the unknown, missing or malformed field."""
        names = _check_json_fields(cls, data, "an FNA job")
        values = {n: data[n] for n in names if n in data}
        if values.get("choice") is not None and isinstance(values["choice"], Mapping):
            values["choice"] = dict(values["choice"])
        if values.get("architecture") is not None and isinstance(values["architecture"], Mapping):
            values["architecture"] = json.loads(json.dumps(values["architecture"]))
        return cls(**values)
