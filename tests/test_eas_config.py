"""EAS's settings (:class:`EasConfig`): validation messages, defaults and the controller's config; the registry.

The registry entries ``eas`` and ``net2net_random`` build strategies that follow the strategy protocol.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from _eas_helpers import SEED_ARCH, SMALL, TINY
from nni_nas_ext.core.config import ConfigError, describe_config, parse_config
from nni_nas_ext.core.morphisms import WIDTHS
from nni_nas_ext.strategies import SearchStrategy
from nni_nas_ext.strategies.eas import ControllerConfig, EasConfig, RandomNet2Net


# --------------------------------------------------------------------------------------------------
# Configuration and registry
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mapping", "message"), [
    ({"n_deeper": 0, "n_wider": 0}, r"n_deeper \+ n_wider >= 1 must hold .* n_deeper=0, n_wider=0"),
    ({"kernels": [1, 2]}, r"'kernels' must hold odd sizes only .* even \[2\]"),
    ({"children_per_episode": 0}, r"'children_per_episode' must be int in \[1, 10000\], but got 0"),
    ({"max_width": 2}, rf"'max_width' must be int in \[{WIDTHS[0]}, {WIDTHS[-1]}\], but got 2"),
    ({"controller_lr": 2.0}, r"'controller_lr' must be float in \[0, 1\], but got 2.0"),
    ({"morphism_mode": "noisy"}, r"did you mean 'noise'"),
    ({"controler_lr": 0.1}, r"unknown key 'controler_lr'; did you mean 'controller_lr'"),
])
def test_config_validation_messages(mapping: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(EasConfig, mapping)


def test_config_defaults_and_the_controller_config() -> None:
    config = EasConfig()
    controller = config.controller_config()
    assert controller == ControllerConfig(kernels=(1, 3, 5), seed=0)  # the paper's controller
    custom = EasConfig(controller_hidden_size=8, controller_lr=0.01, kernels=(3,), seed=4).controller_config()
    assert (custom.hidden_size, custom.lr, custom.kernels, custom.seed) == (8, 0.01, (3,), 4)
    docs = {row.name: row.doc for row in describe_config(EasConfig)}
    assert "paper: 10" in docs["children_per_episode"] and "paper: 0.002" in docs["controller_lr"]


def test_config_keys_do_not_collide_with_the_trial_and_seed_settings() -> None:
    from nni_nas_ext.nni.search import SeedConfig
    from nni_nas_ext.trial_code.trial import TaskConfig

    keys = {f.name for f in dataclasses.fields(EasConfig)}
    others = {f.name for cls in (TaskConfig, SeedConfig) for f in dataclasses.fields(cls)}
    assert keys & others == {"seed"}  # shared on purpose, as NASH's


def test_registry_entries_follow_the_strategy_protocol() -> None:
    from nni_nas_ext.strategies import list_strategies, strategy_classes

    eas_strategies = {k: strategy_classes(k) for k in list_strategies() if k in ("eas", "net2net_random")}
    assert len(eas_strategies) == 2
    for name, (config_cls, strategy_cls) in eas_strategies.items():
        assert config_cls is EasConfig
        strategy = strategy_cls(SEED_ARCH, parse_config(config_cls, {**SMALL, **TINY}))
        assert isinstance(strategy, SearchStrategy)
        assert strategy.summary()["strategy"] == name
        assert json.loads(json.dumps(strategy.state_dict()))["format"] == name
    with pytest.raises(TypeError, match="seed_architecture must be an Architecture"):
        RandomNet2Net("nash")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="config must be an EasConfig or a mapping"):
        RandomNet2Net(SEED_ARCH, 3)  # type: ignore[arg-type]
