"""``python -m nni_nas_ext run`` refuses bad experiment configs before nnictl starts, and reports a late failure.

The table: each bad config (a valid one with one thing broken) is refused by ``run`` with exit code 2 and a
message on stderr naming the key, the value and what is allowed, while ``nnictl`` is never invoked (any
subprocess fails the test). The end-to-end test: a dataset that disappears after the pre-check makes the
dispatcher fail; ``run`` prints the dispatcher's own reason, stops the experiment and exits 1.
"""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nni_nas_ext import cli

ROOT = Path(__file__).resolve().parents[1]
SYSTEM_MESSAGE = "must not be a system folder"

Edit = Callable[[dict[str, Any], Path], Any]


def _nash_config(tmp: Path) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "config.yml").read_text())
    data["trialCodeDirectory"] = str(ROOT)
    data["experimentWorkingDirectory"] = str(tmp / "nni-experiments")
    data["tuner"]["classArgs"]["checkpoint_dir"] = str(tmp / "checkpoints")
    return data


def _fna_config(tmp: Path) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "examples" / "fna-tiny.yml").read_text())
    data["trialCodeDirectory"] = str(ROOT)
    data["experimentWorkingDirectory"] = str(tmp / "nni-experiments")
    data["tuner"]["classArgs"]["checkpoint_dir"] = str(tmp / "checkpoints")
    return data


def _args(**changes: Any) -> Edit:
    """An edit that sets classArgs keys (a value that is a callable gets the temporary folder)."""
    def edit(data: dict[str, Any], tmp: Path) -> None:
        for key, value in changes.items():
            data["tuner"]["classArgs"][key] = value(tmp) if callable(value) else value
    return edit


def _set(path: tuple[str, ...], value: Any) -> Edit:
    def edit(data: dict[str, Any], tmp: Path) -> None:
        node = data
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return edit


def _raw(text: str) -> Edit:
    """The whole file is this text."""
    return lambda data, tmp: text


def _tuner(tuner: dict[str, Any]) -> Edit:
    def edit(data: dict[str, Any], tmp: Path) -> None:
        tuner_ = dict(tuner)
        if "classArgs" not in tuner_:
            tuner_["classArgs"] = data["tuner"]["classArgs"]
        data["tuner"] = tuner_
    return edit


def _a_file(tmp: Path) -> str:
    path = tmp / "not-a-folder.txt"
    path.write_text("x")
    return str(path)


def _under_a_file(tmp: Path) -> str:
    return str(Path(_a_file(tmp)) / "checkpoints")


def _link_to_sys(tmp: Path) -> str:
    link = tmp / "looks-harmless"
    link.symlink_to("/sys")
    return str(link)


def _empty_folder(tmp: Path) -> str:
    folder = tmp / "no-images"
    folder.mkdir()
    return str(folder)


#: (id, base config, edit, fragments the message must contain: the key, the value, what is allowed)
CASES: list[tuple[str, str, Edit, tuple[str, ...]]] = [
    # ---- the file ---------------------------------------------------------------------------------------
    ("yaml-unclosed-flow", "nash", _raw("tuner: {name: NashHillClimbing\n  classArgs: [\n"),
     ("not valid YAML", "line 2", "fix the syntax")),
    ("yaml-tab-indent", "nash", _raw("tuner:\n\tname: NashHillClimbing\n"), ("not valid YAML", "line 2")),
    ("yaml-bad-colon", "nash", _raw("experimentName: a: b\n"), ("not valid YAML", "line 1")),
    ("top-level-list", "nash", _raw("- 1\n- 2\n"), ("top level must be a mapping", "[1, 2]", "(list)")),
    ("top-level-text", "nash", _raw("just text\n"), ("top level must be a mapping", "'just text'")),
    ("empty-file", "nash", _raw(""), ("top level must be a mapping", "None")),
    ("nni-field-typo", "nash", _set(("trialConcurency",), 2),
     ("'trialConcurency'", "did you mean 'trialConcurrency'", "not a field of NNI's experiment config")),
    ("nni-field-type", "nash", _set(("trialConcurrency",), "two"),
     ("not a valid NNI experiment config", "trial_concurrency", "'two'", "int")),
    # ---- the tuner and the shape of classArgs -----------------------------------------------------------
    ("tuner-a-string", "nash", _set(("tuner",), "NashHillClimbing"),
     ("'tuner' must be a mapping", "'NashHillClimbing'", "(str)")),
    ("tuner-name-typo", "nash", _tuner({"name": "NashHillClimbin"}),
     ("tuner.name 'NashHillClimbin'", "did you mean 'NashHillClimbing'", "'RandomMorphism'")),
    ("tuner-class-typo", "nash", _tuner({"className": "nni_nas_ext.nni.tuners.NashTunr", "codeDirectory": "."}),
     ("tuner.className 'nni_nas_ext.nni.tuners.NashTunr'", "did you mean 'nni_nas_ext.nni.tuners.NashTuner'")),
    ("classargs-list", "nash", _set(("tuner", "classArgs"), [1, 2]),
     ("'tuner.classArgs' must be a mapping", "but got [1, 2] (list)")),
    ("classargs-string", "nash", _set(("tuner", "classArgs"), "n_steps=2"),
     ("'tuner.classArgs' must be a mapping", "but got 'n_steps=2' (str)", "'key: value'")),
    ("classargs-number", "nash", _set(("tuner", "classArgs"), 5), ("'tuner.classArgs' must be a mapping", "5 (int)")),
    # ---- keys, types, ranges ----------------------------------------------------------------------------
    ("unknown-key-typo", "nash", _args(n_step=2), ("'n_step'", "did you mean 'n_steps'")),
    ("unknown-key", "nash", _args(frobnicate=1), ("unknown setting 'frobnicate'", "Known settings are")),
    ("int-key", "nash", _set(("tuner", "classArgs", 1), 2), ("unknown setting 1", "Known settings are")),
    ("n_steps-zero", "nash", _args(n_steps=0), ("'n_steps' must be int", "but got 0", "out of range")),
    ("n_steps-string", "nash", _args(n_steps="4"), ("'n_steps' must be int", "but got '4' of type str")),
    ("n_steps-bool", "nash", _args(n_steps=True), ("'n_steps' must be int", "a bool is not an int")),
    ("n_steps-float", "nash", _args(n_steps=2.5), ("'n_steps' must be int", "but got 2.5")),
    ("n_neighbours-huge", "nash", _args(n_neighbours=10**9), ("'n_neighbours' must be int in [", "1000000000")),
    ("lr-nan", "nash", _args(lr=math.nan), ("'lr' must be float in [1e-06, 10]", "nan", "not finite")),
    ("lr-inf", "nash", _args(lr=math.inf), ("'lr' must be float in [1e-06, 10]", "inf", "not finite")),
    ("lr-negative", "nash", _args(lr=-0.1), ("'lr' must be float in [1e-06, 10]", "but got -0.1")),
    ("lr_min-above-lr", "nash", _args(lr_min=0.1, lr=0.05), ("lr_min <= lr must hold", "lr_min=0.1, lr=0.05")),
    ("val_fraction-one", "nash", _args(val_fraction=1.0), ("'val_fraction' must be float in [0.01, 0.5]", "1.0")),
    ("batch_size-one", "nash", _args(batch_size=1), ("'batch_size' must be int in [2, 65536]", "but got 1")),
    ("threads-negative", "nash", _args(threads=-1), ("'threads' must be int in [0, 1024]", "but got -1")),
    ("device-gpu", "nash", _args(device="gpu"), ("'device' must be str", "'gpu'", "one of")),
    ("seed-negative", "nash", _args(seed=-1), ("'seed' must be int in [0, 2147483647]", "but got -1")),
    ("seed-2**31", "nash", _args(seed=2**31), ("'seed' must be int in [0, 2147483647]", "2147483648")),
    ("seed-null", "nash", _args(seed=None), ("'seed' must be int", "but got None")),
    ("morphisms-empty", "nash", _args(morphisms=[]), ("'morphisms' must be list[str]", "non-empty", "it is empty")),
    ("morphisms-typo", "nash", _args(morphisms=["deepen", "widden"]),
     ("'morphisms'", "'widden'", "did you mean 'widen'")),
    ("morphisms-not-a-list", "nash", _args(morphisms="deepen"), ("'morphisms' must be list[str]", "give a list")),
    ("morphism_mode-typo", "nash", _args(morphism_mode="exactly"), ("'morphism_mode'", "'exactly'", "one of")),
    ("seed_widths-two", "nash", _args(seed_widths=[4, 8]), ("'seed_widths' must have 3 items", "[4, 8]")),
    ("seed_widths-zero", "nash", _args(seed_widths=[0, 8, 8]), ("'seed_widths'", "item 0 is 0", "[1, 4096]")),
    # ---- the dataset --------------------------------------------------------------------------------------
    ("dataset-unknown", "nash", _args(dataset="cifar100"), ("'dataset'", "'cifar100'", "one of")),
    ("dataset-typo", "nash", _args(dataset="digit"), ("'dataset'", "'digit'", "did you mean 'digits'")),
    ("dataset-missing", "nash", _args(dataset="cifar10", dataset_root="/nonexistent"),
     ("dataset='cifar10'", "dataset_root='/nonexistent'", "DatasetError", "remedy")),
    ("dataset-empty-folder", "nash", _args(dataset="imagefolder", dataset_root=_empty_folder),
     ("dataset='imagefolder'", "no-images", "DatasetError")),
    ("dataset-needs-root", "nash", _args(dataset="cifar10"),
     ("dataset='cifar10' with dataset_root=None", "needs root", "dataset_root")),
    ("dataset-takes-no-root", "nash", _args(dataset_root="/tmp"),
     ("dataset='digits' with dataset_root='/tmp'", "takes no root")),
    # ---- checkpoint_dir -----------------------------------------------------------------------------------
    ("checkpoint-relative", "nash", _args(checkpoint_dir="checkpoints"),
     ("checkpoint_dir must be an absolute path", "'checkpoints'", "e.g.")),
    ("checkpoint-a-file", "nash", _args(checkpoint_dir=_a_file),
     ("checkpoint_dir must be a folder", "not-a-folder.txt", "which is a file")),
    ("checkpoint-under-a-file", "nash", _args(checkpoint_dir=_under_a_file),
     ("checkpoint_dir must be a folder that can be created", "not-a-folder.txt", "is not a folder")),
    ("checkpoint-root", "nash", _args(checkpoint_dir="/"), ("checkpoint_dir " + SYSTEM_MESSAGE, "but got '/'")),
    ("checkpoint-proc", "nash", _args(checkpoint_dir="/proc/self"),
     ("checkpoint_dir " + SYSTEM_MESSAGE, "'/proc/self'", "it lies in /proc")),
    ("checkpoint-etc", "nash", _args(checkpoint_dir="/etc/"), ("checkpoint_dir " + SYSTEM_MESSAGE, "'/etc/'")),
    ("checkpoint-dotdot", "nash", _args(checkpoint_dir="/usr/local/.."),
     ("checkpoint_dir " + SYSTEM_MESSAGE, "'/usr/local/..'")),
    ("checkpoint-link-to-sys", "nash", _args(checkpoint_dir=_link_to_sys),
     ("checkpoint_dir " + SYSTEM_MESSAGE, "looks-harmless", "leads to '/sys'")),
    ("checkpoint-a-number", "nash", _args(checkpoint_dir=5), ("'checkpoint_dir' must be str or null", "but got 5")),
    # ---- the other searches -------------------------------------------------------------------------------
    ("eas-seed-2**31", "nash", _tuner({"name": "EAS", "classArgs": {"seed": 2**31, "dataset": "digits"}}),
     ("'seed' must be int in [0, 2147483647]", "2147483648")),
    ("random-morphism-seed-negative", "nash", _tuner({"name": "RandomMorphism", "classArgs": {"seed": -5}}),
     ("'seed' must be int in [0, 2147483647]", "but got -5")),
    ("nni-strategy-unknown", "nash", _tuner({"name": "NniNasStrategy", "classArgs": {"strategy": "tpe"}}),
     ("'strategy'", "'tpe'", "one of")),
    ("fna-kernels-even", "fna", _args(kernels=[3, 4]), ("kernels must be odd", "4", "[3, 4]")),
    ("fna-kernels-empty", "fna", _args(kernels=[]), ("'kernels'", "it is empty")),
    ("fna-warmup", "fna", _args(warmup_epochs=5, epochs_adapt=2),
     ("warmup_epochs < epochs_adapt must hold", "warmup_epochs=5, epochs_adapt=2")),
    ("fna-unknown-key", "fna", _args(source_datset="digits"), ("'source_datset'", "did you mean 'source_dataset'")),
    ("fna-width-nan", "fna", _args(width_mult=math.nan), ("'width_mult' must be float in [0.05, 4]", "not finite")),
    ("fna-seed-negative", "fna", _args(seed=-1), ("'seed' must be int in [0, 2147483647]", "but got -1")),
    ("fna-source-missing", "fna", _args(source_dataset="cifar10", source_root="/nonexistent"),
     ("source_dataset='cifar10'", "source_root='/nonexistent'", "DatasetError")),
    ("fna-target-missing", "fna", _args(target_dataset="imagefolder", target_root=_empty_folder),
     ("target_dataset='imagefolder'", "no-images", "DatasetError")),
    ("fna-seed-checkpoint-missing", "fna", _args(seed_checkpoint="/nonexistent/seed.pt"),
     ("seed_checkpoint='/nonexistent/seed.pt'", "is not a file")),
    ("fna-checkpoint-proc", "fna", _args(checkpoint_dir="/proc"), ("checkpoint_dir " + SYSTEM_MESSAGE, "'/proc'")),
    ("fna-checkpoint-a-file", "fna", _args(checkpoint_dir=_a_file), ("checkpoint_dir must be a folder", "a file")),
]


@pytest.fixture
def no_nnictl(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any subprocess (nnictl create above all) fails the test."""
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"a subprocess was started before the config was refused: {args} {kwargs}")

    monkeypatch.setattr(subprocess, "run", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def _write(tmp: Path, base: str, edit: Edit | None = None) -> Path:
    data = _nash_config(tmp) if base == "nash" else _fna_config(tmp)
    text = edit(data, tmp) if edit is not None else None
    path = tmp / "config.yml"
    path.write_text(text if isinstance(text, str) else yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _run(path: Path, *extra: str) -> int:
    return cli.main(["run", "--config", str(path), "--port", "1", *extra])


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 40 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize(("base", "edit", "fragments"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_config_is_refused_before_nnictl(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_nnictl: None,
                                            base: str, edit: Edit, fragments: tuple[str, ...]) -> None:
    code = _run(_write(tmp_path, base, edit))
    captured = capsys.readouterr()
    assert code == 2, captured
    message = captured.err
    assert message.startswith(f"error: {tmp_path / 'config.yml'}"), message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert "Traceback" not in message and "$ " not in captured.out  # nothing was started


@pytest.mark.parametrize("base", ["nash", "fna"])
def test_the_valid_base_configs_pass_the_pre_check(tmp_path: Path, base: str) -> None:
    assert cli._check_config(_write(tmp_path, base), resources=True) is None


@pytest.mark.parametrize("host", ["", "a b", "999.1.1.1", "host_name", "-x", "1.2.3", "x" * 64])
def test_a_bad_host_is_refused_before_nnictl(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_nnictl: None,
                                            host: str) -> None:
    assert _run(_write(tmp_path, "nash"), f"--host={host}") == 2
    err = capsys.readouterr().err
    assert "--host must be an IP address" in err and repr(host) in err, err


@pytest.mark.parametrize(("host", "connect"), [("127.0.0.1", "127.0.0.1"), ("0.0.0.0", "127.0.0.1"),
                                                ("localhost", "localhost"), ("::1", "::1")])
def test_run_passes_the_host_to_nnictl(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch, host: str, connect: str) -> None:
    calls: list[tuple[list[str], dict[str, str]]] = []

    def fake_run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        calls.append((cmd, kwargs["env"]))
        return subprocess.CompletedProcess(cmd, 1, "", "refused by the test")

    monkeypatch.setattr(subprocess, "run", fake_run)
    assert cli._connect_host(host) == connect
    assert _run(_write(tmp_path, "nash"), f"--host={host}") == 1  # the fake nnictl create failed
    (cmd, env), = calls
    assert cmd[1:3] == ["create", "--config"] and env["NNI_NAS_EXT_HOST"] == host
    assert "nnictl create failed" in capsys.readouterr().err


def test_the_default_host_is_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(cli, "_cmd_run", lambda args: seen.append(args) or 0)
    cli.main(["run"])
    assert seen[0].host == "127.0.0.1" and seen[0].keep_on_error is False


# ---- the reason of a failed experiment, from its logs -------------------------------------------------------


def test_the_dispatcher_reason_comes_from_nnictl_stderr_first(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    (log / "nnictl_stderr.log").write_text(
        "some warning\nERROR: NashTuner: the search could not be built: DatasetError: gone\nlooked at:\n  /x\n"
        "remedy: put it back\nError: Dispatcher stream error, tuner may have crashed.\n    at EventEmitter\n")
    (log / "dispatcher.log").write_text("[2024-01-01 00:00:00] ERROR (bridge) other\n")
    reason = ["ERROR: NashTuner: the search could not be built: DatasetError: gone", "looked at:", "  /x",
              "remedy: put it back"]
    assert cli._dispatcher_reason(log, 12) == reason  # the dispatcher's message, without NNI's stack
    assert cli._dispatcher_reason(log, 2) == reason[:2]


def test_the_dispatcher_reason_falls_back_to_the_first_error_record(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.mkdir()
    (log / "dispatcher.log").write_text(
        "[2024-01-01 00:00:00] INFO (bridge) started\n"
        "[2024-01-01 00:00:01] ERROR (bridge) the search could not be built: DatasetError: gone\n"
        "Traceback (most recent call last):\n  File x\n"
        "[2024-01-01 00:00:02] INFO (bridge) bye\n")
    assert cli._dispatcher_reason(log, 12) == [
        "[2024-01-01 00:00:01] ERROR (bridge) the search could not be built: DatasetError: gone",
        "Traceback (most recent call last):", "  File x"]
    assert cli._dispatcher_reason(tmp_path / "absent", 12) == []


# ---- end to end: a dataset that disappears after the pre-check ------------------------------------------------


def _imagefolder(root: Path, per_class: int = 6) -> None:
    """A tiny flat imagefolder dataset: two classes of 8x8 grey PNGs."""
    from PIL import Image

    for label, shade in (("dark", 40), ("light", 210)):
        folder = root / label
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (8, 8), color=shade + i).save(folder / f"{i}.png")


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.e2e
def test_a_dataset_missing_only_in_the_dispatcher_is_reported_and_the_experiment_stopped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from nnictl_harness import free_port, private_env, run_nnictl

    data_root = tmp_path / "images"
    _imagefolder(data_root)
    config = _write(tmp_path, "nash", _args(dataset="imagefolder", dataset_root=str(data_root), n_steps=1,
                                            n_neighbours=2, epochs_seed=1, epochs_neighbour=1, epochs_final=1))
    raw = yaml.safe_load(config.read_text())
    raw["tuner"] = {"className": "nni_nas_ext.nni.tuners.NashTuner", "codeDirectory": str(ROOT),
                    "classArgs": raw["tuner"]["classArgs"]}  # no `nnictl algo register` in the private NNI
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    assert cli._check_config(config, resources=True) is None  # the pre-check sees the dataset

    env = private_env(tmp_path)
    for key in ("HOME", "NNI_CONFIG_DIR", "PATH"):
        monkeypatch.setenv(key, env[key])
    real_run = subprocess.run
    commands: list[list[str]] = []

    def dataset_vanishes_before_create(cmd: list[str], *args: Any, **kwargs: Any) -> Any:
        commands.append(list(cmd))
        if cmd[1:2] == ["create"]:
            shutil.rmtree(data_root)  # between the pre-check and the dispatcher's own loading
        return real_run(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", dataset_vanishes_before_create)
    port = free_port()
    try:
        code = cli.main(["run", "--config", str(config), "--port", str(port), "--timeout", "240"])
        out, err = capsys.readouterr()
        assert code == 1, (out, err)
        assert "experiment status: ERROR" in out, (out, err)
        # the dispatcher's own reason, not a log path alone
        assert "DatasetError" in err and str(data_root) in err, err
        # NNI's status line after it: the dispatcher's reason too (the `reason` edit of NNI, nni_patch)
        assert "Dispatcher error: " in err and err.count("DatasetError") >= 2, err
        stops = [c for c in commands if c[1:2] == ["stop"]]
        assert len(stops) == 1 and "stopped" in err, (commands, err)
        deadline = time.monotonic() + 30  # nnictl stop returns before the manager has gone
        while time.monotonic() < deadline and _port_open(port):
            time.sleep(0.5)
        assert not _port_open(port), "the portal still listens after run returned"
    finally:
        monkeypatch.setattr(subprocess, "run", real_run)
        run_nnictl(["stop", "--all"], env, timeout=90)
