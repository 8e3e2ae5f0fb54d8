"""The shipped experiment configs are valid NNI configs whose classArgs our tuner accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from nni.experiment.config import ExperimentConfig

from nni_nas_ext.cli import _check_config
from nni_nas_ext.nni.tuners import TUNERS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "config.yml", *sorted((ROOT / "examples").glob("*.yml"))]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_is_an_nni_config_naming_our_tuner(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    ExperimentConfig(**data)  # NNI's own schema (raises on an unknown or mistyped field)
    assert data["tuner"]["name"] in TUNERS
    TUNERS[data["tuner"]["name"]][1]().validate(data["tuner"]["classArgs"])
    assert data["trialConcurrency"] >= 2 and data["trainingService"]["platform"] == "local"
    assert _check_config(path) is None


def test_every_example_config_is_checked() -> None:
    assert len(CONFIGS) >= 4 and all(p.is_file() for p in CONFIGS)


def test_a_bad_class_arg_is_refused_before_nnictl_runs(tmp_path: Path) -> None:
    data = yaml.safe_load(CONFIGS[0].read_text())
    data["tuner"]["classArgs"]["n_neighbours"] = 1
    bad = tmp_path / "config.yml"
    bad.write_text(yaml.safe_dump(data))
    problem = _check_config(bad)
    assert problem is not None and "'n_neighbours'" in problem and "but got 1" in problem
