"""FNA's MobileNetV2 search space as ``nni.nas`` model spaces.

Two spaces live here (both import torch and ``nni.nas``; the import-light tuner module
:mod:`nni_nas_ext.nni.fna` imports this one only when it builds a search):

* :class:`MBConvModelSpace`: FNA's super-network space (Fang et al., ICLR 2020, sec. 3.2) with NNI's own
  mutables, one ``LayerChoice`` per searchable slot labelled ``SuperNetSpace.label(stage, layer)`` (e.g.
  ``"s2_l1"``), whose candidates are the slot's ops in ``SuperNetSpace.ops`` order (MBConv ops, then skip).
  Width multiplier and input resolution are constructor parameters. NNI's strategies (Random,
  RegularizedEvolution, GridSearch, and the one-shot ones, which replace ``LayerChoice`` modules) search it
  as any other space; :func:`sample_to_choice` / :func:`choice_to_sample` translate between NNI samples and
  the choices of :class:`~nni_nas_ext.search_spaces.mbconv_space.SuperNetSpace`, so
  ``space.derive(sample_to_choice(sample))`` is the architecture of a sample, and a frozen model computes
  what ``build_network(derive(choice))`` computes with the same weights
  (:meth:`MBConvModelSpace.load_supernet_state`, :func:`frozen_state_to_network`).
* :class:`FnaModelSpace`: the FNA *pipeline* as a model space with one custom mutable, the job
  (:class:`~nni_nas_ext.core.jobs.FnaJob`) as JSON, label ``"architecture"`` (the label NNI's adapter
  :class:`~nni_nas_ext.nni.nas_strategy.MorphismStrategy` reads), and :func:`train_fna_job`, the function NNI's
  ``FunctionalEvaluator`` runs in every trial.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nni.mutable import LabeledMutable, Mutable, Sample, SampleMissingError, SampleValidationError, ensure_frozen
from nni.nas.nn.pytorch import LayerChoice, ModelSpace
from nni.nas.space import current_model, model_context
from torch import Tensor, nn

from nni_nas_ext.core.jobs import FnaJob
from nni_nas_ext.core.mbconv import EXPANSIONS, KERNELS, MBConvArchitecture, build_network, mobilenet_v2
from nni_nas_ext.search_spaces.mbconv_space import SuperNetSpace
from nni_nas_ext.search_spaces.mbconv_supernet import MBConvSuperNet

from .space import ARCHITECTURE_LABEL

__all__ = [
    "FNA_LABEL", "FnaJobMutable", "FnaModelSpace", "MBConvModelSpace", "choice_to_sample", "frozen_state_to_network",
    "make_fna_evaluator", "sample_to_choice", "train_fna_job",
]

FNA_LABEL = ARCHITECTURE_LABEL


# --------------------------------------------------------------------------------------------------
# The super-network space with NNI's mutables
# --------------------------------------------------------------------------------------------------


def sample_to_choice(space: SuperNetSpace, sample: Mapping[str, Any]) -> dict[tuple[int, int], int]:
    """The space's choice ``{(stage, layer): op index}`` of an NNI sample ``{label: op index}``.

    Keys of ``sample`` that are not slot labels are ignored (a sample may carry other mutables).

    Raises
    ------
    ValueError
        If a slot is missing or an index is out of range (names the slot and what is allowed).
    """
    labels = [space.label(s, l) for s, l in space.layer_slots()]
    return space.normalise_choice({label: sample[label] for label in labels if label in sample})


def choice_to_sample(space: SuperNetSpace, choice: Mapping[Any, int]) -> dict[str, int]:
    """The NNI sample ``{label: op index}`` of a space's choice (keys ``(stage, layer)`` or labels)."""
    return {space.label(*slot): index for slot, index in space.normalise_choice(choice).items()}


def frozen_state_to_network(space: SuperNetSpace, choice: Mapping[Any, int],
                            frozen_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state_dict of ``build_network(space.derive(choice))`` from a frozen :class:`MBConvModelSpace`'s one."""
    norm = space.normalise_choice(choice)
    index = {slot: i for i, slot in enumerate(space.layer_slots())}
    by_slot = {f"supernet.searchable.{index[slot]}.": f"stages.{slot[0]}.{slot[1]}." for slot in norm}
    out: dict[str, Tensor] = {}
    for key, value in frozen_state.items():
        if not key.startswith("supernet."):
            raise ValueError(f"{key!r} is not a key of a frozen MBConvModelSpace (they start with 'supernet.')")
        for prefix, target in by_slot.items():
            if key.startswith(prefix):
                out[target + key[len(prefix):]] = value
                break
        else:
            out[key[len("supernet."):]] = value
    return out


class MBConvModelSpace(ModelSpace):
    """FNA's MobileNetV2 super-network as an ``nni.nas`` model space (one ``LayerChoice`` per slot).

    Parameters
    ----------
    num_classes, width_mult, input_size, in_channels
        The seed: :func:`~nni_nas_ext.core.mbconv.mobilenet_v2` with these (its strides follow the
        small-input rule for inputs below 64x64).
    max_layers, kernels, expansions
        The :class:`~nni_nas_ext.search_spaces.mbconv_space.SuperNetSpace` around it (FNA: 4, (3, 5, 7), (3, 6)).

    Attributes
    ----------
    space
        The :class:`SuperNetSpace` (``nni_nas_ext.search_spaces``).
    supernet
        The :class:`~nni_nas_ext.search_spaces.mbconv_supernet.MBConvSuperNet` whose ``searchable[i]`` are
        ``LayerChoice`` s (the space) or the chosen ops (a frozen model).
    choice
        ``{(stage, layer): op index}`` of a frozen model, ``None`` for the space itself.
    """

    def __init__(self, num_classes: int = 10, width_mult: float = 1.0, input_size: int = 224, in_channels: int = 3,
                 max_layers: int = 4, kernels: Sequence[int] = KERNELS, expansions: Sequence[int] = EXPANSIONS) -> None:
        super().__init__()
        seed = mobilenet_v2(num_classes=num_classes, width_mult=width_mult, input_size=input_size,
                            in_channels=in_channels)
        self.space = SuperNetSpace(seed, max_layers=max_layers, kernels=tuple(kernels), expansions=tuple(expansions))
        self.supernet = MBConvSuperNet(self.space)
        for i, (s, l) in enumerate(self.space.layer_slots()):
            ops = list(self.supernet.searchable[i].ops)  # type: ignore[union-attr]
            self.supernet.searchable[i] = LayerChoice(ops, label=self.space.label(s, l))
        frozen = current_model()
        self.choice = sample_to_choice(self.space, frozen) if frozen is not None else None

    def freeze(self, sample: Sample) -> MBConvModelSpace:
        """The model of ``sample``: built anew in NNI's frozen context (as a trial builds it), fresh weights.

        ``choice`` is set; load weights with :meth:`load_supernet_state` or ``load_state_dict``.
        """
        self.validate(sample)
        with model_context(sample):
            return self.__class__(*self.trace_args, **self.trace_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return self.supernet(x)

    @property
    def architecture(self) -> MBConvArchitecture:
        """The derived architecture of a frozen model."""
        if self.choice is None:
            raise ValueError("the space itself has no architecture: freeze it with a sample first")
        return self.space.derive(self.choice)

    def load_supernet_state(self, supernet_state: Mapping[str, Tensor]) -> None:
        """Load a frozen model from an ``MBConvSuperNet(space)`` state_dict (its chosen ops' weights)."""
        if self.choice is None:
            raise ValueError("load_supernet_state needs a frozen model (model_space.freeze(sample))")
        index = {slot: i for i, slot in enumerate(self.space.layer_slots())}
        state = {}
        for key, value in supernet_state.items():
            if key.startswith("searchable."):
                _searchable, i, _ops, j, rest = key.split(".", 4)
                slot = self.space.layer_slots()[int(i)]
                if self.choice[slot] != int(j):
                    continue
                state[f"supernet.searchable.{index[slot]}.{rest}"] = value
            else:
                state[f"supernet.{key}"] = value
        self.load_state_dict(state)


# --------------------------------------------------------------------------------------------------
# The FNA pipeline's job space
# --------------------------------------------------------------------------------------------------


def _default_job() -> FnaJob:
    return FnaJob(id="seed-0000", kind="seed", epochs=0)


class FnaJobMutable(LabeledMutable):
    """A labeled mutable whose value is any valid :class:`~nni_nas_ext.core.jobs.FnaJob` (JSON dict).

    There is no ``random``/``grid``: the FNA pipeline proposes its jobs itself
    (:class:`~nni_nas_ext.strategies.fna.FnaPipeline`); NNI validates, ships, shows and exports them.
    """

    def __init__(self, label: str = FNA_LABEL) -> None:
        self.label = label

    def extra_repr(self) -> str:
        return f"label={self.label!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"

    def check_contains(self, sample: Sample) -> SampleValidationError | None:
        if self.label not in sample:
            return SampleMissingError(self.label, list(sample.keys()))
        try:
            job = FnaJob.from_dict(sample[self.label])
            if job.architecture is not None:
                MBConvArchitecture.from_dict(job.architecture)
        except (ValueError, TypeError, KeyError) as exc:
            return SampleValidationError(f"{self.label!r} is not a valid FNA job: {exc}")
        return None

    def freeze(self, sample: Sample) -> dict[str, Any]:
        self.validate(sample)
        return FnaJob.from_dict(sample[self.label]).to_dict()

    def leaf_mutables(self, is_leaf: Callable[[Mutable], bool]) -> Iterable[LabeledMutable]:
        yield self

    def default(self, memo: Sample | None = None) -> dict[str, Any]:
        memo = {} if memo is None else memo
        if self.label not in memo:
            memo[self.label] = _default_job().to_dict()
        return self.freeze(memo)

    def random(self, memo: Sample | None = None, random_state: Any = None) -> dict[str, Any]:
        raise NotImplementedError("the FNA pipeline's jobs are proposed by FnaPipeline, not sampled; to search FNA's "
                                  "space with NNI's strategies use MBConvModelSpace")

    def grid(self, memo: Sample | None = None, granularity: int | None = None) -> Iterable[Any]:
        raise NotImplementedError("the FNA pipeline's jobs cannot be enumerated; use MBConvModelSpace for a grid")

    def as_legacy_dict(self) -> dict[str, Any]:
        return {"_type": "choice", "_value": ["FNA: seed -> architecture adaptation -> parameter adaptation"]}

    def equals(self, other: Any) -> bool:
        return isinstance(other, FnaJobMutable) and other.label == self.label


class FnaModelSpace(ModelSpace):
    """The FNA pipeline as an ``nni.nas`` model space: one mutable, the job.

    Once frozen (in a trial), :attr:`job` says what to run; :attr:`network` is the job's network when it
    carries an architecture (``param``/``scratch``; built on first use), which ``forward`` runs.
    """

    def __init__(self) -> None:
        super().__init__()
        mutable = self.add_mutable(FnaJobMutable())
        self.job = FnaJob.from_dict(ensure_frozen(mutable))
        self._network: nn.Module | None = None

    @property
    def network(self) -> nn.Module:
        if self._network is None:
            if self.job.architecture is None:
                raise ValueError(f"job {self.job.id} ({self.job.kind}) carries no architecture; its network is the "
                                 "seed's, built for the dataset by the trial")
            self._network = build_network(MBConvArchitecture.from_dict(self.job.architecture))
        return self._network

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)


def train_fna_job(model: Any, task: Mapping[str, Any], adaptation: Mapping[str, Any]) -> dict[str, Any]:
    """Run the job that ``model`` (a frozen :class:`FnaModelSpace`) carries, reporting to NNI."""
    from nni_nas_ext.console import log_to_stdout
    from nni_nas_ext.trial_code.fna_trial import FnaTaskConfig, run_fna_job

    from .evaluator import NniReporter

    log_to_stdout()
    return run_fna_job(model.job, FnaTaskConfig.from_dict(task), dict(adaptation), NniReporter())


def make_fna_evaluator(task: Mapping[str, Any], adaptation: Mapping[str, Any]) -> Any:
    """``FunctionalEvaluator(train_fna_job, task=..., adaptation=...)`` (names and numbers only: NNI's 64 KB cap)."""
    from nni.nas.evaluator import FunctionalEvaluator

    return FunctionalEvaluator(train_fna_job, task=dict(task), adaptation=dict(adaptation))
