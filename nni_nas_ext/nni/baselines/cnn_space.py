"""A CNN space of NNI's own mutables, comparable to what our morphism searches reach from the NASH seed.

The space and its networks are :mod:`nni_nas_ext.search_spaces.cnn_space` (the NASH seed's kind of networks:
conv-BN-ReLU stages with max pools between them and optional shortcuts). :class:`ConvStageSpace` offers them
as a fixed-choice ``nni.nas`` space, so that NNI's own strategies (``Random``, ``RegularizedEvolution``: Real
et al., *Regularized Evolution for Image Classifier Architecture Search*, AAAI 2019, Algorithm 1) can search
it.

Per stage ``s`` four labeled ``nni.choice`` mutables: ``stage{s}_depth`` (default {1, 2, 3}),
``stage{s}_width`` ({8, 16, 32, 64}), ``stage{s}_kernel`` ({3, 5}) and ``stage{s}_skip`` ({False, True}; the
shortcut is the identity when the widths match, else a 1x1 conv + BN, added after the stage's last ReLU).
The default space has 48^3 = 110,592 networks.

How it fits ``nni.nas``: the space registers its mutables with ``add_mutable`` and builds the network from
``ensure_frozen`` values, as NNI 3.0's model spaces may do with Python control flow; once frozen (in a
trial, with the simplified format) the instance *is* the sampled network.
:func:`~nni_nas_ext.search_spaces.cnn_space.build_cnn_space_model` rebuilds any sample without NNI (the
benchmark retrains winners with it), and :func:`train_cnn_sample` is the evaluator function: our trainer, our
data split, the same schedule as every contestant.

Two options of the evaluator serve the multi-objective benchmark (``benchmarks/compare_pareto.py``), both off by
default (the trials then report exactly what they always did):

* ``reward_size_weight`` w > 0: the trial reports the size-penalised reward of :func:`size_penalised_reward`,
  ``val_acc - w * log10(params)``, as ``default`` (what NNI's strategies maximise), the validation accuracy as
  ``val_acc`` and ``w`` as ``reward_size_weight``. A MnasNet-style soft constraint (Tan et al., *MnasNet:
  Platform-Aware Neural Architecture Search for Mobile*, CVPR 2019, eq. 2, there multiplicative on latency); here
  additive on log10 parameters: a tenfold larger network must gain ``w`` accuracy to be worth as much.
  Per-epoch reports stay the validation accuracy.
* ``keep_weights``: the trained weights are kept in the experiment's checkpoint store
  (``<experiment folder>/checkpoints/nni-trial-<sequence>.pt``, :meth:`CheckpointStore.save_weights`, read back
  with ``weights_only=True``) and the final result names the file as ``weights``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import nni
from nni.mutable import ensure_frozen
from nni.nas.nn.pytorch import ModelSpace
from torch import Tensor, nn

from nni_nas_ext.search_spaces.cnn_space import STAGE_KEYS, CnnSpaceConfig, build_cnn_space_model

__all__ = ["ConvStageSpace", "SizePenalisedReporter", "make_cnn_evaluator", "size_penalised_reward",
           "train_cnn_sample", "with_size_penalty"]

_log = logging.getLogger(__name__)


class ConvStageSpace(ModelSpace):
    """``nni.nas`` model space of :func:`build_cnn_space_model` networks (see the module docstring).

    Parameters
    ----------
    input_shape, num_classes
        The dataset's ``(C, H, W)`` and class count.
    n_stages, depths, widths, kernels, skip
        The choices (:class:`CnnSpaceConfig`); ``skip`` choices are ``"no"`` / ``"yes"``.

    Frozen, the instance is the sampled network: :attr:`sample` holds the chosen values and :attr:`network`
    the module. Unfrozen, :attr:`network` is the default sample's (the first choice of each mutable).

    Raises
    ------
    ConfigError
        For bad choices (naming the key and the value).
    """

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), num_classes: int = 10, n_stages: int = 3,
                 depths: Sequence[int] = (1, 2, 3), widths: Sequence[int] = (8, 16, 32, 64),
                 kernels: Sequence[int] = (3, 5), skip: Sequence[str] = ("no", "yes")) -> None:
        super().__init__()
        config = CnnSpaceConfig(n_stages=n_stages, depths=tuple(depths), widths=tuple(widths),
                                kernels=tuple(kernels), skip=tuple(skip))
        choices = {"depth": list(config.depths), "width": list(config.widths), "kernel": list(config.kernels),
                   "skip": list(config.skip)}
        sample: dict[str, Any] = {}
        for s in range(n_stages):
            for key in STAGE_KEYS:
                label = f"stage{s}_{key}"
                sample[label] = ensure_frozen(self.add_mutable(nni.choice(label, choices[key])))
        self.sample = sample
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.choices = {"n_stages": n_stages, **{k + "s": tuple(v) for k, v in choices.items() if k != "skip"},
                        "skip": tuple(config.skip)}
        self.network = build_cnn_space_model(sample, self.input_shape, self.num_classes)  # type: ignore[arg-type]

    def freeze(self, sample: Mapping[str, Any]) -> ConvStageSpace:
        """The network of ``sample`` (NNI's recipe: rebuild the space in a frozen context)."""
        from nni.nas.space import model_context

        self.validate(dict(sample))
        with model_context(dict(sample)):
            return ConvStageSpace(self.input_shape, self.num_classes, **self.choices)

    def forward(self, x: Tensor) -> Tensor:
        return self.network(x)


# --------------------------------------------------------------------------------------------------------
# The evaluator: train a sample as every contestant is trained
# --------------------------------------------------------------------------------------------------------


def _sequence() -> int:
    try:
        import nni

        return int(nni.get_sequence_id())
    except Exception:  # noqa: BLE001 - outside a trial
        return 0


def size_penalised_reward(val_acc: float, params: int, weight: float) -> float:
    """``val_acc - weight * log10(params)``: the accuracy less ``weight`` per tenfold of parameters (see the module
    docstring).

    Raises
    ------
    ValueError
        When ``params < 1`` or ``weight < 0``.
    """
    if params < 1 or weight < 0:
        raise ValueError(f"size_penalised_reward: params >= 1 and weight >= 0 must hold, but got params={params}, "
                         f"weight={weight}")
    return float(val_acc) - float(weight) * math.log10(params)


def with_size_penalty(metric: Mapping[str, Any], weight: float) -> dict[str, Any]:
    """A final result with ``default`` = :func:`size_penalised_reward`, the validation accuracy kept as ``val_acc``
    and ``reward_size_weight``; a result without a numeric ``default`` and ``params`` (a failure) unchanged."""
    acc, params = metric.get("default"), metric.get("params")
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or isinstance(params, bool) \
            or not isinstance(params, int) or params < 1 or "failed" in metric:
        return dict(metric)
    return {**metric, "default": size_penalised_reward(acc, params, weight), "val_acc": acc,
            "reward_size_weight": float(weight)}


class SizePenalisedReporter:
    """A reporter that passes everything on, its final result through :func:`with_size_penalty`."""

    def __init__(self, inner: Any, weight: float) -> None:
        self.inner = inner
        self.weight = float(weight)

    def intermediate(self, metric: dict[str, Any]) -> None:
        self.inner.intermediate(metric)

    def final(self, metric: dict[str, Any]) -> None:
        self.inner.final(with_size_penalty(metric, self.weight))


def train_cnn_sample(model: Any, task: Mapping[str, Any], epochs: int, reporter: Any = None,
                     data: Any = None, reward_size_weight: float = 0.0, keep_weights: bool = False) -> dict[str, Any]:
    """The evaluator function: train the sampled network with our trainer and schedule; report to NNI.

    ``model`` is the frozen :class:`ConvStageSpace` NNI hands the trial (only its :attr:`sample` is used: the
    network is rebuilt with :func:`build_cnn_space_model` after seeding torch with ``task.seed`` and the trial's
    sequence number, so that a retraining from the reported sample starts from the same kind of
    initialisation). Reports ``{"default": val_acc, "epoch": e}`` per epoch and a final ``{"default":
    val_acc, "params": ..., "sample": {...}, ...}``; ``reward_size_weight`` and ``keep_weights``: see the module
    docstring. Returns the final result as reported.
    """
    from nni_nas_ext.console import log_to_stdout
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore
    from nni_nas_ext.trial_code.scratch import train_from_scratch
    from nni_nas_ext.trial_code.trial import TaskConfig, default_checkpoint_dir

    from ..evaluator import NniReporter

    log_to_stdout()
    config = TaskConfig.from_dict(task)
    sample = dict(model.sample)

    def build(data: Any) -> nn.Module:
        if tuple(data.input_shape) != tuple(model.input_shape) or data.num_classes != model.num_classes:
            raise ValueError(f"the space was built for {tuple(model.input_shape)} images and {model.num_classes} "
                             f"classes, but dataset {config.dataset!r} has {tuple(data.input_shape)} and "
                             f"{data.num_classes}")
        return build_cnn_space_model(sample, tuple(data.input_shape), data.num_classes)

    sequence = _sequence()
    out = reporter if reporter is not None else NniReporter()
    if reward_size_weight > 0:
        out = SizePenalisedReporter(out, reward_size_weight)
    store = None
    if keep_weights:
        store = CheckpointStore.open(config.checkpoint_dir or default_checkpoint_dir())
    result = train_from_scratch(build, config, epochs, out, sequence=sequence, rebuild={"sample": sample},
                                what=f"sample {sample}", data=data, store=store,
                                weights_id=f"nni-trial-{sequence:05d}" if keep_weights else None)
    return with_size_penalty(result, reward_size_weight) if reward_size_weight > 0 else result  # as reported


def make_cnn_evaluator(task: Mapping[str, Any], epochs: int, *, reward_size_weight: float = 0.0,
                       keep_weights: bool = False) -> Any:
    """``FunctionalEvaluator(train_cnn_sample, task=..., epochs=..., reward_size_weight=..., keep_weights=...)``
    (task: :class:`TaskConfig` keys)."""
    from nni.nas.evaluator import FunctionalEvaluator

    from nni_nas_ext.trial_code.trial import TaskConfig

    return FunctionalEvaluator(train_cnn_sample, task=TaskConfig.from_dict(task).to_dict(), epochs=int(epochs),
                               reward_size_weight=float(reward_size_weight), keep_weights=bool(keep_weights))
