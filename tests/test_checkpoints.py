"""The checkpoint store: round trip, atomic writes, ids that could escape, weights_only, damaged files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nni_nas_ext.core import Architecture, build_module
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.trial_code.checkpoints import CHECKPOINT_FORMAT, Checkpoint, CheckpointError, CheckpointStore


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
