"""FNA's checkpoints are files of the one checkpoint store (trial_code/checkpoints.py), not a format of their own;
files of FNA's older format are still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nni_nas_ext.core.mbconv import build_network, mobilenet_v2
from nni_nas_ext.trial_code.checkpoints import CheckpointStore
from nni_nas_ext.trial_code.fna_checkpoints import (
    LEGACY_CHECKPOINT_FORMAT, MBCONV_META_KEY, load_checkpoint, load_seed_checkpoint, save_checkpoint)


def _network():
    torch.manual_seed(0)
    arch = mobilenet_v2(10, 0.25, 28, 3)
    return arch, build_network(arch).state_dict()


def test_an_fna_checkpoint_is_a_file_of_the_store(tmp_path: Path) -> None:
    arch, state = _network()
    path = save_checkpoint(tmp_path / "adapt-0003.pt", arch, state, {"val_acc": 0.5})
    assert path == tmp_path / "adapt-0003.pt"
    weights = CheckpointStore(tmp_path).load_weights("adapt-0003")  # the store reads it as its own
    assert weights.meta["val_acc"] == 0.5 and weights.meta[MBCONV_META_KEY] == arch.to_dict()
    back, back_state, meta = load_checkpoint(path)
    assert back == arch and meta == {"val_acc": 0.5}
    assert all(torch.equal(back_state[k], v) for k, v in state.items())
    assert load_seed_checkpoint(path)[0] == arch


def test_a_checkpoint_of_the_older_format_is_still_read(tmp_path: Path) -> None:
    arch, state = _network()
    torch.save({"format": LEGACY_CHECKPOINT_FORMAT, "architecture": json.dumps(arch.to_dict()),
                "meta": json.dumps({"note": "old"}), "state_dict": dict(state)}, tmp_path / "old.pt")
    back, back_state, meta = load_checkpoint(tmp_path / "old.pt")
    assert back == arch and meta == {"note": "old"} and set(back_state) == set(state)


def test_a_morphism_checkpoint_is_not_taken_for_an_fna_one(tmp_path: Path) -> None:
    _, state = _network()
    CheckpointStore(tmp_path).save_weights("other", state, {"sample": {"a": 1}})
    with pytest.raises(ValueError, match="is not an FNA checkpoint of this project"):
        load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize(("name", "meta", "fragment"), [
    ("relative.pt", None, "<absolute folder>/<id>.pt"),
    ("/abs/x.bin", None, "<absolute folder>/<id>.pt"),
    (None, {MBCONV_META_KEY: 1}, "may not have its own 'mbconv_architecture'"),
])
def test_bad_checkpoint_paths_and_meta_are_refused(tmp_path: Path, name: str | None, meta: dict | None,
                                                   fragment: str) -> None:
    arch, state = _network()
    path = Path(name) if name else tmp_path / "x.pt"
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        save_checkpoint(path, arch, state, meta)
