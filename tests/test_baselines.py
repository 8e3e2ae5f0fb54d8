"""NNI's own algorithms as benchmark contestants: NetworkMorphism on numpy 2, the nni.nas CNN space, settings.

Fast tests: no nnictl here (``test_baselines_e2e.py`` runs each contestant under nnictl).
"""

from __future__ import annotations

import json
import math
import random
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from _reporters import ListReporter

from nni_nas_ext.core import build_module
from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.nni.baselines import network_morphism_trial
from nni_nas_ext.nni.baselines.cnn_space import ConvStageSpace, train_cnn_sample
from nni_nas_ext.nni.baselines.network_morphism import (
    NetworkMorphismClassArgsValidator, NetworkMorphismTuner, Numpy2BayesianOptimizer, build_network_morphism_model,
    check_fits, count_parameters,
)
from nni_nas_ext.nni.baselines.nni_strategies import build_nni_strategy_search, split_strategy_settings
from nni_nas_ext.nni.tuners import TUNERS, NniStrategyTuner
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.search_spaces.cnn_space import CnnSpaceConfig, build_cnn_space_model, labels, stages_of
from nni_nas_ext.trial_code.datasets import load_dataset
from nni_nas_ext.trial_code.trial import TaskConfig

ROOT = Path(__file__).resolve().parents[1]
BENCHMARK_CONFIGS = sorted((ROOT / "examples" / "benchmark").glob("*.yml"))


@pytest.fixture(scope="module")
def digits():
    task = TaskConfig(dataset="digits", limit=300, batch_size=64)
    return task, load_dataset(task.dataset_spec())


# --------------------------------------------------------------------------------------------------
# NetworkMorphism: NNI's tuner, running on numpy 2
# --------------------------------------------------------------------------------------------------


def _drive(tuner: Any, n: int) -> list[str]:
    """Propose n graphs, reporting a made-up accuracy for each (bigger nets score higher)."""
    graphs = []
    for pid in range(n):
        graph = tuner.generate_parameters(pid)
        params = count_parameters(build_network_morphism_model(graph))
        tuner.receive_trial_result(pid, graph, {"default": 0.5 + 0.01 * pid + 1e-6 * params, "params": params})
        graphs.append(graph)
    return graphs


def _tuner(tmp_path: Path, cls: type = NetworkMorphismTuner, **args: Any) -> Any:
    random.seed(0)
    np.random.seed(0)  # NNI's search draws from the global generators
    base = {"input_width": 8, "input_channel": 1, "n_output_node": 10, "default_model_width": 4, "t_min": 0.85,
            "verbose": False, "path": str(tmp_path)}
    return cls(**{**base, **args})


def test_nni_network_morphism_fails_on_numpy_2_without_the_fix(tmp_path: Path) -> None:
    from nni.algorithms.hpo.networkmorphism_tuner.networkmorphism_tuner import NetworkMorphismTuner as NniTuner

    if tuple(int(v) for v in np.__version__.split(".")[:2]) < (2, 4):
        pytest.skip(f"NNI's tuner fails from numpy 2.4 on; this is numpy {np.__version__}")
    with pytest.raises(TypeError, match="0-dimensional arrays"):
        _drive(_tuner(tmp_path, NniTuner), 4)


def test_the_fixed_tuner_proposes_past_the_second_proposal(tmp_path: Path) -> None:
    tuner = _tuner(tmp_path)
    assert isinstance(tuner.bo, Numpy2BayesianOptimizer)
    graphs = _drive(tuner, 3)
    assert len(tuner.proposal_seconds) == 3 and all(s >= 0 for s in tuner.proposal_seconds)
    assert len(set(graphs)) >= 2  # the optimiser proposed a new graph
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [f"{i}.json" for i in range(3)]
    # the acquisition is NNI's number, as a float
    graph = tuner.load_model_by_id(2)
    value = tuner.bo.acq(graph)
    from nni.algorithms.hpo.networkmorphism_tuner.bayesian import BayesianOptimizer

    raw = BayesianOptimizer.acq(tuner.bo, graph)
    assert isinstance(value, float) and np.shape(raw) == (1,) and value == float(raw[0])


def test_the_same_seeds_give_the_same_proposals(tmp_path: Path) -> None:
    assert _drive(_tuner(tmp_path / "a"), 3) == _drive(_tuner(tmp_path / "b"), 3)
    assert _drive(_tuner(tmp_path / "c"), 3) != _drive(_tuner(tmp_path / "d", default_model_width=6), 3)


@pytest.mark.parametrize("args,expected", [
    ({"input_width": 0}, r"'input_width' must be int in \[1, 4096\], but got 0"),
    ({"task": "common"}, r"'task' must be str, one of \"cv\".*'common'"),
    ({"optimize_mode": "max"}, r"'optimize_mode' must be str, one of \"maximize\", \"minimize\", but got 'max'"),
    ({"input_widht": 28}, r"unknown key 'input_widht'.*did you mean 'input_width'"),
])
def test_network_morphism_class_args_are_checked(args: dict[str, Any], expected: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=expected):
        NetworkMorphismTuner(**args)
    with pytest.raises(ConfigError, match=expected):
        NetworkMorphismClassArgsValidator().validate_class_args(**args)


def test_the_tuner_writes_into_the_experiment_folder_by_default(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NNI_LOG_DIRECTORY", str(tmp_path / "exp" / "log"))
    monkeypatch.chdir(tmp_path)
    tuner = NetworkMorphismTuner(input_width=8, input_channel=1)
    assert Path(tuner.path) == (tmp_path / "exp" / "network_morphism").resolve() and Path(tuner.path).is_dir()
    assert not (tmp_path / "model_path").exists()


def test_graph_rebuilder_and_fit_check(tmp_path: Path) -> None:
    graph = _tuner(tmp_path).generate_parameters(0)
    model = build_network_morphism_model(graph)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    check_fits(graph, (1, 8, 8), 10)
    with pytest.raises(ConfigError, match=r"takes \(1, 8, 8\) images and 10 classes.*input_width=28, input_channel=1"):
        check_fits(graph, (1, 28, 28), 10)
    with pytest.raises(ValueError, match="not a NetworkMorphism graph: it needs the keys"):
        build_network_morphism_model(json.dumps({"nodes": []}))
    with pytest.raises(ValueError, match="is not JSON"):
        build_network_morphism_model("{")


def test_network_morphism_trial_trains_with_our_schedule_and_reports_the_contract(tmp_path: Path, digits) -> None:
    task, data = digits
    graph = _tuner(tmp_path).generate_parameters(0)
    reporter = ListReporter()
    result = network_morphism_trial.train_graph(graph, task, 2, reporter, sequence=5, data=data)
    assert [m["epoch"] for m in reporter.intermediates] == [1, 2]
    assert all(isinstance(m["default"], float) for m in reporter.intermediates)
    (final,) = reporter.finals
    assert final["default"] == result["default"] == reporter.intermediates[-1]["default"]
    assert final["graph"] == graph and final["params"] == count_parameters(build_network_morphism_model(graph))
    assert final["epochs"] == 2 and final["sequence"] == 5
    again = network_morphism_trial.train_graph(graph, task, 2, ListReporter(), sequence=5, data=data)
    assert again["default"] == result["default"]  # seeded by task.seed and the sequence number


def test_network_morphism_trial_command_line() -> None:
    epochs, task = network_morphism_trial.parse_arguments(
        ["--epochs", "3", "--dataset", "digits", "--limit", "null", "--lr", "0.1", "--batch-size", "32"])
    assert epochs == 3 and task.dataset == "digits" and task.limit is None and task.lr == 0.1 and task.batch_size == 32
    with pytest.raises(SystemExit):
        network_morphism_trial.parse_arguments(["--epochs", "1", "--lr", "-1"])
    with pytest.raises(SystemExit):
        network_morphism_trial.parse_arguments(["--epochs", "1", "--checkpoint-dir", "/tmp"])


# --------------------------------------------------------------------------------------------------
# The nni.nas CNN space
# --------------------------------------------------------------------------------------------------


def _sample(widths=(8, 16, 16), depth=1, kernel=3, skip="no") -> dict[str, Any]:
    return {f"stage{s}_{k}": v for s, w in enumerate(widths)
            for k, v in (("depth", depth), ("width", w), ("kernel", kernel), ("skip", skip))}


def test_the_nash_seed_is_a_point_of_the_space() -> None:
    seed = nash_seed((1, 28, 28), 10, (8, 16, 16))
    model = build_cnn_space_model(_sample(), (1, 28, 28), 10)
    assert count_parameters(model) == seed.num_parameters() == count_parameters(build_module(seed))
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_the_space_holds_nni_mutables_with_the_configured_choices() -> None:
    space = ConvStageSpace((1, 8, 8), 10)
    mutables = space.simplify()
    assert list(mutables) == labels(3)
    assert [mutables[f"stage1_{k}"].values for k in ("depth", "width", "kernel", "skip")] == [
        [1, 2, 3], [8, 16, 32, 64], [3, 5], ["no", "yes"]]
    assert math.prod(len(m.values) for m in mutables.values()) == 48 ** 3
    sample = {label: m.random(random_state=np.random.RandomState(1)) for label, m in mutables.items()}
    frozen = space.freeze(sample)
    assert frozen.sample == sample
    assert count_parameters(frozen.network) == count_parameters(build_cnn_space_model(sample, (1, 8, 8), 10))
    with pytest.raises(Exception, match="not found in"):
        space.freeze({**sample, "stage0_width": 12})


def test_sample_shapes_skips_and_pools() -> None:
    deep = build_cnn_space_model(_sample((8, 8, 16), depth=3, kernel=5, skip="yes"), (3, 8, 8), 7)
    assert deep(torch.zeros(2, 3, 8, 8)).shape == (2, 7)
    stages = [m for m in deep.features if not isinstance(m, torch.nn.MaxPool2d)]
    assert isinstance(stages[1].shortcut, torch.nn.Identity)  # 8 -> 8 channels: identity
    assert isinstance(stages[0].shortcut, torch.nn.Sequential)  # 3 -> 8 channels: 1x1 conv + BN
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in deep.features) == 2
    tiny = build_cnn_space_model(_sample((4, 4, 4, 4, 4)), (1, 4, 4), 10)  # 4 -> 2 -> 1: no pool on a 1x1 map
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in tiny.features) == 2
    assert tiny.eval()(torch.zeros(1, 1, 4, 4)).shape == (1, 10)
    assert [s.skip for s in stages_of(_sample(skip="yes"))] == [True, True, True]


@pytest.mark.parametrize("sample,expected", [
    ({}, r"needs 'stage0_depth'"),
    ({**_sample(), "stage0_kernel": 4}, r"stage0_kernel must be odd, but got 4"),
    ({**_sample(), "stage1_width": 0}, r"stage1_width must be an integer >= 1, but got 0"),
    ({**_sample(), "stage2_skip": "maybe"}, r"stage2_skip must be 'no' or 'yes', but got 'maybe'"),
    ({**_sample(), "stage3_width": 8}, r"unknown \['stage3_width'\]"),
    ({k: v for k, v in _sample().items() if k != "stage1_kernel"}, r"the sample has no 'stage1_kernel'"),
])
def test_bad_samples_are_named(sample: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        build_cnn_space_model(sample, (1, 8, 8), 10)


def test_space_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"every kernel must be odd.*\[3, 4\]"):
        CnnSpaceConfig(kernels=(3, 4))
    with pytest.raises(ConfigError, match=r"'skip'.*'maybe'"):
        CnnSpaceConfig(skip=("no", "maybe"))
    with pytest.raises(ConfigError, match=r"'depths'.*unique|'depths'.*twice"):
        ConvStageSpace((1, 8, 8), 10, depths=(1, 1))


def test_the_evaluator_trains_with_our_schedule_and_reports_the_contract(digits) -> None:
    task, data = digits
    space = ConvStageSpace((1, 8, 8), 10, widths=(4, 8))
    sample = _sample((4, 8, 8), depth=2, skip="yes")
    reporter = ListReporter()
    result = train_cnn_sample(space.freeze(sample), task.to_dict(), 2, reporter, data=data)
    assert [m["epoch"] for m in reporter.intermediates] == [1, 2]
    (final,) = reporter.finals
    assert final["sample"] == sample and final["default"] == result["default"]
    assert final["params"] == count_parameters(build_cnn_space_model(sample, (1, 8, 8), 10))
    again = train_cnn_sample(space.freeze(sample), task.to_dict(), 2, ListReporter(), data=data)
    assert again["default"] == result["default"]


def test_the_evaluator_reports_the_size_penalised_reward_and_keeps_the_weights(digits, tmp_path: Path) -> None:
    from nni_nas_ext.nni.baselines.cnn_space import size_penalised_reward, with_size_penalty
    from nni_nas_ext.trial_code.checkpoints import CheckpointStore
    from nni_nas_ext.trial_code.training import evaluate

    task, data = digits
    space = ConvStageSpace((1, 8, 8), 10, widths=(4, 8))
    sample = _sample((4, 8, 8), depth=2, skip="yes")
    plain = train_cnn_sample(space.freeze(sample), task.to_dict(), 1, ListReporter(), data=data)
    assert "val_acc" not in plain and "weights" not in plain  # the defaults: what the trials always reported
    reporter = ListReporter()
    settings = {**task.to_dict(), "checkpoint_dir": str(tmp_path / "ckpt")}
    result = train_cnn_sample(space.freeze(sample), settings, 1, reporter, data=data, reward_size_weight=0.02,
                              keep_weights=True)
    (final,) = reporter.finals
    assert final == result
    assert final["val_acc"] == plain["default"]  # the same training (same seed and sequence)
    assert final["default"] == pytest.approx(plain["default"] - 0.02 * math.log10(final["params"]))
    assert final["reward_size_weight"] == 0.02 and final["sample"] == sample
    assert len(reporter.intermediates) == 1 and "val_acc" not in reporter.intermediates[0]  # per epoch: as before
    path = Path(final["weights"])
    assert path == tmp_path / "ckpt" / "nni-trial-00000.pt"
    kept = CheckpointStore(path.parent).load_weights(path.stem)
    assert kept.meta == {"rebuild": {"sample": sample}, "params": final["params"]}
    model = build_cnn_space_model(sample, (1, 8, 8), 10)
    model.load_state_dict(kept.state_dict)  # strict: every tensor of the network, nothing else
    assert abs(evaluate(model, data.val_x, data.val_y) - final["val_acc"]) <= 0.05
    assert size_penalised_reward(0.9, 100_000, 0.02) == pytest.approx(0.8)
    with pytest.raises(ValueError, match=r"params >= 1 and weight >= 0 must hold, but got params=0"):
        size_penalised_reward(0.9, 0, 0.02)
    failed = {"default": 0.0, "failed": "TrainingDiverged: nan"}
    assert with_size_penalty(failed, 0.02) == failed


# --------------------------------------------------------------------------------------------------
# NNI's strategies: settings and the bridge tuner
# --------------------------------------------------------------------------------------------------


def test_strategy_settings_split_and_build() -> None:
    strategy, space, task = split_strategy_settings(
        {"strategy": "regularized_evolution", "population_size": 6, "sample_size": 2, "widths": [4, 8],
         "dataset": "digits", "seed": 3, "epochs": 1})
    assert (strategy.population_size, strategy.sample_size, strategy.seed, strategy.epochs) == (6, 2, 3, 1)
    assert space.widths == (4, 8) and task.seed == 3
    model_space, evaluator, nni_strategy = build_nni_strategy_search(
        {"strategy": "regularized_evolution", "population_size": 6, "sample_size": 2, "dataset": "digits"})
    from nni.nas.strategy import Random, RegularizedEvolution

    assert isinstance(nni_strategy, RegularizedEvolution) and nni_strategy.population_size == 6
    assert model_space.input_shape == (1, 8, 8) and evaluator.arguments["epochs"] == 2
    assert evaluator.arguments["reward_size_weight"] == 0.0 and evaluator.arguments["keep_weights"] is False
    _, sized, _ = build_nni_strategy_search({"strategy": "regularized_evolution", "dataset": "digits",
                                             "reward_size_weight": 0.02, "keep_weights": True})
    assert sized.arguments["reward_size_weight"] == 0.02 and sized.arguments["keep_weights"] is True
    _, _, random_strategy = build_nni_strategy_search({"strategy": "random", "dataset": "digits", "dedup": False})
    assert isinstance(random_strategy, Random)


@pytest.mark.parametrize("settings,expected", [
    ({}, r"'strategy' is required: one of \['random', 'regularized_evolution'\]"),
    ({"strategy": "evolution"}, r"'strategy'.*'evolution'"),
    ({"strategy": "random", "population_size": 4}, r"\['population_size'\] apply to strategy 'regularized_evolution'"),
    ({"strategy": "regularized_evolution", "population_size": 4, "sample_size": 5},
     r"sample_size <= population_size must hold, but got sample_size=5, population_size=4"),
    ({"strategy": "random", "checkpoint_dir": "/tmp/x"}, r"'checkpoint_dir' is not a setting of NNI's strategies"),
    ({"strategy": "random", "epoch": 2}, r"unknown setting 'epoch'; did you mean 'epochs'"),
    ({"strategy": "random", "kernels": [2]}, r"every kernel must be odd"),
    ({"strategy": "random", "lr": 0}, r"'lr' must be float"),
    ({"strategy": "regularized_evolution", "reward_size_weight": -0.1}, r"'reward_size_weight'"),
])
def test_strategy_settings_errors_name_key_and_value(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        split_strategy_settings(settings)
    with pytest.raises(ConfigError, match=expected):
        TUNERS["NniNasStrategy"][1]().validate(settings)


def test_tuner_registry_names_the_new_contestants() -> None:
    assert TUNERS["NniNasStrategy"][0] is NniStrategyTuner
    assert TUNERS["RandomMorphism"][0].search_name == "random_morphism"


# --------------------------------------------------------------------------------------------------
# The example configs, one per contestant
# --------------------------------------------------------------------------------------------------


def test_there_is_a_benchmark_config_per_contestant() -> None:
    names = {p.stem for p in BENCHMARK_CONFIGS}
    assert names == {"nash", "nash-no-inheritance", "eas", "net2net-random", "random-morphism", "nni-random",
                     "nni-regularized-evolution", "nni-network-morphism"}


@pytest.mark.parametrize("path", BENCHMARK_CONFIGS, ids=lambda p: p.stem)
def test_benchmark_config_is_a_valid_fashion_mnist_experiment(path: Path) -> None:
    from nni.experiment.config import ExperimentConfig

    from nni_nas_ext.cli import _check_config

    data = yaml.safe_load(path.read_text())
    ExperimentConfig(**data)  # NNI's own schema
    assert data["trialConcurrency"] == 2 and data["trainingService"]["platform"] == "local"
    assert (path.parent / data["trialCodeDirectory"]).resolve() == ROOT
    tuner = data["tuner"]
    if "name" in tuner:
        assert tuner["name"] in TUNERS and _check_config(path) is None
        args = tuner["classArgs"]
        TUNERS[tuner["name"]][1]().validate(args)
        assert args["dataset"] == "fashion-mnist" and args["threads"] == 1
    else:
        assert tuner["className"] == "nni_nas_ext.nni.baselines.network_morphism.NetworkMorphismTuner"
        NetworkMorphismClassArgsValidator().validate_class_args(**tuner["classArgs"])
        command = shlex.split(data["trialCommand"])
        assert command[1:3] == ["-m", "nni_nas_ext.nni.baselines.network_morphism_trial"]
        epochs, task = network_morphism_trial.parse_arguments(command[3:])
        assert task.dataset == "fashion-mnist" and task.threads == 1 and epochs >= 1
        assert (tuner["classArgs"]["input_width"], tuner["classArgs"]["input_channel"]) == (28, 1)
