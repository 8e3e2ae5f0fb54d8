"""The trial: weight inheritance from the parent's checkpoint, reports, failures, export (no NNI here)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from _reporters import ListReporter

from nni_nas_ext.core import create_morphism, random_chain
from nni_nas_ext.core.jobs import Candidate, candidate_id
from nni_nas_ext.export import load_exported
from nni_nas_ext.results import SearchResults
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.trial_code.checkpoints import CheckpointStore
from nni_nas_ext.trial_code.datasets import load_dataset
from nni_nas_ext.trial_code.trial import TaskConfig, TrialFailed, run_candidate
from nni_nas_ext.cli import export_checkpoint, main
from nni_nas_ext.export import EXPORT_FILES


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> TaskConfig:
    return TaskConfig(dataset="digits", checkpoint_dir=str(tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def data(task: TaskConfig):
    return load_dataset(task.dataset_spec())


@pytest.fixture(scope="module")
def trained_seed(task: TaskConfig, data):
    seed = nash_seed((1, 8, 8), 10, widths=(8, 16, 16))
    cand = Candidate(candidate_id(seed, 0), seed, None, 3, "train", False, "seed", 0)
    reporter = ListReporter()
    result = run_candidate(cand, task, reporter, data=data)
    return cand, result, reporter


def test_seed_trains_reports_every_epoch_and_saves(trained_seed, task: TaskConfig) -> None:
    cand, result, reporter = trained_seed
    assert [m["epoch"] for m in reporter.intermediates] == [1, 2, 3]
    assert reporter.finals == [result]
    assert result["candidate"] == cand.id and result["arch_id"] == cand.architecture.id
    assert result["default"] > 0.3  # 3 epochs on digits: well above chance (0.1)
    assert result["params"] == cand.architecture.num_parameters() and result["flops"] > 0
    assert result["preservation_error"] is None and result["start_val_acc"] is None
    assert "test_acc" not in result  # only final trainings see the test set
    timings = result["timings"]
    assert {"start_to_first_batch", "transform", "train", "evaluate", "checkpoint", "total"} <= set(timings)
    assert {"process_to_entry", "data", "start_evaluate", "train_setup", "train_steps", "validation",
            "process_total"} <= set(timings)
    assert 0 < timings["train_steps"] < timings["train"] and 0 < timings["validation"] < timings["train"]
    assert cand.id in CheckpointStore(task.checkpoint_dir)


@pytest.mark.parametrize("rng_seed", [0, 1, 2])
def test_child_starts_where_its_parent_ended(trained_seed, task: TaskConfig, data, rng_seed: int) -> None:
    parent, parent_result, _ = trained_seed
    morphisms = [create_morphism(n) for n in ("deepen", "widen", "add_skip", "concat_skip", "branch", "widen_kernel")]
    chain = random_chain(parent.architecture, morphisms, 5, np.random.default_rng(rng_seed))
    child = Candidate(candidate_id(chain.child, 10 + rng_seed), chain.child, parent.id, 1, "train", False, "child", 1)
    result = run_candidate(child, task, ListReporter(), data=data)
    assert result["preservation_error"] < 1e-5
    assert len(result["morphisms"]) == 5 and result["parent"] == parent.id
    n_val = len(data.val_y)
    assert abs(result["start_val_acc"] - parent_result["default"]) <= 1 / n_val + 1e-12


def test_final_training_uses_train_and_val_and_evaluates_test(trained_seed, task: TaskConfig, data) -> None:
    parent, _, _ = trained_seed
    final = Candidate(candidate_id(parent.architecture, 50), parent.architecture, parent.id, 1, "train+val", True,
                      "final", 2)
    reporter = ListReporter()
    result = run_candidate(final, task, reporter, data=data)
    assert 0.0 <= result["test_acc"] <= 1.0 and result["train_on"] == "train+val"
    assert result["preservation_error"] is None and result["morphisms"] == []
    # it trains on the validation images: its "default" (what NNI's portal ranks by) stays the validation accuracy
    # of the weights it started from, the parent's own, never one measured on images it trained on
    _, parent_result, _ = trained_seed
    assert result["default"] == result["start_val_acc"]
    assert abs(result["default"] - parent_result["default"]) <= 1 / len(data.val_y) + 1e-12
    assert [(r["epoch"], r["default"]) for r in reporter.intermediates] == [(1, result["start_val_acc"])]
    assert result["summary"].startswith("final (train+val): conv3x3-")
    assert result["lineage"] == f"continues {parent.id}"


def test_every_trial_says_in_one_line_what_it_trained(trained_seed, task: TaskConfig, data) -> None:
    parent, parent_result, _ = trained_seed
    assert parent_result["summary"] == \
        f"seed: {' > '.join(['conv3x3-8', 'maxpool', 'conv3x3-16', 'maxpool', 'conv3x3-16', 'gap', 'fc-10'])} | " \
        f"{parent.architecture.num_parameters():,} params"
    assert parent_result["lineage"] == "from scratch"
    chain = random_chain(parent.architecture, [create_morphism("widen")], 1, np.random.default_rng(3))
    child = Candidate(candidate_id(chain.child, 80), chain.child, parent.id, 1, "train", False, "child", 1)
    result = run_candidate(child, task, ListReporter(), data=data)
    step = chain.child.lineage.steps[0].describe()
    assert result["summary"].startswith("child: conv3x3-") and result["summary"].endswith(f" params | {step}")
    assert result["lineage"] == f"{parent.id} + {step}"
    assert len(result["summary"]) < 200


def test_divergence_is_reported_as_a_failure_then_raised(trained_seed, task: TaskConfig, data) -> None:
    parent, _, _ = trained_seed
    poisoned = dataclasses.replace(data, train_x=data.train_x.clone())
    poisoned.train_x[5, 0, 3, 3] = float("nan")  # one bad pixel poisons the loss of its batch
    cand = Candidate(candidate_id(parent.architecture, 60), parent.architecture, None, 2, "train", False, "child", 1)
    reporter = ListReporter()
    with pytest.raises(TrialFailed, match="TrainingDiverged"):
        run_candidate(cand, task, reporter, data=poisoned)
    assert len(reporter.finals) == 1 and reporter.finals[0]["candidate"] == cand.id
    assert reporter.finals[0]["default"] == 0.0 and "TrainingDiverged" in reporter.finals[0]["failed"]
    assert cand.id not in CheckpointStore(task.checkpoint_dir)  # a failed candidate leaves no weights


def test_a_lineage_that_does_not_match_the_parent_checkpoint_fails_clearly(trained_seed, task: TaskConfig, data):
    parent, _, _ = trained_seed
    other = nash_seed((1, 8, 8), 10, widths=(8, 8, 16))
    chain = random_chain(other, [create_morphism("widen")], 1, np.random.default_rng(0))
    cand = Candidate(candidate_id(chain.child, 70), chain.child, parent.id, 1, "train", False, "child", 1)
    reporter = ListReporter()
    with pytest.raises(TrialFailed, match="lineage names parent architecture"):
        run_candidate(cand, task, reporter, data=data)
    assert "failed" in reporter.finals[0]


def test_wrong_input_shape_names_the_remedy(task: TaskConfig, data) -> None:
    seed = nash_seed((1, 28, 28), 10, widths=(8, 16, 16))
    cand = Candidate(candidate_id(seed, 80), seed, None, 1, "train", False, "seed", 0)
    with pytest.raises(TrialFailed, match=r"build the seed network for this dataset \(input_shape=\(1, 8, 8\)"):
        run_candidate(cand, task, ListReporter(), data=data)


def test_export_gives_identical_predictions_without_nni(trained_seed, task: TaskConfig, data, tmp_path) -> None:
    parent, result, _ = trained_seed
    out = export_checkpoint(CheckpointStore(task.checkpoint_dir).path(parent.id), tmp_path / "export")
    rebuilt = load_exported(out)
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    x = data.val_x[:64]
    with torch.no_grad():
        assert torch.equal(rebuilt(x), scripted(x))
        accuracy = float((rebuilt(data.val_x).argmax(1) == data.val_y).float().mean())
    assert accuracy == pytest.approx(result["default"], abs=1e-6)
    meta = json.loads((out / "export.json").read_text())
    assert meta["architecture_id"] == parent.architecture.id and meta["candidate"] == parent.id


def test_the_export_command_names_every_file_it_writes(trained_seed, task: TaskConfig, tmp_path, capsys) -> None:
    parent, _, _ = trained_seed
    checkpoint = CheckpointStore(task.checkpoint_dir).path(parent.id)
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "winner")]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "winner").iterdir()) == sorted(EXPORT_FILES)
    assert all(name in printed for name in EXPORT_FILES), printed


def test_export_json_says_how_to_feed_raw_pixels(trained_seed, task: TaskConfig, data, tmp_path) -> None:
    parent, _, _ = trained_seed
    out = export_checkpoint(CheckpointStore(task.checkpoint_dir).path(parent.id), tmp_path / "export")
    pre = json.loads((out / "export.json").read_text())["preprocessing"]
    assert pre["scale"] == 16.0 and pre["input_shape"] == [1, 8, 8] and len(pre["classes"]) == 10
    mean, std = torch.tensor(pre["mean"]).view(1, -1, 1, 1), torch.tensor(pre["std"]).view(1, -1, 1, 1)
    raw = ((data.val_x[:64] * std + mean) * pre["scale"]).round()  # the digits' stored pixels: 0..16
    assert raw.min() >= 0 and raw.max() <= 16
    fed = (raw / pre["scale"] - mean) / std  # the recorded formula, applied by someone without our code
    model = load_exported(out)
    with torch.no_grad():
        assert torch.equal(model(fed).argmax(1), model(data.val_x[:64]).argmax(1))


def test_results_follow_parents_from_self_describing_metrics() -> None:
    def record(trial: str, metric: dict) -> dict:
        return {"type": "FINAL", "trialJobId": trial, "data": json.dumps(json.dumps(metric))}

    data = [
        record("A", {"default": 0.5, "candidate": "s-0000", "role": "seed", "step": 0, "parent": None,
                     "morphisms": []}),
        record("B", {"default": 0.6, "candidate": "c-0001", "role": "child", "step": 1, "parent": "s-0000",
                     "morphisms": ["widen(node=conv1, width=16)", "deepen(after=relu1)"]}),
        record("C", {"default": 0.0, "candidate": "c-0002", "role": "child", "step": 1, "failed": "boom"}),
        record("D", {"default": 0.7, "candidate": "c-0003", "role": "child", "step": 2, "parent": "c-0001",
                     "morphisms": ["add_skip(source=relu1, target=relu2)"]}),
        {"type": "PERIODICAL", "trialJobId": "D", "data": json.dumps(json.dumps({"default": 0.1}))},
    ]
    results = SearchResults.from_metric_data(data)
    assert results.seed["candidate"] == "s-0000" and results.best_search["candidate"] == "c-0003"
    assert [f["candidate"] for f in results.failures] == ["c-0002"]
    assert results.lineage("c-0003") == ["widen(node=conv1, width=16)", "deepen(after=relu1)",
                                         "add_skip(source=relu1, target=relu2)"]


def test_default_checkpoint_dir_is_inside_the_experiment_folder(monkeypatch, tmp_path) -> None:
    from nni_nas_ext.trial_code.trial import default_checkpoint_dir

    trial_dir = tmp_path / "abc123" / "environments" / "local-env" / "trials" / "XyZ12"
    monkeypatch.setenv("NNI_OUTPUT_DIR", str(trial_dir))
    monkeypatch.setenv("NNI_EXP_ID", "abc123")
    assert default_checkpoint_dir() == (tmp_path / "abc123" / "checkpoints").resolve()
    monkeypatch.delenv("NNI_OUTPUT_DIR")
    with pytest.raises(ValueError, match="checkpoint_dir is not set"):
        default_checkpoint_dir()


def test_a_rerun_of_a_trained_candidate_reports_the_stored_result_without_training(trained_seed, task, data) -> None:
    cand, result, _ = trained_seed
    reporter = ListReporter()
    again = run_candidate(cand, task, reporter, data=data)
    assert again["rerun"] is True and reporter.intermediates == []  # no epoch ran
    assert {k: v for k, v in again.items() if k not in ("rerun", "timings")} == \
        {k: v for k, v in result.items() if k != "timings"}


def test_a_stored_result_is_reused_only_for_the_same_training(trained_seed, task, data) -> None:
    cand, _, _ = trained_seed
    other_task = TaskConfig(dataset="digits", checkpoint_dir=task.checkpoint_dir, lr=0.02)
    reporter = ListReporter()
    result = run_candidate(cand, other_task, reporter, data=data)  # other settings: trained again
    assert "rerun" not in result and len(reporter.intermediates) == cand.epochs


def test_augmentation_and_precision_settings_reach_the_training(trained_seed, task: TaskConfig, data) -> None:
    parent, _, _ = trained_seed
    crop = TaskConfig(dataset="digits", checkpoint_dir=task.checkpoint_dir, augment="crop", precision="fp32")
    assert crop.augmentation(data).padding == 1 and crop.augmentation(data).fill == (-data.mean[0] / data.std[0],)
    assert TaskConfig(dataset="digits", augment="crop+flip", crop_padding=2).augmentation(data).padding == 2
    assert TaskConfig(dataset="digits").augmentation(data).is_identity
    results = []
    for i, t in enumerate((task, crop)):
        cand = Candidate(candidate_id(parent.architecture, 90 + i), parent.architecture, None, 1, "train", False,
                         "child", 1)
        torch.manual_seed(0)
        results.append(run_candidate(cand, dataclasses.replace(t, seed=1), ListReporter(), data=data))
    stored = [CheckpointStore(task.checkpoint_dir).load(r["candidate"]).state_dict for r in results]
    assert not all(torch.equal(stored[0][k], stored[1][k]) for k in stored[0])  # the crop changed the training
    assert all(v.is_contiguous() for v in stored[1].values())


def test_precision_and_memory_format_settings_reach_the_training(trained_seed, task: TaskConfig, data,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from nni_nas_ext.trial_code import trial as trial_module

    seen: list[tuple[str, str]] = []
    original = trial_module.train

    def spy(*args, **kwargs):
        seen.append((kwargs["precision"], kwargs["memory_format"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(trial_module, "train", spy)
    parent, _, _ = trained_seed
    for i, t in enumerate((task, dataclasses.replace(task, precision="fp32", memory_format="contiguous"))):
        cand = Candidate(candidate_id(parent.architecture, 95 + i), parent.architecture, None, 1, "train", False,
                         "child", 1)
        run_candidate(cand, dataclasses.replace(t, seed=2), ListReporter(), data=data)
    assert seen == [("auto", "auto"), ("fp32", "contiguous")]


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"augment": "flip"}, "augment"), ({"precision": "fp16"}, "precision"), ({"crop_padding": 0}, "crop_padding"),
    ({"memory_format": "nhwc"}, "memory_format"),
])
def test_task_rejects_unknown_augmentation_and_precision(kwargs: dict, fragment: str) -> None:
    from nni_nas_ext.core.config import ConfigError

    with pytest.raises(ConfigError, match=fragment):
        TaskConfig(dataset="digits", **kwargs)


@pytest.mark.parametrize(("stop_below", "stops"), [(1.0, True), (0.0, False)])
def test_a_child_below_its_threshold_stops_after_its_first_epoch(trained_seed, task: TaskConfig, data,
                                                                  stop_below: float, stops: bool) -> None:
    parent, _, _ = trained_seed
    chain = random_chain(parent.architecture, [create_morphism("widen")], 1, np.random.default_rng(0))
    child = Candidate(candidate_id(chain.child, 60 + int(stops)), chain.child, parent.id, 2, "train", False, "child",
                      1, stop_after=1, stop_below=stop_below)  # 1.0: above what one epoch reaches; 0.0: never
    reporter = ListReporter()
    result = run_candidate(child, task, reporter, data=data)
    trained = 1 if stops else 2
    assert [m["epoch"] for m in reporter.intermediates] == list(range(1, trained + 1))
    assert result["early_stopped"] is stops and result["epochs_trained"] == trained and result["epochs"] == 2
    assert result["default"] == reporter.intermediates[-1]["default"] and reporter.finals == [result]
    # the checkpoint is saved as usual (a child of it finds its weights), holding the result for re-runs
    stored = CheckpointStore(task.checkpoint_dir).load(child.id)
    assert stored.architecture.id == child.architecture.id and stored.meta["result"]["early_stopped"] is stops
    rerun = run_candidate(child, task, ListReporter(), data=data)
    assert rerun["rerun"] and rerun["early_stopped"] is stops and rerun["epochs_trained"] == trained


@pytest.mark.parametrize(("time_limit", "epochs", "trained"), [(1.0, 40, 1), (1e6, 2, 2)])
def test_a_final_training_stops_at_its_time_limit(trained_seed, task: TaskConfig, data,
                                                  caplog: pytest.LogCaptureFixture, time_limit: float, epochs: int,
                                                  trained: int) -> None:
    """A time limit counts from the process's start (this pytest process started long before 1 s): the final
    stops after its first epoch (at least one trains) and still tests, saves and reports; far off, it is moot."""
    seed, _, _ = trained_seed
    final = Candidate(candidate_id(seed.architecture, 70 + trained), seed.architecture, seed.id, epochs, "train+val",
                      True, "final", 2, time_limit=time_limit)
    reporter = ListReporter()
    with caplog.at_level("WARNING", logger="nni_nas_ext.trial_code.trial"):
        result = run_candidate(final, task, reporter, data=data)
    assert [m["epoch"] for m in reporter.intermediates] == list(range(1, trained + 1))
    assert result["epochs_trained"] == trained and result["epochs"] == epochs and result["early_stopped"] is False
    assert result["stopped_at_deadline"] is (trained < epochs) and 0.0 < result["test_acc"] <= 1.0
    assert ("time limit of 1.0 s" in caplog.text) is (trained < epochs)
    stored = CheckpointStore(task.checkpoint_dir).load(final.id).meta["result"]
    assert stored["stopped_at_deadline"] is (trained < epochs)
