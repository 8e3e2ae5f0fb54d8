"""The FNA pipeline: ask/tell strategy (strategies/fna.py), trials (trial_code/fna_trial.py), settings (nni/fna.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from _reporters import ListReporter

from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.core.jobs import FnaJob
from nni_nas_ext.core.mbconv import MBConvArchitecture, build_network, mobilenet_v2
from nni_nas_ext.core.remap import remap_state_dict
from nni_nas_ext.nni.fna import FnaClassArgsValidator, split_fna_settings
from nni_nas_ext.strategies.fna import FnaConfig, FnaPipeline
from nni_nas_ext.trial_code.fna_trial import (
    load_seed_checkpoint, run_fna_job, save_checkpoint, seed_for_target,
)

ARCH = mobilenet_v2(10, 0.25, 8, 1)


def _adapt_result(job: FnaJob, arch: MBConvArchitecture = ARCH) -> dict:
    return {"default": 0.5, "candidate": job.id, "architecture": arch.to_dict(), "choice": {"s1_l0": 0}}


# --------------------------------------------------------------------------------------------------
# The pure pipeline
# --------------------------------------------------------------------------------------------------

def test_the_pipeline_proposes_seed_then_adaptation_then_parameter_adaptation() -> None:
    p = FnaPipeline({"epochs_seed": 2, "epochs_adapt": 3, "epochs_param": 4})
    (seed,) = p.ask()
    assert (seed.kind, seed.epochs, seed.role, seed.step, seed.parent) == ("seed", 2, "seed", 0, None)
    assert p.ask() == [] and p.pending == [seed.id]
    assert p.tell(seed.id, {"default": 0.8, "candidate": seed.id})
    (adapt,) = p.ask()
    assert (adapt.kind, adapt.epochs, adapt.parent) == ("adapt", 3, seed.id)
    assert not p.finished
    assert p.tell(adapt.id, _adapt_result(adapt))
    (param,) = p.ask()
    assert (param.kind, param.role, param.epochs, param.parent, param.adapt) == ("param", "final", 4, seed.id, adapt.id)
    assert param.architecture == ARCH.to_dict() and param.choice == {"s1_l0": 0}
    p.tell(param.id, {"default": 0.9, "test_acc": 0.88, "candidate": param.id, "cpu_seconds": 2.0})
    assert p.finished
    summary = p.summary()
    assert summary["status"] == "finished" and summary["jobs"]["param"]["test_acc"] == 0.88


def test_baselines_run_beside_the_phases_they_compare_with() -> None:
    p = FnaPipeline({"baselines": True, "seed_checkpoint": "/abs/seed.pt"})
    first = p.ask()
    assert [j.kind for j in first] == ["adapt", "seed_finetune"]  # no seed job: the checkpoint is the seed
    assert all(j.parent is None and j.seed_checkpoint == "/abs/seed.pt" for j in first)
    p.tell(first[0].id, _adapt_result(first[0]))
    second = p.ask()
    assert [j.kind for j in second] == ["param", "scratch"]
    assert second[0].architecture == second[1].architecture
    for job in [first[1], *second]:
        p.tell(job.id, {"default": 0.5, "candidate": job.id})
    assert p.finished and p.summary()["status"] == "finished"


def test_failures_end_the_pipeline_and_bad_reports_are_ignored() -> None:
    p = FnaPipeline()
    (seed,) = p.ask()
    assert not p.tell("seed-9999", {"default": 1.0})
    assert not p.tell(seed.id, {"default": 1.0, "candidate": "adapt-0001"})  # names another job
    p.tell(seed.id, {"default": 0.7, "candidate": seed.id})
    assert not p.tell(seed.id, {"default": 0.7, "candidate": seed.id})  # second report
    (adapt,) = p.ask()
    p.tell(adapt.id, {"default": 0.5, "candidate": adapt.id})  # no derived architecture: a failure
    assert p.finished and p.summary()["status"] == "failed"
    assert "lacks the derived 'architecture'" in p.summary()["reason"]


def test_state_round_trips_through_json_and_pending_jobs_can_be_reissued() -> None:
    p = FnaPipeline({"baselines": True})
    (seed,) = p.ask()
    p.tell(seed.id, {"default": 0.7, "candidate": seed.id})
    jobs = p.ask()
    restored = FnaPipeline.from_state_dict(json.loads(json.dumps(p.state_dict())))
    assert sorted(restored.pending) == sorted(j.id for j in jobs)
    assert restored.reissue_pending([jobs[1].id]) == [jobs[1].id]
    assert [j.id for j in restored.ask()] == [jobs[1].id]
    with pytest.raises(ValueError, match="another configuration"):
        FnaPipeline({"epochs_param": 9}).load_state_dict(p.state_dict())
    for job in p.jobs:
        assert FnaJob.from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_jobs_and_settings_are_validated_with_the_key_and_the_remedy() -> None:
    with pytest.raises(ValueError, match="needs the derived architecture"):
        FnaJob(id="param-0001", kind="param", epochs=1, parent="seed-0000")
    with pytest.raises(ValueError, match="needs the seed's weights"):
        FnaJob(id="adapt-0001", kind="adapt", epochs=1)
    with pytest.raises(ValueError, match="'adapt-NNNN'"):
        FnaJob(id="seed-0001", kind="adapt", epochs=1, parent="seed-0000")
    with pytest.raises(ConfigError, match="seed_checkpoint must be an absolute path"):
        FnaConfig(seed_checkpoint="seed.pt")
    with pytest.raises(ConfigError, match=r"unknown setting 'cost_lamda'; did you mean 'cost_lambda'"):
        split_fna_settings({"cost_lamda": 0.1})
    with pytest.raises(ConfigError, match="warmup_epochs < epochs_adapt must hold"):
        split_fna_settings({"epochs_adapt": 2, "warmup_epochs": 2})
    with pytest.raises(ConfigError, match="'target_dataset' must be str, one of"):
        FnaClassArgsValidator().validate({"target_dataset": "mnistt"})
    with pytest.raises(ConfigError, match="kernels must be odd"):
        split_fna_settings({"kernels": [3, 4]})
    fna, task, adaptation = split_fna_settings({"seed": 5, "batch_size": 32, "epochs_adapt": 3, "cost_lambda": 1.0})
    assert (fna.seed, task.seed, adaptation.seed) == (5, 5, 5)
    assert (task.batch_size, adaptation.batch_size, adaptation.epochs, adaptation.cost_lambda) == (32, 32, 3, 1.0)


# --------------------------------------------------------------------------------------------------
# Seeds
# --------------------------------------------------------------------------------------------------

def test_a_torchvision_checkpoint_loads_as_a_seed(tmp_path: Path) -> None:
    from torchvision.models import mobilenet_v2 as tv_mobilenet_v2

    torch.manual_seed(0)
    tv = tv_mobilenet_v2(num_classes=7, width_mult=0.5).eval()
    path = tmp_path / "tv.pt"
    torch.save({"state_dict": tv.state_dict()}, path)
    arch, state = load_seed_checkpoint(path, input_size=64)
    assert (arch.num_classes, arch.in_channels, arch.input_size) == (7, 3, 64)
    net = build_network(arch).eval()
    net.load_state_dict(state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), tv(x), atol=1e-5)
    torch.save(tv, tmp_path / "pickled.pt")  # a whole pickled module is refused (weights_only)
    with pytest.raises(ValueError, match="weights_only"):
        load_seed_checkpoint(tmp_path / "pickled.pt")
    with pytest.raises(ValueError, match="no checkpoint file"):
        load_seed_checkpoint(tmp_path / "missing.pt")


def test_seed_for_target_keeps_the_features_and_adapts_input_and_classes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    seed = mobilenet_v2(10, 0.25, 28, 3)
    net = build_network(seed)
    path = save_checkpoint(tmp_path / "seed.pt", seed, net.state_dict(), {"note": "x"})
    arch, state = load_seed_checkpoint(path)
    assert arch == seed
    target, tstate = seed_for_target(arch, state, (1, 8, 8), 4)
    assert (target.in_channels, target.input_size, target.num_classes) == (1, 8, 4)
    assert [st.layers for st in target.stages] == [st.layers for st in seed.stages]
    assert torch.allclose(tstate["stem.conv.weight"], state["stem.conv.weight"].sum(1, keepdim=True))
    assert tstate["classifier.weight"].shape == (4, seed.head_channels)
    tnet = build_network(target).eval()
    tnet.load_state_dict(tstate)  # the stem summed over channels: a grey image gives the seed's features
    x = torch.randn(2, 1, 8, 8)
    same = build_network(dataclasses_replace(seed, input_size=8, target=target)).eval()
    same.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(tnet.features(x), same.features(x.expand(-1, 3, -1, -1)), atol=1e-5)


def dataclasses_replace(seed: MBConvArchitecture, *, input_size: int, target: MBConvArchitecture) -> MBConvArchitecture:
    """The seed (3 channels) with the target's strides and input size."""
    import dataclasses

    return dataclasses.replace(target, in_channels=seed.in_channels, num_classes=seed.num_classes)


# --------------------------------------------------------------------------------------------------
# The trials, in process, on digits
# --------------------------------------------------------------------------------------------------

TINY = {"source_dataset": "digits", "target_dataset": "digits", "source_limit": 300, "target_limit": 300,
        "width_mult": 0.25, "max_layers": 2, "epochs_seed": 2, "epochs_adapt": 2, "warmup_epochs": 1,
        "epochs_param": 1, "baselines": True, "batch_size": 32, "seed": 1}


@pytest.mark.slow
def test_the_whole_pipeline_runs_in_process_and_parameter_adaptation_starts_from_the_remapped_seed(
        tmp_path: Path) -> None:
    fna, task, adaptation = split_fna_settings({**TINY, "checkpoint_dir": str(tmp_path)})
    pipeline = FnaPipeline(fna)
    data: dict = {}
    reports: dict[str, ListReporter] = {}
    while not pipeline.finished:
        for job in pipeline.ask():
            reporter = reports[job.kind] = ListReporter()
            result = run_fna_job(job, task, adaptation, reporter, data=data)
            assert reporter.finals == [result] and result["candidate"] == job.id
            pipeline.tell(job.id, result)
    summary = pipeline.summary()
    assert summary["status"] == "finished", summary
    adapt = reports["adapt"]
    assert [m["epoch"] for m in adapt.intermediates] == [1, 2]
    assert all("expected_madds" in m for m in adapt.intermediates)
    derived = MBConvArchitecture.from_dict(adapt.finals[0]["architecture"])
    param = reports["param"].finals[0]
    assert param["arch_id"] == derived.id and param["madds"] == derived.num_madds() and 0 <= param["test_acc"] <= 1
    assert param["weights"] == "remapped from the seed" and reports["scratch"].finals[0]["weights"] == "random init"
    # the parameter adaptation started from the seed's weights remapped into the derived architecture
    from nni_nas_ext.trial_code.fna_trial import load_checkpoint
    from nni_nas_ext.trial_code.training import evaluate

    seed_arch, seed_state, _ = load_checkpoint(tmp_path / "seed-0000.pt")
    target_seed, target_state = seed_for_target(seed_arch, seed_state, (1, 8, 8), 10, seed=1)
    net = build_network(derived)
    net.load_state_dict(remap_state_dict(target_seed, target_state, derived))
    assert param["start_val_acc"] == evaluate(net, data["target"].val_x, data["target"].val_y)
    assert reports["seed_finetune"].finals[0]["arch_id"] == target_seed.id
    assert all(r.finals[0]["cpu_seconds"] > 0 for r in reports.values())


def test_a_failing_trial_reports_its_failure_first(tmp_path: Path) -> None:
    from nni_nas_ext.trial_code.trial import TrialFailed

    fna, task, adaptation = split_fna_settings({**TINY, "checkpoint_dir": str(tmp_path)})
    job = FnaJob(id="adapt-0001", kind="adapt", epochs=2, parent="seed-0000")  # its seed was never trained
    reporter = ListReporter()
    with pytest.raises(TrialFailed, match="no checkpoint file"):
        run_fna_job(job, task, adaptation, reporter)
    assert reporter.finals[0]["candidate"] == job.id and "no checkpoint file" in reporter.finals[0]["failed"]
