"""N2N's teacher from anywhere in this project: an export folder or a checkpoint of a store, copied into the search's
store under the id the strategy's first candidate names; refused, naming the key and the remedy, when it cannot be
used; and checked by ``python -m nni_nas_ext run``'s preflight before nnictl starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from nni_nas_ext.core import build_module
from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.export import export_model
from nni_nas_ext.nni.n2n import import_teacher, load_teacher, teacher_store
from nni_nas_ext.nni.preflight import PreflightError, check_experiment_config
from nni_nas_ext.search_spaces import plain_cnn
from nni_nas_ext.strategies.n2n import imported_teacher_id
from nni_nas_ext.trial_code.checkpoints import CheckpointStore

ROOT = Path(__file__).resolve().parents[1]
TEACHER = plain_cnn(depth=4, input_shape=(1, 8, 8), num_classes=10, width=8, stages=1)


def _state(seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    return {k: v.detach().clone() for k, v in build_module(TEACHER).state_dict().items()}


def test_a_teacher_from_an_export_folder_or_a_checkpoint(tmp_path: Path) -> None:
    state = _state()
    export = export_model(TEACHER, state, tmp_path / "export")
    store = CheckpointStore(tmp_path / "search")
    checkpoint = store.save(f"{TEACHER.id}-0007", TEACHER, state, meta={"result": {"default": 0.9}})
    for path, kind in ((export, "export folder"), (checkpoint, "checkpoint")):
        arch, loaded, found = load_teacher(str(path))
        assert arch.id == TEACHER.id and found == kind
        assert all(torch.equal(loaded[k], state[k]) for k in state)
    target = tmp_path / "n2n"
    arch = import_teacher(str(checkpoint), str(target), (1, 8, 8), 10)
    copied = CheckpointStore(target).load(imported_teacher_id(arch))
    assert copied.architecture.id == TEACHER.id and copied.meta["imported_from"] == str(checkpoint)
    assert all(torch.equal(copied.state_dict[k], state[k]) for k in state)


def test_a_teacher_that_cannot_be_used_is_refused_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"n2n: teacher=.*empty.* cannot be used: it is a folder without "
                                          r"\['architecture.json', 'state_dict.pt'\]") as info:
        load_teacher(str(tmp_path / "empty"))
    assert info.value.key == "teacher"
    with pytest.raises(ConfigError, match="nothing is there"):
        load_teacher(str(tmp_path / "missing.pt"))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ConfigError, match="not a checkpoint"):
        load_teacher(str(tmp_path / "notes.txt"))
    export = export_model(TEACHER, _state(), tmp_path / "export")
    with pytest.raises(ConfigError, match=r"takes input \(1, 8, 8\) with 10 classes, but the dataset has "
                                          r"\(1, 28, 28\) with 10"):
        import_teacher(str(export), str(tmp_path / "store"), (1, 28, 28), 10)


def test_the_store_of_a_given_teacher(tmp_path: Path) -> None:
    assert teacher_store("/data/ckpt") == Path("/data/ckpt")
    assert teacher_store(None, {"NNI_LOG_DIRECTORY": "/exp/abc/log"}) == Path("/exp/abc/checkpoints")
    with pytest.raises(ConfigError, match="set checkpoint_dir to an absolute folder"):
        teacher_store(None, {})


def test_preflight_checks_the_teacher_of_a_config(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "examples" / "n2n-digits.yml").read_text())
    data["trialCodeDirectory"] = str(ROOT)
    config = tmp_path / "n2n.yml"
    data["tuner"]["classArgs"]["teacher"] = str(tmp_path / "nowhere")
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(PreflightError, match=r"teacher=.*nowhere.* cannot be used: nothing is there"):
        check_experiment_config(config)
    wrong = plain_cnn(depth=4, input_shape=(1, 28, 28), num_classes=10, width=8, stages=1)
    export = export_model(wrong, build_module(wrong).state_dict(), tmp_path / "fashion")
    data["tuner"]["classArgs"]["teacher"] = str(export)
    config.write_text(yaml.safe_dump(data))
    with pytest.raises(PreflightError, match=r"takes input \(1, 28, 28\) with 10 classes, but the dataset has "
                                             r"\(1, 8, 8\)"):
        check_experiment_config(config)
    good = export_model(TEACHER, _state(), tmp_path / "good")
    data["tuner"]["classArgs"]["teacher"] = str(good)
    config.write_text(yaml.safe_dump(data))
    check_experiment_config(config)
