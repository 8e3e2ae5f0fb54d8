"""The checkpoint store: round trip, atomic writes, ids that could escape, weights_only, damaged files."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from nni_nas_ext.core import Architecture, build_module
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.atomic import STALE_TEMPORARY_AGE_S
from nni_nas_ext.trial_code.checkpoints import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    Weights,
    checkpoint_dir_error,
    checkpoint_dir_unusable,
)


@pytest.fixture(scope="module")
def arch() -> Architecture:
    return nash_seed((1, 8, 8), 10, widths=(8, 16, 16))


def weights(arch: Architecture, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return build_module(arch).state_dict()


def cid(arch: Architecture, serial: int) -> str:
    return f"{arch.id}-{serial:04d}"


def test_round_trip(tmp_path: Path, arch: Architecture) -> None:
    store = CheckpointStore(tmp_path / "ckpt")
    state = weights(arch, 0)
    path = store.save(cid(arch, 3), arch, state, meta={"val_acc": 0.875, "epochs": 2, "role": "seed"})
    assert path == tmp_path / "ckpt" / f"{arch.id}-0003.pt" and path.is_file()
    assert cid(arch, 3) in store and cid(arch, 4) not in store
    loaded = store.load(cid(arch, 3))
    assert isinstance(loaded, Checkpoint)
    assert loaded.architecture == arch and loaded.architecture.id == arch.id
    assert loaded.meta == {"val_acc": 0.875, "epochs": 2, "role": "seed"}
    assert loaded.state_dict.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded.state_dict[key], value), key
    # the weights load into a freshly built module (BatchNorm buffers included)
    build_module(loaded.architecture, loaded.state_dict)
    assert store.ids() == [cid(arch, 3)]
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == CHECKPOINT_FORMAT and Architecture.from_json(raw["architecture"]) == arch


def test_overwrite_replaces_the_whole_file(tmp_path: Path, arch: Architecture) -> None:
    store = CheckpointStore(tmp_path)
    store.save("a-0001", arch, weights(arch, 0))
    second = weights(arch, 1)
    store.save("a-0001", arch, second)
    key = next(iter(second))
    assert torch.equal(store.load("a-0001").state_dict[key], second[key])
    assert sorted(os.listdir(tmp_path)) == ["a-0001.pt"]


@pytest.mark.parametrize("exception", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_leaves_the_old_checkpoint_and_no_temporary_file(
        tmp_path: Path, arch: Architecture, monkeypatch: pytest.MonkeyPatch, exception: BaseException) -> None:
    store = CheckpointStore(tmp_path)
    old = weights(arch, 0)
    target = store.save("x-0001", arch, old)
    old_bytes = target.read_bytes()
    seen: list[list[str]] = []

    def broken_save(obj, handle, *args, **kwargs):
        handle.write(b"\x80\x02 half a checkpoint")
        handle.flush()
        seen.append(sorted(os.listdir(tmp_path)))
        assert target.read_bytes() == old_bytes  # the target is never written in place
        raise exception

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(type(exception)):
        store.save("x-0001", arch, weights(arch, 1))
    assert len(seen[0]) == 2 and seen[0][0].startswith(".x-0001.") and seen[0][0].endswith(".tmp")
    assert sorted(os.listdir(tmp_path)) == ["x-0001.pt"]
    assert target.read_bytes() == old_bytes
    key = next(iter(old))
    assert torch.equal(store.load("x-0001").state_dict[key], old[key])
    # a first save that fails leaves nothing at all
    with pytest.raises(type(exception)):
        store.save("y-0001", arch, old)
    assert sorted(os.listdir(tmp_path)) == ["x-0001.pt"]
    assert store.ids() == ["x-0001"]


def test_failed_rename_removes_the_temporary_file(tmp_path: Path, arch: Architecture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path)

    def broken_replace(src, dst):
        raise PermissionError(f"cannot replace {dst}")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(PermissionError):
        store.save("z-0001", arch, weights(arch, 0))
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("bad_id", [
    "../x", "/abs", "a/b", "a\\b", "", ".", "..", "a..b", ".hidden", "-flag", "a\x00b", "abc\n", "a b",
    "x" * 129, None, 7,
])
def test_ids_that_could_escape_are_refused(tmp_path: Path, arch: Architecture, bad_id: object) -> None:
    store = CheckpointStore(tmp_path / "store")
    for call in (lambda: store.path(bad_id), lambda: store.load(bad_id),
                 lambda: store.save(bad_id, arch, {}), lambda: bad_id in store):
        with pytest.raises(CheckpointError) as info:
            call()
        assert repr(bad_id) in str(info.value)
    assert not (tmp_path / "store").exists() and os.listdir(tmp_path) == []


def test_longest_allowed_id(tmp_path: Path, arch: Architecture) -> None:
    store = CheckpointStore(tmp_path)
    store.save("x" * 128, arch, {})
    assert store.load("x" * 128).state_dict == {}


def test_relative_root_is_refused() -> None:
    with pytest.raises(CheckpointError, match="absolute path, but got 'checkpoints'"):
        CheckpointStore("checkpoints")


def test_missing_checkpoint_names_the_path_and_existing_ids(tmp_path: Path, arch: Architecture) -> None:
    store = CheckpointStore(tmp_path / "s")
    with pytest.raises(CheckpointError, match="no checkpoints"):
        store.load("a-0001")
    for i in range(12):
        store.save(f"a-{i:04d}", arch, {})
    with pytest.raises(CheckpointError) as info:
        store.load("b-0001")
    message = str(info.value)
    assert str(tmp_path / "s" / "b-0001.pt") in message
    assert "a-0000" in message and "a-0009" in message and "a-0011" not in message and "12 in all" in message


class _Payload:
    """Unpickling this runs os.mkdir: a stand-in for a malicious checkpoint."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_objects_other_than_tensors_are_refused(tmp_path: Path, arch: Architecture) -> None:
    store = CheckpointStore(tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"format": 1, "architecture": arch.to_json(), "meta": "{}", "state_dict": {},
                "extra": _Payload(marker)}, store.path("evil-0001"))
    with pytest.raises(CheckpointError, match="evil-0001") as info:
        store.load("evil-0001")
    assert "could not be read" in str(info.value) and str(store.path("evil-0001")) in str(info.value)
    assert "mkdir" in str(info.value)  # torch's refusal names the global it blocked
    assert not marker.exists()
    torch.load(store.path("evil-0001"), weights_only=False)  # the payload is real: a full unpickler runs it
    assert marker.is_dir()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not a dict", "no state_dict",
                                    "bad architecture", "state not tensors", "bad meta"])
def test_damaged_files_raise_checkpoint_error(tmp_path: Path, arch: Architecture, damage: str) -> None:
    store = CheckpointStore(tmp_path)
    path = store.save("d-0001", arch, weights(arch, 0))
    payload = torch.load(path, weights_only=True)
    if damage == "garbage":
        path.write_bytes(os.urandom(256))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "not a dict":
        torch.save([1, 2, 3], path)
    elif damage == "no state_dict":
        del payload["state_dict"]
        torch.save(payload, path)
    elif damage == "bad architecture":
        payload["architecture"] = '{"nodes": []}'
        torch.save(payload, path)
    elif damage == "state not tensors":
        payload["state_dict"] = {"w": 3}
        torch.save(payload, path)
    else:
        payload["meta"] = "[1, 2]"
        torch.save(payload, path)
    with pytest.raises(CheckpointError) as info:
        store.load("d-0001")
    assert str(path) in str(info.value)


def test_weights_without_an_architecture_round_trip(tmp_path: Path, arch: Architecture) -> None:
    """NNI's baselines keep the weights of networks that are not Architecture values (a CNN-stage sample)."""
    store = CheckpointStore(tmp_path / "ckpt")
    state = {"features.0.weight": torch.randn(4, 1, 3, 3), "classifier.bias": torch.zeros(10)}
    meta = {"rebuild": {"sample": {"stage0_depth": 1, "stage0_skip": "no"}}, "params": 1234}
    path = store.save_weights("nni-trial-00003", state, meta=meta)
    assert path == tmp_path / "ckpt" / "nni-trial-00003.pt" and store.ids() == ["nni-trial-00003"]
    loaded = store.load_weights("nni-trial-00003")
    assert isinstance(loaded, Weights) and loaded.meta == meta
    assert set(loaded.state_dict) == set(state)
    assert all(torch.equal(loaded.state_dict[k], v) for k, v in state.items())
    assert "architecture" not in torch.load(path, weights_only=True)
    with pytest.raises(CheckpointError, match=r"is not a valid checkpoint: ValueError: it lacks \['architecture'\]"):
        store.load("nni-trial-00003")  # no architecture to build: only load_weights reads it
    store.save("a-0001", arch, weights(arch, 0), meta={"x": 1})
    assert store.load_weights("a-0001").meta == {"x": 1}  # a checkpoint's weights, without the architecture
    with pytest.raises(CheckpointError, match="is not allowed"):
        store.save_weights("../escape", state)
    with pytest.raises(CheckpointError, match="meta must be a JSON object"):
        store.save_weights("nni-trial-00004", state, meta={"val_acc": float("nan")})
    with pytest.raises(CheckpointError, match="state_dict must map names to tensors"):
        store.save_weights("nni-trial-00004", {"w": [1.0]})  # type: ignore[dict-item]
    with pytest.raises(CheckpointError, match="no checkpoint 'nni-trial-00009'"):
        store.load_weights("nni-trial-00009")


@pytest.mark.parametrize(("state", "meta", "fragment"), [
    ({"w": [1.0]}, None, "state_dict must map names to tensors"),
    ({}, {"val_acc": float("nan")}, "meta must be a JSON object"),
    ({}, {"when": object()}, "meta must be a JSON object"),
])
def test_invalid_contents_are_refused_before_writing(tmp_path: Path, arch: Architecture, state, meta,
                                                     fragment: str) -> None:
    store = CheckpointStore(tmp_path / "s")
    with pytest.raises(CheckpointError, match=fragment):
        store.save("c-0001", arch, state, meta=meta)
    assert not (tmp_path / "s").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_weights_load_on_the_cpu(tmp_path: Path, arch: Architecture) -> None:
    store = CheckpointStore(tmp_path)
    state = {k: v.cuda() for k, v in weights(arch, 0).items()}
    store.save("g-0001", arch, state)
    loaded = store.load("g-0001").state_dict
    assert all(v.device.type == "cpu" for v in loaded.values())
    assert all(torch.equal(loaded[k], v.cpu()) for k, v in state.items())


def _aged(path: Path, seconds: float) -> Path:
    """``path`` last modified ``seconds`` ago."""
    when = time.time() - seconds
    os.utime(path, (when, when))
    return path


def test_open_removes_only_stale_temporary_files(tmp_path: Path, arch: Architecture,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    CheckpointStore(tmp_path).save("a-0001", arch, weights(arch, 0))
    checkpoint = _aged(tmp_path / "a-0001.pt", 10 * STALE_TEMPORARY_AGE_S)  # old, but a checkpoint
    stale_new = tmp_path / ".a-0002.pt.k3j_x9ab.tmp"  # a save killed midway
    stale_new.write_bytes(b"x" * 1000)
    _aged(stale_new, STALE_TEMPORARY_AGE_S + 60)
    stale_old = tmp_path / ".a-0003.q1w2e3r4.tmp"  # the name of the store's earlier writer
    stale_old.write_bytes(b"y" * 24)
    _aged(stale_old, 3 * 3600)
    fresh = tmp_path / ".a-0004.pt.zzzzzzzz.tmp"  # a write in progress
    fresh.write_bytes(b"z" * 10)
    _aged(fresh, STALE_TEMPORARY_AGE_S - 60)
    others = [tmp_path / name for name in ("notes.tmp", ".hidden.tmp", "x.pt.abcdefgh.tmp", ".a-0005.pt.tmp")]
    for path in others:
        path.write_text("user's")
        _aged(path, 10 * STALE_TEMPORARY_AGE_S)
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()  # a folder with a temporary's name
    _aged(tmp_path / ".dir.abcdefgh.tmp", 10 * STALE_TEMPORARY_AGE_S)

    with caplog.at_level("INFO", logger="nni_nas_ext.atomic"):
        store = CheckpointStore.open(tmp_path)
    assert store.removed_temporaries == (2, 1024)
    assert not stale_new.exists() and not stale_old.exists()
    assert fresh.exists() and checkpoint.exists() and all(p.exists() for p in others)
    assert (tmp_path / ".dir.abcdefgh.tmp").is_dir()
    assert store.ids() == ["a-0001"] and store.load("a-0001").architecture == arch
    assert "removed 2 stale temporary file(s), 1024 bytes" in caplog.text and str(tmp_path) in caplog.text
    # nothing more to remove: nothing logged
    caplog.clear()
    with caplog.at_level("INFO", logger="nni_nas_ext.atomic"):
        assert CheckpointStore.open(tmp_path).removed_temporaries == (0, 0)
    assert caplog.text == ""


def test_open_of_a_store_that_does_not_exist_yet(tmp_path: Path) -> None:
    store = CheckpointStore.open(tmp_path / "new")
    assert store.removed_temporaries == (0, 0) and not (tmp_path / "new").exists()


def test_a_killed_save_leaves_a_temporary_that_a_later_open_removes(tmp_path: Path, arch: Architecture,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    store = CheckpointStore(tmp_path)
    real_replace = os.replace

    def killed(src, dst):  # the process dies between writing and renaming: nothing cleans up
        raise SystemExit("killed")

    monkeypatch.setattr(os, "replace", killed)
    monkeypatch.setattr(Path, "unlink", lambda self, missing_ok=False: None)  # no cleanup in a dead process
    with pytest.raises(SystemExit):
        store.save("k-0001", arch, weights(arch, 0))
    monkeypatch.undo()
    assert os.replace is real_replace
    (leftover,) = os.listdir(tmp_path)
    assert leftover.startswith(".k-0001.pt.") and leftover.endswith(".tmp")
    size = (tmp_path / leftover).stat().st_size
    assert CheckpointStore.open(tmp_path).removed_temporaries == (0, 0)  # fresh: maybe a write in progress
    _aged(tmp_path / leftover, STALE_TEMPORARY_AGE_S + 1)
    assert CheckpointStore.open(tmp_path).removed_temporaries == (1, size)
    assert os.listdir(tmp_path) == []


def test_fna_removes_stale_temporaries_before_saving(tmp_path: Path) -> None:
    from nni_nas_ext.trial_code.fna_trial import FnaTaskConfig, _writable_checkpoint_dir

    stale = tmp_path / ".fna-0001.pt.abcdefgh.tmp"
    stale.write_bytes(b"x")
    _aged(stale, STALE_TEMPORARY_AGE_S + 1)
    fresh = tmp_path / ".fna-0002.pt.abcdefgh.tmp"
    fresh.write_bytes(b"x")
    task = FnaTaskConfig(source_dataset="digits", target_dataset="digits", checkpoint_dir=str(tmp_path))
    assert _writable_checkpoint_dir(task) == tmp_path
    assert not stale.exists() and fresh.exists()


@pytest.mark.parametrize(("path", "problem"), [
    ("relative/x", "must be an absolute path"),
    ("/", "must not be a system folder"), ("//", "must not be a system folder"),
    ("/proc", "must not be a system folder"), ("/proc/1/cwd", "it lies in /proc"),
    ("/sys/kernel", "it lies in /sys"), ("/dev/shm/x", "it lies in /dev"), ("/etc", "must not be a system"),
    ("/usr/", "must not be a system"), ("/var/../run", "must not be a system"),
    ("/tmp/x", None), ("/usr/local/checkpoints", None), ("/var/tmp/x", None), ("/etcetera", None),
    ("/run/user/1000/x", None),
])
def test_checkpoint_dir_error_judges_the_path_alone(path: str, problem: str | None) -> None:
    found = checkpoint_dir_error(path)
    assert (found is None) if problem is None else (found is not None and problem in found and repr(path) in found)


def test_checkpoint_dir_unusable_checks_the_file_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert checkpoint_dir_unusable(str(tmp_path)) is None
    assert checkpoint_dir_unusable(str(tmp_path / "a" / "b")) is None and not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    assert "which is a file" in (checkpoint_dir_unusable(str(tmp_path / "f")) or "")
    assert "is not a folder" in (checkpoint_dir_unusable(str(tmp_path / "f" / "sub")) or "")
    (tmp_path / "to-proc").symlink_to("/proc")
    assert "leads to '/proc/x'" in (checkpoint_dir_unusable(str(tmp_path / "to-proc" / "x")) or "")
    # as root every folder is writable: a refused access shows the message
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    assert "cannot be created" in (checkpoint_dir_unusable(str(tmp_path / "new")) or "")
    assert "is not writable by this user" in (checkpoint_dir_unusable(str(tmp_path)) or "")


@pytest.mark.parametrize("config", ["task", "fna"])
def test_task_configs_refuse_system_folders(config: str) -> None:
    from nni_nas_ext.core.config import ConfigError
    from nni_nas_ext.trial_code.fna_trial import FnaTaskConfig
    from nni_nas_ext.trial_code.trial import TaskConfig

    cls = TaskConfig if config == "task" else FnaTaskConfig
    with pytest.raises(ConfigError, match=r"checkpoint_dir must not be a system folder.*but got '/proc/self'") as info:
        cls(checkpoint_dir="/proc/self")
    assert info.value.key == "checkpoint_dir" and info.value.value == "/proc/self"
