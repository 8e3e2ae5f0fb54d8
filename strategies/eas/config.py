"""The configurations of EAS: the meta-controller's (:class:`ControllerConfig`) and the search's (:class:`EasConfig`).

Cai, Chen, Zhang, Yu, Wang, *Efficient Architecture Search by Network Transformation*, AAAI 2018
(arXiv 1707.04873), Sec. 4 and the authors' code (github.com/han-cai/EAS). Each key's doc gives the paper's
value; the search's budget defaults are small, for CPU runs. :class:`EasConfig`'s ``controller_*`` keys take
their default, range and doc from :class:`ControllerConfig` (no drift) and :meth:`EasConfig.controller_config`
turns them back into one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from nni_nas_ext.core.config import Config, ConfigError, option
from nni_nas_ext.core.morphisms import WIDTHS

__all__ = ["ControllerConfig", "EasConfig", "require_odd_kernels"]


def require_odd_kernels(config_name: str, kernels: Sequence[int]) -> None:
    """Net2Deeper kernels must be odd: an identity kernel needs a centre."""
    even = [k for k in kernels if k % 2 == 0]
    if even:
        raise ConfigError(f"{config_name}: 'kernels' must hold odd sizes only (an identity kernel needs a "
                          f"centre), but got {list(kernels)} with even {even}; use e.g. [1, 3, 5]",
                          key="kernels", value=list(kernels))


@dataclass(frozen=True)
class ControllerConfig(Config):
    """Configuration of :class:`~.controller.EasController`.

    The defaults are the paper's values (Cai et al. 2018, Sec. 4, and the authors' code).
    """

    config_name: ClassVar[str] = "eas controller"

    embedding_dim: int = option(
        16, minimum=1, maximum=4096,
        doc="size of the layer-token embedding and of the deeper decoder's inputs (paper: 16)")
    hidden_size: int = option(
        50, minimum=1, maximum=4096,
        doc="units per direction of the one-layer bidirectional LSTM encoder; the deeper decoder has twice "
            "as many (paper: 50)")
    kernels: tuple[int, ...] = option(
        (1, 3, 5), minimum=1, maximum=31, non_empty=True, unique=True,
        doc="odd kernel sizes the Net2Deeper actor chooses from (paper: 1, 3, 5)")
    lr: float = option(
        2e-3, minimum=0.0, maximum=1.0,
        doc="learning rate of the controller's Adam optimiser (paper: 0.002)")
    baseline_decay: float = option(
        0.95, minimum=0.0, maximum=1.0,
        doc="weight of an episode's mean reward in the baseline, b <- b + baseline_decay * (mean(R) - b) "
            "(paper code: 0.95)")
    entropy_weight: float = option(
        1e-5, minimum=0.0, maximum=1.0,
        doc="weight of the entropy bonus in the controller's loss (paper: 1e-5)")
    vocab_size: int = option(
        256, minimum=1, maximum=1_000_000,
        doc="buckets layer tokens are hashed into (not in the paper, which enumerates its tokens)")
    seed: int = option(
        0, minimum=0, maximum=2**31 - 1,
        doc="seed of the parameter initialisation (sampling uses the generator given to each call)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_odd_kernels(self.config_name, self.kernels)


def _controller_option(name: str) -> Any:
    """A field with the default, range and doc of :class:`ControllerConfig`'s ``name`` (no drift)."""
    field = next(f for f in dataclasses.fields(ControllerConfig) if f.name == name)
    return dataclasses.field(default=field.default, metadata=field.metadata)


@dataclass(frozen=True)
class EasConfig(Config):
    """Configuration of :class:`~.strategy.EasSearch` and :class:`~.strategy.RandomNet2Net` (NNI ``classArgs``).

    The defaults of the search budget are small, for CPU runs; the paper's values are in each key's doc.
    The ``controller_*`` keys configure :class:`~.controller.EasController` (their defaults are the
    paper's); :class:`~.strategy.RandomNet2Net` ignores them.
    """

    config_name: ClassVar[str] = "eas"

    episodes: int = option(
        3, minimum=1, maximum=100_000,
        doc="episodes; each samples children_per_episode children of the best net so far (the paper's "
            "count is not recorded in ALGORITHMS.md)")
    children_per_episode: int = option(
        3, minimum=1, maximum=10_000,
        doc="children sampled per episode, the REINFORCE batch (paper: 10)")
    n_deeper: int = option(
        2, minimum=0, maximum=1_000,
        doc="Net2Deeper actions per child (paper: 5)")
    n_wider: int = option(
        2, minimum=0, maximum=1_000,
        doc="Net2Wider actions per child (paper: 4)")
    wider_first: bool = option(
        True,
        doc="apply the Net2Wider actions before the Net2Deeper ones, as the authors' convnet script does; "
            "false: deeper first")
    epochs: int = option(
        2, minimum=0, maximum=100_000,
        doc="epochs of every child's training from its start net's weights (paper: 20)")
    epochs_start: int = option(
        3, minimum=0, maximum=100_000,
        doc="epochs of the seed (start net) training before the search (the paper starts from a trained net)")
    epochs_final: int = option(
        4, minimum=0, maximum=100_000,
        doc="epochs of the final training on train+val of the winner and of the seed")
    start: str = option(
        "best", choices=("best", "seed"),
        doc="the start net of every episode: 'best', the best net so far (paper); 'seed', always the trained seed, "
            "so that every episode's rewards are comparable and the controller's learning can be measured (a "
            "deviation; the final phase still trains the best net found)")
    max_width: int = option(
        256, minimum=WIDTHS[0], maximum=WIDTHS[-1],
        doc=f"layers grow along the width ladder {list(WIDTHS)} up to this; wider layers are masked "
            f"(paper: ladder 16, 32, 64, 96, 128, 192, 256, ...)")
    kernels: tuple[int, ...] = _controller_option("kernels")
    morphism_mode: str = option(
        "noise", choices=("exact", "replicate", "noise"),
        doc="'noise': EAS' symmetry-breaking noise N(0, (1e-2 std W)^2) on new units of a widening "
            "(paper); 'exact': exact and symmetry-breaking (new units: random in, zero out); 'replicate': "
            "Net2Net's exact copies")
    seed: int = option(
        0, minimum=0, maximum=2**31 - 1,
        doc="seed of the strategy's generators (widening mappings, controller sampling, random actions) "
            "and of the controller's initialisation")
    controller_embedding_dim: int = _controller_option("embedding_dim")
    controller_hidden_size: int = _controller_option("hidden_size")
    controller_lr: float = _controller_option("lr")
    controller_baseline_decay: float = _controller_option("baseline_decay")
    controller_entropy_weight: float = _controller_option("entropy_weight")
    controller_vocab_size: int = _controller_option("vocab_size")

    def __post_init__(self) -> None:
        super().__post_init__()
        require_odd_kernels(self.config_name, self.kernels)
        if self.n_deeper + self.n_wider < 1:
            raise ConfigError(f"{self.config_name}: n_deeper + n_wider >= 1 must hold (a child needs an action), "
                              f"but got n_deeper={self.n_deeper}, n_wider={self.n_wider}", key="n_deeper",
                              value=self.n_deeper)

    def controller_config(self) -> ControllerConfig:
        """The :class:`ControllerConfig` of the ``controller_*`` keys, ``kernels`` and ``seed``."""
        return ControllerConfig(
            embedding_dim=self.controller_embedding_dim, hidden_size=self.controller_hidden_size,
            kernels=self.kernels, lr=self.controller_lr, baseline_decay=self.controller_baseline_decay,
            entropy_weight=self.controller_entropy_weight, vocab_size=self.controller_vocab_size, seed=self.seed)
