"""A CNN space of NNI's own mutables, comparable to what our morphism searches reach from the NASH seed.

The NASH seed is ``conv-pool-conv-pool-conv-gap-fc`` with BatchNorm and ReLU after every conv (Elsken et al.,
arXiv 1711.04528, Sec. 5.1; :func:`nni_nas_ext.search_spaces.nash_seed`); its morphisms deepen stages, widen
convolutions, widen kernels and add skip connections. :class:`ConvStageSpace` offers the same kind of
networks as a fixed-choice ``nni.nas`` space, so that NNI's own strategies (``Random``,
``RegularizedEvolution``: Real et al., *Regularized Evolution for Image Classifier Architecture Search*,
AAAI 2019, Algorithm 1) can search it::

    input -> stage 0 -> maxpool 2 -> stage 1 -> maxpool 2 -> stage 2 -> global average pool -> fc
    stage s: depth_s x (conv k_s x k_s, width_s -> BN -> ReLU)  [+ shortcut(input of the stage), if skip_s]

Per stage ``s`` four labeled ``nni.choice`` mutables: ``stage{s}_depth`` (default {1, 2, 3}),
``stage{s}_width`` ({8, 16, 32, 64}), ``stage{s}_kernel`` ({3, 5}) and ``stage{s}_skip`` ({False, True}; the
shortcut is the identity when the widths match, else a 1x1 conv + BN, added after the stage's last ReLU).
The default space has 48^3 = 110,592 networks. Pools are placed between stages while the resolution
allows (a stage on a 1x1 map gets none).

How it fits ``nni.nas``: the space registers its mutables with ``add_mutable`` and builds the network from
``ensure_frozen`` values, as NNI 3.0's model spaces may do with Python control flow; once frozen (in a
trial, with the simplified format) the instance *is* the sampled network. :func:`build_cnn_space_model`
rebuilds any sample without NNI (the benchmark retrains winners with it), and :func:`train_cnn_sample` is
the evaluator function: our trainer, our data split, the same schedule as every contestant.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import nni
from nni.mutable import ensure_frozen
from nni.nas.nn.pytorch import ModelSpace
from torch import Tensor, nn

from nni_nas_ext.strategies.config import Config, ConfigError, option

__all__ = [
    "CnnSpaceConfig", "ConvStageNetwork", "ConvStageSpace", "StageSpec", "build_cnn_space_model", "labels",
    "make_cnn_evaluator", "stages_of", "train_cnn_sample",
]

_log = logging.getLogger(__name__)

#: The mutables of one stage, in order.
STAGE_KEYS = ("depth", "width", "kernel", "skip")


def labels(n_stages: int) -> list[str]:
    """The labels of a space's mutables: ``stage{s}_{depth|width|kernel|skip}`` for each stage."""
    return [f"stage{s}_{key}" for s in range(n_stages) for key in STAGE_KEYS]


@dataclass(frozen=True)
class CnnSpaceConfig(Config):
    """The choices of :class:`ConvStageSpace` (``classArgs`` of the NNI-strategy contestant)."""

    config_name: ClassVar[str] = "cnn_space"

    n_stages: int = option(3, minimum=1, maximum=8,
                           doc="conv stages with a 2x2 max pool between them (the NASH seed has 3)")
    depths: tuple[int, ...] = option((1, 2, 3), minimum=1, maximum=64, non_empty=True, unique=True,
                                     doc="choices of convs per stage (the NASH seed: 1; deepen adds more)")
    widths: tuple[int, ...] = option((8, 16, 32, 64), minimum=1, maximum=4096, non_empty=True, unique=True,
                                     doc="choices of channels per stage (NASH's widen grows widths)")
    kernels: tuple[int, ...] = option((3, 5), minimum=1, maximum=15, non_empty=True, unique=True,
                                      doc="choices of kernel size per stage, odd (NASH seed: 3; widen_kernel: 5)")
    skip: tuple[str, ...] = option(("no", "yes"), choices=("no", "yes"), non_empty=True, unique=True,
                                   doc="choices of a shortcut around each stage ('yes': NASH's add_skip kind)")

    def __post_init__(self) -> None:
        super().__post_init__()
        even = [k for k in self.kernels if k % 2 == 0]
        if even:
            raise ConfigError(f"cnn_space: every kernel must be odd (padding k // 2 keeps the resolution), but got "
                              f"{list(self.kernels)} with {even}", key="kernels", value=list(self.kernels))


@dataclass(frozen=True)
class StageSpec:
    """One stage of a sampled network."""

    depth: int
    width: int
    kernel: int
    skip: bool


def stages_of(sample: Mapping[str, Any]) -> list[StageSpec]:
    """The stages a sample describes (its ``stage{s}_*`` keys, ``s`` = 0, 1, ...).

    Raises
    ------
    ValueError
        Naming the missing or malformed key and the keys that are there.
    """
    if not isinstance(sample, Mapping):
        raise ValueError(f"a sample of the CNN space is a dict like {{'stage0_depth': 2, ...}}, but got "
                         f"{type(sample).__name__}")
    n = 0
    while f"stage{n}_depth" in sample:
        n += 1
    if n == 0:
        raise ValueError(f"a sample of the CNN space needs 'stage0_depth', 'stage0_width', 'stage0_kernel', "
                         f"'stage0_skip', ...; got the keys {sorted(map(str, sample))}")
    unknown = sorted(set(map(str, sample)) - set(labels(n)))
    if unknown:
        raise ValueError(f"a sample of a {n}-stage CNN space has the keys {labels(n)}, but got unknown {unknown}")
    stages = []
    for s in range(n):
        values = {}
        for key in STAGE_KEYS:
            label = f"stage{s}_{key}"
            if label not in sample:
                raise ValueError(f"the sample has no {label!r} (keys: {sorted(map(str, sample))})")
            values[key] = sample[label]
        for key in ("depth", "width", "kernel"):
            value = values[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"stage{s}_{key} must be an integer >= 1, but got {value!r}")
        if values["kernel"] % 2 == 0:
            raise ValueError(f"stage{s}_kernel must be odd, but got {values['kernel']}")
        skip = values["skip"]
        if skip not in ("no", "yes", False, True):
            raise ValueError(f"stage{s}_skip must be 'no' or 'yes', but got {skip!r}")
        stages.append(StageSpec(values["depth"], values["width"], values["kernel"], skip in ("yes", True)))
    return stages


class _Stage(nn.Module):
    def __init__(self, in_channels: int, spec: StageSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for _ in range(spec.depth):
            layers += [nn.Conv2d(channels, spec.width, spec.kernel, padding=spec.kernel // 2, bias=False),
                       nn.BatchNorm2d(spec.width), nn.ReLU(inplace=False)]
            channels = spec.width
        self.body = nn.Sequential(*layers)
        self.shortcut: nn.Module | None = None
        if spec.skip:
            self.shortcut = nn.Identity() if in_channels == spec.width else nn.Sequential(
                nn.Conv2d(in_channels, spec.width, 1, bias=False), nn.BatchNorm2d(spec.width))

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        return out if self.shortcut is None else out + self.shortcut(x)


class ConvStageNetwork(nn.Module):
    """The network of one sample: stages, max pools between them, global average pool, linear classifier."""

    def __init__(self, stages: Sequence[StageSpec], input_shape: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if len(input_shape) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_shape):
            raise ValueError(f"input_shape must be (channels, height, width) of positive integers, but got "
                             f"{tuple(input_shape)!r}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, but got {num_classes!r}")
        modules: list[nn.Module] = []
        channels, size = input_shape[0], min(input_shape[1:])
        for s, spec in enumerate(stages):
            if s > 0 and size >= 2:
                modules.append(nn.MaxPool2d(2))
                size //= 2
            modules.append(_Stage(channels, spec))
            channels = spec.width
        self.features = nn.Sequential(*modules)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x).mean(dim=(2, 3)))


def build_cnn_space_model(sample: dict, input_shape: tuple[int, int, int], num_classes: int) -> nn.Module:
    """The network of a sample of :class:`ConvStageSpace`, freshly initialised; no NNI needed.

    ``sample`` is the frozen sample a trial reports (``{"stage0_depth": 2, "stage0_width": 16, ...}``).
    Weights come from torch's global generator (seed it for a reproducible initialisation).

    Raises
    ------
    ValueError
        For a malformed sample (naming the key and the value) or a bad input shape / class count.
    """
    return ConvStageNetwork(stages_of(sample), tuple(input_shape), num_classes)


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


def train_cnn_sample(model: Any, task: Mapping[str, Any], epochs: int, reporter: Any = None,
                     data: Any = None) -> dict[str, Any]:
    """The evaluator function: train the sampled network with our trainer and schedule; report to NNI.

    ``model`` is the frozen :class:`ConvStageSpace` NNI hands the trial (only its :attr:`sample` is used: the
    network is rebuilt with :func:`build_cnn_space_model` after seeding torch with ``task.seed`` and the trial's
    sequence number, so that a retraining from the reported sample starts from the same kind of
    initialisation). Reports ``{"default": val_acc, "epoch": e}`` per epoch and a final ``{"default":
    val_acc, "params": ..., "sample": {...}, ...}``.
    """
    from nni_nas_ext.trial_code.trial import TaskConfig, train_from_scratch

    from ..evaluator import NniReporter, _log_to_stdout

    _log_to_stdout()
    config = TaskConfig.from_dict(task)
    sample = dict(model.sample)

    def build(data: Any) -> nn.Module:
        if tuple(data.input_shape) != tuple(model.input_shape) or data.num_classes != model.num_classes:
            raise ValueError(f"the space was built for {tuple(model.input_shape)} images and {model.num_classes} "
                             f"classes, but dataset {config.dataset!r} has {tuple(data.input_shape)} and "
                             f"{data.num_classes}")
        return build_cnn_space_model(sample, tuple(data.input_shape), data.num_classes)

    return train_from_scratch(build, config, epochs, reporter if reporter is not None else NniReporter(),
                              sequence=_sequence(), rebuild={"sample": sample}, what=f"sample {sample}", data=data)


def make_cnn_evaluator(task: Mapping[str, Any], epochs: int) -> Any:
    """``FunctionalEvaluator(train_cnn_sample, task=..., epochs=...)`` (task: :class:`TaskConfig` keys)."""
    from nni.nas.evaluator import FunctionalEvaluator

    from nni_nas_ext.trial_code.trial import TaskConfig

    return FunctionalEvaluator(train_cnn_sample, task=TaskConfig.from_dict(task).to_dict(), epochs=int(epochs))
