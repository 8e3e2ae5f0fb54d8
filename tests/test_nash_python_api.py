"""The Python-API example (``examples/nash_python_api.py``) run with NNI's sequential engine."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.strategies.middleware import innermost_state

pytestmark = pytest.mark.slow  # whole searches through the sequential engine (issue 13: not in the fast suite)

ROOT = Path(__file__).resolve().parents[1]


def _example():
    spec = importlib.util.spec_from_file_location("nash_python_api", ROOT / "examples" / "nash_python_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory):
    example = _example()
    settings = {**example.SETTINGS, "checkpoint_dir": str(tmp_path_factory.mktemp("checkpoints"))}
    experiment, summary = example.run(settings, sequential=True)
    yield experiment, summary, experiment.strategy
    experiment.stop()  # now, not at interpreter exit when pytest has closed the log streams


def test_search_finishes_and_the_winner_beats_the_seed(search) -> None:
    _, summary, _ = search
    assert summary["status"] == "finished", summary.get("reason")
    assert summary["winner"]["val_acc"] > summary["seed"]["val_acc"]
    assert 0.0 < summary["winner"]["test_acc"] <= 1.0 and 0.0 < summary["seed"]["test_acc"] <= 1.0
    assert len(summary["winner"]["lineage"]) % 3 == 0  # n_morphisms per generation


def test_children_inherit_their_parents_function(search) -> None:
    _, _, strategy = search
    results = strategy.results
    children = [r for r in results.values() if r["role"] == "child"]
    assert children, "no child was trained"
    n_val = 1797 - 359 - 1294  # digits: validation examples (see trial_code.datasets)
    for r in children:
        assert r["preservation_error"] < 1e-5, r
        parent = results[r["parent"]]
        assert abs(r["start_val_acc"] - parent["default"]) <= 1 / n_val + 1e-12, (r["candidate"], parent["candidate"])
    assert strategy.mismatches == []


def test_export_top_models_gives_the_winner_first(search) -> None:
    experiment, summary, _ = search
    top = experiment.export_top_models(top_k=2, formatter="dict")
    assert top[0]["architecture"]["role"] == "final"
    assert top[0]["architecture"]["id"] == summary["winner"]["final_candidate"]


def test_bad_settings_stop_before_anything_runs() -> None:
    example = _example()
    with pytest.raises(ConfigError, match=r"unknown setting 'n_step'; did you mean 'n_steps'"):
        example.run({"n_step": 2})
    with pytest.raises(ConfigError, match=r"'n_neighbours' must be int .*but got 0"):
        example.run({"n_neighbours": 0})


def test_eas_through_the_python_api_with_the_sequential_engine(tmp_path) -> None:
    from nni.nas.experiment import NasExperiment, NasExperimentConfig
    from nni.nas.experiment.config import SequentialEngineConfig

    from nni_nas_ext.nni.search import build_search

    space, evaluator, strategy = build_search("eas", {
        "dataset": "digits", "seed_widths": [4, 8, 8], "episodes": 2, "children_per_episode": 2, "n_wider": 1,
        "n_deeper": 1, "epochs": 1, "epochs_start": 2, "epochs_final": 1, "morphism_mode": "exact",
        "checkpoint_dir": str(tmp_path)})
    config = NasExperimentConfig("sequential", "simplified", "local")
    config.execution_engine = SequentialEngineConfig(continue_on_failure=True)
    experiment = NasExperiment(space, evaluator, strategy, config)
    try:
        experiment.run(wait_completion=True)
        summary = strategy.search.summary()
    finally:
        experiment.stop()
    assert summary["status"] == "finished"
    policy = innermost_state(strategy.search.state_dict())["policy"]  # the search under its middleware
    assert policy["controller"]["updates"] == 2  # one REINFORCE update per episode
    assert all(r["preservation_error"] < 1e-5 for r in strategy.results.values() if r["role"] == "child")
