"""Measured latency at batch 1 (a cheap objective of LEMONADE), and the cost keys of every final result."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import nn

from _reporters import ListReporter

from nni_nas_ext.core.jobs import Candidate, candidate_id
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.trial_code import latency as latency_module
from nni_nas_ext.trial_code.datasets import Splits, load_dataset
from nni_nas_ext.trial_code.latency import LatencyResult, device_description, measure_latency
from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.trial_code.scratch import train_from_scratch
from nni_nas_ext.trial_code.trial import TaskConfig, run_candidate


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(),
                         nn.Dropout(0.5), nn.Linear(4 * 8 * 8, 10))


def _threads_suffix() -> str:
    n = torch.get_num_threads()
    return f", {n} thread{'s' if n != 1 else ''}"


def test_latency_is_a_positive_median_of_the_repeats_with_the_machine_named() -> None:
    net = tiny_cnn().train()
    rng_before = torch.get_rng_state()
    result = measure_latency(net, (1, 8, 8), "cpu", warmup=2, repeats=7)
    assert isinstance(result, LatencyResult) and result.repeats == 7 and len(result.times_ms) == 7
    assert all(math.isfinite(t) and t > 0 for t in result.times_ms)
    assert math.isfinite(result.median_ms) and result.median_ms > 0
    assert result.median_ms == statistics.median(result.times_ms)
    assert min(result.times_ms) <= result.median_ms <= max(result.times_ms)
    assert result.device_name.startswith("cpu: ") and result.device_name.endswith(_threads_suffix())
    assert net.training  # handed back in its own mode
    assert torch.equal(torch.get_rng_state(), rng_before)  # its input comes from its own generator


def test_latency_is_the_median_of_what_the_clock_says_and_warmup_is_not_timed() -> None:
    ticks = iter([0.0, 0.005, 1.0, 1.001, 2.0, 2.003, 3.0, 3.002, 4.0, 4.004])  # passes of 5, 1, 3, 2, 4 ms
    calls: list[float] = []

    def clock() -> float:
        calls.append(next(ticks))
        return calls[-1]

    result = measure_latency(tiny_cnn(), (1, 8, 8), torch.device("cpu"), warmup=3, repeats=5, clock=clock)
    assert len(calls) == 10  # two readings per timed pass, none during the three warm-up passes
    assert result.times_ms == pytest.approx((5.0, 1.0, 3.0, 2.0, 4.0))
    assert result.median_ms == pytest.approx(3.0) and result.repeats == 5


def test_latency_runs_in_eval_mode_under_inference_mode() -> None:
    seen: list[tuple[bool, bool, int]] = []

    class Probe(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append((self.training, torch.is_inference_mode_enabled(), x.shape[0]))
            return x

    net = nn.Sequential(Probe(), nn.Flatten(), nn.Linear(64, 10))
    measure_latency(net, (1, 8, 8), "cpu", warmup=1, repeats=3)
    assert seen == [(False, True, 1)] * 4  # batch 1, warm-up included


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"input_shape": (0, 8, 8)}, "input_shape=(0, 8, 8)"),
    ({"input_shape": ()}, "input_shape=()"),
    ({"warmup": -1}, "warmup=-1"),
    ({"repeats": 0}, "repeats=0"),
    ({"repeats": True}, "repeats=True"),
])
def test_bad_measurement_arguments_are_refused_naming_them(kwargs: dict, fragment: str) -> None:
    args = {"input_shape": (1, 8, 8), "warmup": 0, "repeats": 3, **kwargs}
    with pytest.raises(ValueError) as info:
        measure_latency(tiny_cnn(), args.pop("input_shape"), "cpu", **args)
    assert fragment in str(info.value)


def test_the_cpu_is_named_from_proc_cpuinfo(tmp_path) -> None:
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: Test\nmodel name\t: Fancy CPU 9000 @ 3.00GHz\nflags\t: fpu\n")
    assert latency_module._cpu_model(info) == "Fancy CPU 9000 @ 3.00GHz"
    assert latency_module._cpu_model(tmp_path / "missing")  # another system: platform's answer, never empty
    assert device_description("cpu") == f"cpu: {latency_module._cpu_model()}{_threads_suffix()}"


# ---- in the trial -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data() -> Splits:
    return load_dataset(TaskConfig(dataset="digits").dataset_spec())


@pytest.mark.parametrize("measure", [False, True])
def test_the_final_result_carries_costs_and_latency_when_asked(tmp_path, data: Splits, measure: bool) -> None:
    task = TaskConfig(dataset="digits", checkpoint_dir=str(tmp_path / "store"), measure_latency=measure,
                      latency_repeats=5, latency_warmup=1)
    seed = nash_seed((1, 8, 8), 10, widths=(4, 8, 8))
    cand = Candidate(candidate_id(seed, 0), seed, None, 1, "train", False, "seed", 0)
    reporter = ListReporter()
    result = run_candidate(cand, task, reporter, data=data)
    assert reporter.finals == [result]
    assert result["default"] == reporter.intermediates[-1]["default"]  # still the validation accuracy
    assert result["params"] == seed.num_parameters() and result["macs"] == seed.num_macs() > 0
    assert result["flops"] == result["macs"]  # the old name of the same count, for its readers
    assert result["distilled"] is False
    if measure:
        assert math.isfinite(result["latency_ms"]) and result["latency_ms"] > 0
        assert result["latency_device"].startswith("cpu: ") and result["latency_device"].endswith(_threads_suffix())
        assert result["timings"]["latency"] >= 0
    else:
        assert "latency_ms" not in result and "latency_device" not in result and "latency" not in result["timings"]


@pytest.mark.parametrize("measure", [False, True])
def test_networks_trained_from_scratch_report_latency_when_asked(data: Splits, measure: bool) -> None:
    task = TaskConfig(dataset="digits", measure_latency=measure, latency_repeats=3, latency_warmup=0)
    result = train_from_scratch(lambda d: nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), task, 1, ListReporter(),
                                sequence=0, rebuild={"graph": "tiny"}, what="a tiny net", data=data)
    assert ("latency_ms" in result) is measure and ("latency_device" in result) is measure
    if measure:
        assert result["latency_ms"] > 0 and result["latency_device"].startswith("cpu: ")


@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"measure_latency": "yes"}, ["'measure_latency'", "use true or false"]),
    ({"latency_repeats": 0}, ["'latency_repeats' must be int in [1, 100000]", "got 0"]),
    ({"latency_repeats": 2.5}, ["'latency_repeats'", "got 2.5"]),
    ({"latency_warmup": -1}, ["'latency_warmup' must be int in [0, 100000]", "got -1"]),
])
def test_task_rejects_bad_latency_settings_naming_key_value_and_range(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        TaskConfig(dataset="digits", **kwargs)
    assert all(f in str(info.value) for f in fragments), str(info.value)
    assert info.value.key == next(iter(kwargs))


def test_latency_is_off_by_default() -> None:
    task = TaskConfig(dataset="digits")
    assert task.measure_latency is False and task.latency_repeats == 50 and task.latency_warmup == 10
