"""The morphism search space as an ``nni.nas`` model space.

A space grown by morphisms has no fixed list of choices: any architecture reachable from the seed is in
it. It fits ``nni.nas`` as a model space with ONE labeled mutable, :class:`CandidateMutable` (label
``"architecture"``), whose value is a whole :class:`~nni_nas_ext.core.jobs.Candidate` as JSON:
the architecture (with its lineage) and how to train it. NNI then validates samples, serialises them to
trials, shows them in the portal's parameter view and exports them, while our strategies edit JSON only.

Default value (NNI's dry run, ``export_top_models`` of an untrained space): the seed, untrained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from nni.mutable import LabeledMutable, Mutable, Sample, SampleMissingError, SampleValidationError, ensure_frozen
from nni.nas.nn.pytorch import ModelSpace
from torch import Tensor

from nni_nas_ext.core import Architecture, ArchitectureError, build_module
from nni_nas_ext.core.jobs import Candidate

__all__ = ["ARCHITECTURE_LABEL", "CandidateMutable", "MorphismModelSpace", "seed_candidate"]

ARCHITECTURE_LABEL = "architecture"


def seed_candidate(seed: Architecture, epochs: int = 0) -> Candidate:
    """The seed network as a candidate (the space's default value)."""
    return Candidate(id=f"{seed.id}-0000", architecture=seed, parent=None, epochs=epochs, train_on="train",
                     evaluate_test=False, role="seed", step=0)


class CandidateMutable(LabeledMutable):
    """A labeled mutable whose value is any valid candidate (JSON dict) of the morphism space.

    ``check_contains`` parses and validates the architecture (shape inference included) and requires the
    seed's input shape and class count. There is no ``random``/``grid``: a morphism space is searched by
    growing networks, which is what our strategies do; NNI's generic strategies cannot enumerate it.
    """

    def __init__(self, seed: Candidate, label: str = ARCHITECTURE_LABEL) -> None:
        self.label = label
        self.seed = seed

    def extra_repr(self) -> str:
        return f"seed={self.seed.architecture.id}, label={self.label!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        if self.label not in sample:
            return SampleMissingError(self.label, list(sample.keys()))
        value = sample[self.label]
        try:
            candidate = Candidate.from_dict(value)
        except (ArchitectureError, ValueError, TypeError) as exc:
            return SampleValidationError(f"{self.label!r} is not a valid candidate: {exc}")
        arch, seed = candidate.architecture, self.seed.architecture
        if tuple(arch.input_shape) != tuple(seed.input_shape) or arch.num_classes != seed.num_classes:
            return SampleValidationError(
                f"{self.label!r}: architecture {arch.id} takes {tuple(arch.input_shape)} -> {arch.num_classes} "
                f"classes, the space's seed {tuple(seed.input_shape)} -> {seed.num_classes}")
        return None

    def freeze(self, sample: Sample) -> dict[str, Any]:
        self.validate(sample)
        return Candidate.from_dict(sample[self.label]).to_dict()

    def leaf_mutables(self, is_leaf: Callable[[Mutable], bool]) -> Iterable[LabeledMutable]:
        yield self  # one indivisible value: the whole candidate

    def default(self, memo: Sample | None = None) -> dict[str, Any]:
        memo = {} if memo is None else memo
        if self.label not in memo:
            memo[self.label] = self.seed.to_dict()
        return self.freeze(memo)

    def random(self, memo: Sample | None = None, random_state: Any = None) -> dict[str, Any]:
        raise NotImplementedError(
            "a morphism space has no random sample: it is searched by growing networks from the seed; use one "
            "of nni_nas_ext's strategies (e.g. the NASH hill climbing)")

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterable[Any]:
        raise NotImplementedError("a morphism space cannot be enumerated; use one of nni_nas_ext's strategies")

    def as_legacy_dict(self) -> dict[str, Any]:
        """The portal's search-space view: the seed, from which every candidate grows."""
        return {"_type": "choice", "_value": [{"grown by morphisms from seed": self.seed.architecture.to_dict()}]}

    def equals(self, other: Any) -> bool:
        return isinstance(other, CandidateMutable) and other.label == self.label and \
            other.seed.to_dict() == self.seed.to_dict()


class MorphismModelSpace(ModelSpace):
    """An ``nni.nas`` model space of networks grown from ``seed`` by morphisms.

    Parameters
    ----------
    seed
        The seed network, as an :class:`~nni_nas_ext.core.Architecture` or its dict form.

    Once frozen (in a trial, or by ``export_top_models``), the instance is the candidate's network:
    :attr:`candidate` says what to train, :attr:`network` is the module (fresh initialisation; the trial
    code loads the inherited weights) and ``forward`` runs it.
    """

    def __init__(self, seed: Architecture | Mapping[str, Any]) -> None:
        super().__init__()
        seed_arch = seed if isinstance(seed, Architecture) else Architecture.from_dict(seed)
        self.seed_architecture = seed_arch
        mutable = self.add_mutable(CandidateMutable(seed_candidate(seed_arch)))
        self.candidate = Candidate.from_dict(ensure_frozen(mutable))
        self.network = build_module(self.candidate.architecture)

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)
