"""N2N learning's configurations: the two-stage policy's (:class:`PolicyConfig`) and the search's (:class:`N2NConfig`).

Ashok, Rhinehart, Beainy, Kitani, *N2N Learning: Network to Network Compression via Policy Gradient Reinforcement
Learning*, ICLR 2018 (arXiv 1709.06030). Values the paper gives (as recalled in ``ALGORITHMS.md``) are named in each
key's doc; the others are ours and say so. :class:`N2NConfig`'s ``policy_*`` keys take their default, range and doc
from :class:`PolicyConfig` (no drift) and :meth:`N2NConfig.policy_config` turns them back into one.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from nni_nas_ext.core.config import Config, ConfigError, option

__all__ = ["N2NConfig", "PolicyConfig", "RATIOS"]

#: The paper's shrink ratios (recalled: 0.1 ... 1.0).
RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class PolicyConfig(Config):
    """Configuration of :class:`~.policy.N2NPolicy` (both stages and their REINFORCE step)."""

    config_name: ClassVar[str] = "n2n policy"

    ratios: tuple[float, ...] = option(
        RATIOS, minimum=0.01, maximum=1.0, non_empty=True, unique=True,
        doc="the width ratios stage 2 chooses from for each remaining layer (paper, recalled: 0.1 ... 1.0)")
    embedding_dim: int = option(
        16, minimum=1, maximum=4096,
        doc="size of the layer-feature embedding fed to both LSTMs (ours; the paper feeds the raw descriptors)")
    hidden_size: int = option(
        32, minimum=1, maximum=4096,
        doc="units of the removal policy's bidirectional LSTM (per direction) and of the shrinkage LSTM (ours)")
    lr: float = option(
        1e-2, minimum=0.0, maximum=1.0,
        doc="learning rate of the policies' Adam optimiser (ours: few episodes fit a CPU budget; 0.003 and 0.03 also "
            "learnt on the synthetic task of the tests)")
    baseline_decay: float = option(
        0.95, minimum=0.0, maximum=1.0,
        doc="weight of an episode's mean reward in the moving-average baseline, b <- b + baseline_decay * "
            "(mean(R) - b) (the form of EAS's code; the paper's decay is not recorded)")
    entropy_weight: float = option(
        1e-4, minimum=0.0, maximum=1.0,
        doc="weight of an entropy bonus in the loss (not in the paper; 0 turns it off)")
    seed: int = option(0, minimum=0, maximum=2**31 - 1, doc="seed of the parameter initialisation")


def _policy_option(name: str) -> Any:
    """A field with the default, range and doc of :class:`PolicyConfig`'s ``name`` (no drift)."""
    field = next(f for f in dataclasses.fields(PolicyConfig) if f.name == name)
    return dataclasses.field(default=field.default, metadata=field.metadata)


@dataclass(frozen=True)
class N2NConfig(Config):
    """Configuration of :class:`~.strategy.N2NSearch` and :class:`~.strategy.N2NRandom` (NNI ``classArgs``).

    The budget defaults are small, for CPU runs. :class:`~.strategy.N2NRandom` ignores the ``policy_*`` keys
    except ``shrink_ratios``, so that one configuration runs both for a comparison.
    """

    config_name: ClassVar[str] = "n2n"

    teacher: Optional[str] = option(
        None, doc="the teacher's weights: the absolute path of an export folder (export/, with architecture.json "
                  "and state_dict.pt) or of a checkpoint of the store (<candidate>.pt); null: the seed network "
                  "trained first (epochs_teacher)")
    epochs_teacher: int = option(
        6, minimum=0, maximum=100_000,
        doc="epochs of the seed network's training when it is the teacher (a given teacher is measured as is)")
    episodes: int = option(
        4, minimum=1, maximum=100_000, doc="episodes: policy updates, each on students_per_episode students")
    students_per_episode: int = option(
        5, minimum=1, maximum=10_000, doc="students sampled per episode, the REINFORCE batch (paper, recalled: 5)")
    removal_episodes: int = option(
        0, minimum=0, maximum=100_000,
        doc="0: both stages decide every student and learn together (ours); k > 0: the paper's schedule (recalled): "
            "the first k episodes remove layers only, the remaining ones shrink the best of those students only")
    epochs_student: int = option(
        2, minimum=1, maximum=100_000,
        doc="epochs of every student's distillation from the teacher (paper: a few epochs)")
    epochs_final: int = option(
        4, minimum=0, maximum=100_000,
        doc="epochs of the best student's final training on train+val, from its own weights (not in the paper)")
    seed: int = option(
        0, minimum=0, maximum=2**31 - 1,
        doc="seed of the strategy's generators (the policies' sampling, random actions) and of the policies' "
            "initialisation")
    shrink_ratios: tuple[float, ...] = _policy_option("ratios")
    policy_embedding_dim: int = _policy_option("embedding_dim")
    policy_hidden_size: int = _policy_option("hidden_size")
    policy_lr: float = _policy_option("lr")
    policy_baseline_decay: float = _policy_option("baseline_decay")
    policy_entropy_weight: float = _policy_option("entropy_weight")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.teacher is not None and not os.path.isabs(self.teacher):
            raise ConfigError(f"n2n: teacher must be an absolute path (trials run in other folders), but got "
                              f"{self.teacher!r}; give its full path, e.g. what `realpath {self.teacher}` prints",
                              key="teacher", value=self.teacher)

        if self.removal_episodes and self.removal_episodes >= self.episodes:
            raise ConfigError(f"n2n: removal_episodes < episodes must hold (episodes are left for the shrinkage stage),"
                              f" but got removal_episodes={self.removal_episodes}, episodes={self.episodes}; use 0 for "
                              "both stages in every episode", key="removal_episodes", value=self.removal_episodes)

    def policy_config(self) -> PolicyConfig:
        """The :class:`PolicyConfig` of the ``policy_*`` keys, ``shrink_ratios`` and ``seed``."""
        return PolicyConfig(ratios=tuple(sorted(self.shrink_ratios)), embedding_dim=self.policy_embedding_dim,
                            hidden_size=self.policy_hidden_size, lr=self.policy_lr,
                            baseline_decay=self.policy_baseline_decay, entropy_weight=self.policy_entropy_weight,
                            seed=self.seed)
