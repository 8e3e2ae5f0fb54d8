"""nni_nas_ext.nni.remote: what a search on NNI's remote training service needs, each problem named with its remedy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from nni_nas_ext.nni.remote import (
    KEY_VARIABLE, MAX_UPLOAD_FILES, is_remote, key_file_from_trial_command, manager_ip, remote_problems,
    remote_warnings)

COMMAND = f"{KEY_VARIABLE}=/shared/keys/${{NNI_EXP_ID}}.key python -m nni_nas_ext.nni.trial_entry"
ARGS = {"dataset": "digits", "checkpoint_dir": "/shared/checkpoints"}


def remote(tmp_path: Path, **changes: Any) -> dict[str, Any]:
    """A remote experiment config that passes every check (two loopback hosts, as the end-to-end test uses)."""
    code = tmp_path / "trial_code"
    code.mkdir(exist_ok=True)
    (code / "README").write_text("the trials import nni-nas-ext from pythonPath's environment\n")
    key = tmp_path / "id_ed25519"
    key.write_text("a key file (NNI's schema checks that it exists)\n")
    service = {"platform": "remote", "machineList": [
        {"host": "127.0.0.2", "user": "root", "sshKeyFile": str(key)},
        {"host": "127.0.0.3", "user": "root", "sshKeyFile": str(key)}]}
    config: dict[str, Any] = {"trialCommand": COMMAND, "trialCodeDirectory": str(code), "nniManagerIp": "127.0.0.1",
                              "trainingService": service}
    for key, value in changes.items():
        if key in ("reuseMode", "machineList"):
            service[key] = value
        elif value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def test_a_complete_remote_config_passes(tmp_path: Path) -> None:
    config = remote(tmp_path)
    assert is_remote(config) and manager_ip(config) == "127.0.0.1"
    assert remote_problems(config, ARGS) == []


def test_a_local_config_is_not_judged(tmp_path: Path) -> None:
    local = {"trialCommand": ".venv/bin/python -m x", "trainingService": {"platform": "local"}}
    assert not is_remote(local)
    assert remote_problems(local, {}) == [] and remote_warnings(local) == []


def test_nni_manager_ip_may_be_given_in_the_training_service(tmp_path: Path) -> None:
    config = remote(tmp_path, nniManagerIp=None)
    config["trainingService"]["nniManagerIp"] = "127.0.0.1"
    assert manager_ip(config) == "127.0.0.1" and remote_problems(config, ARGS) == []


@pytest.mark.parametrize(("changes", "fragment"), [
    ({"reuseMode": True}, "reuseMode: true runs NNI's legacy trial runner"),
    ({"nniManagerIp": None}, "nniManagerIp must be set to this machine's address"),
    ({"nniManagerIp": "::1"}, "nniManagerIp '::1': NNI 3.0 builds ws://::1:PORT without brackets"),
    ({"nniManagerIp": "192.0.2.77"}, "nniManagerIp '192.0.2.77' is not an address of this machine"),
    ({"machineList": [{"host": "10.1.2.3", "user": "u"}]},
     "nniManagerIp '127.0.0.1' is a loopback address, reachable only from this machine, but machineList host "
     "'10.1.2.3' is another machine"),
    ({"trialCommand": "python -m nni_nas_ext.nni.trial_entry"},
     "the trialCommand must name the experiment's key file on storage every host reaches"),
    ({"trialCommand": f"{KEY_VARIABLE}=keys/k python -m nni_nas_ext.nni.trial_entry"},
     f"{KEY_VARIABLE} in the trialCommand must be an absolute path (only $NNI_EXP_ID may vary), but got 'keys/k'"),
    ({"trialCommand": f"{KEY_VARIABLE}=/s/$HOME.key python -m nni_nas_ext.nni.trial_entry"},
     "must be an absolute path (only $NNI_EXP_ID may vary)"),
    ({"trialCommand": f"{KEY_VARIABLE}=/s/k .venv/bin/python -m nni_nas_ext.nni.trial_entry"},
     "uses a relative interpreter ('.venv/bin/python')"),
])
def test_each_problem_is_named_with_its_remedy(tmp_path: Path, changes: dict[str, Any], fragment: str) -> None:
    problems = remote_problems(remote(tmp_path, **changes), ARGS)
    assert len(problems) == 1 and fragment in problems[0], problems


def test_the_manager_address_is_not_checked_when_asked_not_to(tmp_path: Path) -> None:
    assert remote_problems(remote(tmp_path, nniManagerIp="192.0.2.77"), ARGS, check_address=False) == []


def test_a_hybrid_list_is_refused(tmp_path: Path) -> None:
    config = remote(tmp_path)
    config["trainingService"] = [config["trainingService"], {"platform": "local"}]
    assert remote_problems(config, ARGS) == ["trainingService: a list (hybrid) with platform remote is not "
                                             "supported; use one remote training service"]


@pytest.mark.parametrize("args", [{"dataset": "digits"}, {"checkpoint_dir": "ckpt"}])
def test_the_checkpoint_store_must_be_shared_and_absolute(tmp_path: Path, args: dict[str, Any]) -> None:
    problems = remote_problems(remote(tmp_path), args)
    assert len(problems) == 1 and "checkpoint_dir" in problems[0]
    assert ("exists only on this machine" in problems[0]) == ("checkpoint_dir" not in args)


@pytest.mark.parametrize("key", ["dataset_root", "source_root", "target_root", "seed_checkpoint", "teacher"])
def test_files_every_host_reads_must_be_absolute(tmp_path: Path, key: str) -> None:
    problems = remote_problems(remote(tmp_path), {**ARGS, key: "~/data"})
    assert problems == [f"tuner.classArgs.{key}='~/data': on a remote training service every host reads it, and '~' "
                        "or a relative path differs per host; give an absolute path present on every host"]


def test_the_trial_code_directory_must_be_uploadable(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "is empty; NNI cannot upload an empty folder" in remote_problems(
        remote(tmp_path, trialCodeDirectory=str(empty)), ARGS)[0]
    big = tmp_path / "big"
    big.mkdir()
    for i in range(MAX_UPLOAD_FILES + 1):
        (big / f"f{i}").touch()
    assert f"holds more than {MAX_UPLOAD_FILES:,} files" in remote_problems(
        remote(tmp_path, trialCodeDirectory=str(big)), ARGS)[0]
    relative = remote(tmp_path, trialCodeDirectory="trial_code")
    assert remote_problems(relative, ARGS, base=tmp_path) == []
    assert "is not a folder" in remote_problems(relative, ARGS, base=tmp_path / "elsewhere")[0]


def test_the_key_file_is_read_from_the_command_s_environment_words() -> None:
    assert key_file_from_trial_command(COMMAND) == "/shared/keys/${NNI_EXP_ID}.key"
    assert key_file_from_trial_command(COMMAND, "Ab12cd") == "/shared/keys/Ab12cd.key"
    assert key_file_from_trial_command(f"A=1 {KEY_VARIABLE}=/k/$NNI_EXP_ID python x", "e1") == "/k/e1"
    assert key_file_from_trial_command(f"python x {KEY_VARIABLE}=/k") is None  # an argument, not the environment
    assert key_file_from_trial_command("python 'unclosed") is None


def test_a_trial_asking_for_every_gpu_of_a_host_is_warned_of(tmp_path: Path) -> None:
    config = remote(tmp_path, trialGpuNumber=1)
    assert "never schedules a trial that asks for all of a host's GPUs" in remote_warnings(config)[0]
    for machine in config["trainingService"]["machineList"]:
        machine["maxTrialNumberPerGpu"] = 2
    assert remote_warnings(config) == []
    assert remote_warnings(remote(tmp_path)) == []


def test_preflight_lists_every_remote_problem(tmp_path: Path) -> None:
    import yaml

    from nni_nas_ext.nni.preflight import PreflightError, check_experiment_config

    config = remote(tmp_path, nniManagerIp=None, trialCommand="python -m nni_nas_ext.nni.trial_entry")
    config.update({"searchSpace": {}, "trialConcurrency": 2, "maxTrialNumber": 4,
                   "tuner": {"name": "NashHillClimbing", "classArgs": {"dataset": "digits"}}})
    path = tmp_path / "remote.yml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(PreflightError) as caught:
        check_experiment_config(path, resources=False)
    message = str(caught.value)
    assert message.startswith(f"{path}: this search cannot run on the remote training service:")
    for fragment in ("nniManagerIp must be set", "checkpoint_dir must name an absolute folder",
                     "the trialCommand must name the experiment's key file"):
        assert "\n- " in message and fragment in message, message


def test_the_dispatcher_reads_the_config_nni_hands_it() -> None:
    import base64
    import json

    from nni_nas_ext.nni.remote import dispatcher_experiment_config

    config = {"trainingService": {"platform": "remote"}}
    encoded = base64.b64encode(json.dumps(config).encode()).decode()
    assert dispatcher_experiment_config(["python", "-m", "nni", "--exp_params", encoded]) == config
    assert dispatcher_experiment_config(["python", "-m", "nni", "--exp_params", "not base64!"]) is None
    assert dispatcher_experiment_config(["pytest"]) is None


def test_a_remote_trial_without_a_shared_key_or_store_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    from nni_nas_ext.trial_code.trial import default_checkpoint_dir
    from nni_nas_ext.wire import WireError, experiment_key_path

    env = {"NNI_PLATFORM": "remote", "NNI_OUTPUT_DIR": "/root/nni-experiments/e1/environments/w/trials/t1",
           "NNI_EXP_ID": "e1"}
    with pytest.raises(WireError, match="NNI_PLATFORM=remote.*NNI_NAS_EXT_TRIAL_KEY_FILE is not set"):
        experiment_key_path(env)
    assert experiment_key_path({**env, KEY_VARIABLE: "/shared/k"}) == Path("/shared/k")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match="remote host .* set tuner.classArgs.checkpoint_dir"):
        default_checkpoint_dir()
