"""The CNN-stage space of the NNI baselines, as plain networks: a sample's stages and their ``torch`` module.

A space comparable to what our morphism searches reach from the NASH seed. The NASH seed is
``conv-pool-conv-pool-conv-gap-fc`` with BatchNorm and ReLU after every conv (Elsken et al., arXiv 1711.04528,
Sec. 5.1; :func:`nni_nas_ext.search_spaces.nash_seed`); its morphisms deepen stages, widen convolutions, widen
kernels and add skip connections. This space offers the same kind of networks as fixed choices::

    input -> stage 0 -> maxpool 2 -> stage 1 -> maxpool 2 -> stage 2 -> global average pool -> fc
    stage s: depth_s x (conv k_s x k_s, width_s -> BN -> ReLU)  [+ shortcut(input of the stage), if skip_s]

A sample has four keys per stage ``s``: ``stage{s}_depth``, ``stage{s}_width``, ``stage{s}_kernel`` and
``stage{s}_skip`` (``"no"``/``"yes"``; the shortcut is the identity when the widths match, else a 1x1 conv + BN,
added after the stage's last ReLU). Pools are placed between stages while the resolution allows (a stage on a
1x1 map gets none). :class:`CnnSpaceConfig` holds the choices of each key (validated),
:func:`build_cnn_space_model` builds the network of any sample; the ``nni.nas`` model space whose mutables draw
the samples is :class:`nni_nas_ext.nni.baselines.cnn_space.ConvStageSpace`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor, nn

from nni_nas_ext.core.config import Config, ConfigError, option

__all__ = [
    "STAGE_KEYS", "CnnSpaceConfig", "ConvStageNetwork", "StageSpec", "build_cnn_space_model", "labels", "stages_of",
]

#: The keys of one stage in a sample (the labels of its ``nni.nas`` mutables, after ``stage{s}_``), in order.
STAGE_KEYS = ("depth", "width", "kernel", "skip")


def labels(n_stages: int) -> list[str]:
    """The keys of a sample (the labels of a space's mutables): ``stage{s}_{depth|width|kernel|skip}`` per stage."""
    return [f"stage{s}_{key}" for s in range(n_stages) for key in STAGE_KEYS]


@dataclass(frozen=True)
class CnnSpaceConfig(Config):
    """The choices of the space: per stage, its depths, widths, kernels and shortcut options (the ``classArgs``
    of the NNI-strategy contestant; the ``nni.nas`` space is
    :class:`nni_nas_ext.nni.baselines.cnn_space.ConvStageSpace`)."""

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
