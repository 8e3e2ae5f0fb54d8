"""The shipped experiment configs are valid NNI configs whose classArgs our tuner accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from nni.experiment.config import ExperimentConfig

from nni_nas_ext.cli import _check_config
from nni_nas_ext.nni.tuners import TUNERS

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = [ROOT / "config.yml", *sorted(p for p in (ROOT / "examples").glob("*.yml")
                                         if yaml.safe_load(p.read_text())["trainingService"]["platform"] == "local")]
REMOTE_EXAMPLE = ROOT / "examples" / "remote-two-hosts.yml"


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


def test_the_remote_example_is_complete_but_for_its_placeholders(tmp_path: Path) -> None:
    """examples/remote-two-hosts.yml with its <...> filled in as a user would: NNI's schema, our tuner's classArgs
    and every remote check (nni_nas_ext/nni/remote.py) pass."""
    from nnictl_harness import VENV_BIN

    from nni_nas_ext.nni.remote import remote_problems

    key = tmp_path / "id_ed25519"
    key.write_text("key\n")
    text = REMOTE_EXAMPLE.read_text()
    assert "<" in text  # placeholders, each named below
    for placeholder, value in {
            "<shared>": str(tmp_path / "shared"), "<this machine's address>": "127.0.0.1",
            "<host 1>": "127.0.0.2", "<host 2>": "127.0.0.3", "<user>": "root", "~/.ssh/id_ed25519": str(key),
            "<the bin folder of the environment with nni-nas-ext on host 1>": str(VENV_BIN),
            "<the bin folder of the environment with nni-nas-ext on host 2>": str(VENV_BIN)}.items():
        assert placeholder in text, placeholder
        text = text.replace(placeholder, value)
    assert "<" not in "".join(line.split("#")[0] for line in text.splitlines())  # (comments may say <...>)
    data = yaml.safe_load(text)
    ExperimentConfig(**data)
    TUNERS[data["tuner"]["name"]][1]().validate(data["tuner"]["classArgs"])
    assert remote_problems(data, data["tuner"]["classArgs"], base=REMOTE_EXAMPLE.parent) == []
