"""Knowledge distillation from the parent (LEMONADE's children of approximate morphisms): the loss, the training
loop with a teacher, the trial's choice of when to distil, the settings."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from _reporters import ListReporter

from nni_nas_ext.core import Step, build_module, create_morphism, random_chain
from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.core.jobs import Candidate, candidate_id
from nni_nas_ext.nni.baselines.nni_strategies import split_strategy_settings
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.trial_code import trial as trial_module
from nni_nas_ext.trial_code.augment import Augmentation
from nni_nas_ext.trial_code.datasets import DatasetSpec, Splits, load_dataset
from nni_nas_ext.trial_code.distillation import (DISTILL_TEMPERATURE, DISTILL_WEIGHT, check_distillation,
                                                 distillation_loss, soft_kl)
from nni_nas_ext.trial_code.training import Schedule, evaluate, train
from nni_nas_ext.trial_code.trial import TaskConfig, run_candidate

SEED_NET = nash_seed((1, 8, 8), 10, widths=(8, 16, 16))


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset(DatasetSpec("digits"))


def fresh_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_module(SEED_NET)


def mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


# ---- the loss ---------------------------------------------------------------------------------------------


def _softmax(row: list[float], temperature: float) -> list[float]:
    top = max(v / temperature for v in row)
    e = [math.exp(v / temperature - top) for v in row]
    return [v / sum(e) for v in e]


STUDENT = [[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]]
TEACHER = [[3.0, 1.0, 0.0], [0.0, 0.0, 2.0]]
LABELS = [2, 0]


def test_the_loss_is_hintons_formula_on_a_hand_made_example() -> None:
    w, t = 0.3, 2.0
    ce = sum(-math.log(_softmax(s, 1.0)[y]) for s, y in zip(STUDENT, LABELS)) / 2
    kl = sum(sum(p * math.log(p / q) for p, q in zip(_softmax(tr, t), _softmax(s, t)))
             for s, tr in zip(STUDENT, TEACHER)) / 2
    student, teacher, labels = torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS)
    loss = distillation_loss(student, teacher, labels, weight=w, temperature=t)
    assert loss.dim() == 0
    assert float(loss) == pytest.approx((1 - w) * ce + w * t ** 2 * kl, rel=1e-5)
    # the two ends: the labels alone, the soft targets alone (times T^2)
    assert float(distillation_loss(student, teacher, labels, weight=0.0, temperature=t)) == pytest.approx(ce, rel=1e-5)
    assert float(distillation_loss(student, teacher, labels, weight=1.0, temperature=t)) == \
        pytest.approx(t ** 2 * kl, rel=1e-5)
    assert soft_kl(student, teacher, t) == pytest.approx(kl, rel=1e-5)
    # a student that already predicts as its teacher pays only for the labels
    same = distillation_loss(student, student.clone(), labels, weight=w, temperature=t)
    assert float(same) == pytest.approx((1 - w) * ce, rel=1e-5)


def test_the_loss_sends_no_gradient_to_the_teacher() -> None:
    student = torch.tensor(STUDENT, requires_grad=True)
    teacher = torch.tensor(TEACHER, requires_grad=True)
    distillation_loss(student, teacher, torch.tensor(LABELS), weight=0.5, temperature=4.0).backward()
    assert student.grad is not None and bool(student.grad.abs().sum() > 0)
    assert teacher.grad is None


def test_the_defaults_are_hintons() -> None:
    assert (DISTILL_WEIGHT, DISTILL_TEMPERATURE) == (0.9, 4.0)
    task = TaskConfig(dataset="digits")
    assert (task.distill_weight, task.distill_temperature) == (DISTILL_WEIGHT, DISTILL_TEMPERATURE)


@pytest.mark.parametrize(("weight", "temperature", "fragment"), [
    (1.5, 4.0, "distill_weight=1.5"),
    (-0.1, 4.0, "distill_weight=-0.1"),
    (True, 4.0, "distill_weight=True"),
    (float("nan"), 4.0, "distill_weight=nan"),
    (0.5, 0.0, "distill_temperature=0.0"),
    (0.5, -1, "distill_temperature=-1"),
    (0.5, float("inf"), "distill_temperature=inf"),
])
def test_bad_weights_and_temperatures_are_refused_naming_them(weight: float, temperature: float,
                                                               fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        check_distillation(weight, temperature)
    assert fragment in str(info.value)
    with pytest.raises(ValueError) as info:
        distillation_loss(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS), weight=weight,
                          temperature=temperature)
    assert fragment in str(info.value)
    with pytest.raises(ValueError) as info:  # before any step is taken
        train(mlp(0), torch.zeros(4, 1, 8, 8), torch.zeros(4, dtype=torch.long), Schedule(epochs=1),
              teacher=mlp(1), distill_weight=weight, distill_temperature=temperature)
    assert fragment in str(info.value)


def test_teacher_and_student_logits_must_have_one_shape() -> None:
    with pytest.raises(ValueError, match=r"one shape, but got \(2, 3\) and \(2, 4\)"):
        distillation_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2, dtype=torch.long))


# ---- training with a teacher ------------------------------------------------------------------------------


def test_weight_zero_trains_exactly_as_without_a_teacher(digits: Splits) -> None:
    x, y = digits.train_x[:256], digits.train_y[:256]
    schedule = Schedule(epochs=2, batch_size=64, seed=3)
    teacher = fresh_net(1)
    calls: list[int] = []
    teacher.register_forward_hook(lambda module, inputs, output: calls.append(1))
    plain, zero, distilled = fresh_net(0), fresh_net(0), fresh_net(0)
    a = train(plain, x, y, schedule)
    b = train(zero, x, y, schedule, teacher=teacher, distill_weight=0.0)
    assert calls == []  # w = 0: the teacher never runs
    assert all(torch.equal(v, zero.state_dict()[k]) for k, v in plain.state_dict().items())
    assert [r.train_loss for r in a] == [r.train_loss for r in b]
    train(distilled, x, y, schedule, teacher=teacher, distill_weight=0.5)
    assert len(calls) == 8  # w > 0: once per batch (2 epochs of 4 batches)
    assert not all(torch.equal(v, distilled.state_dict()[k]) for k, v in plain.state_dict().items())


def test_the_teacher_sees_the_augmented_batches_in_eval_mode_and_comes_back_unchanged(digits: Splits) -> None:
    x, y = digits.train_x[:200], digits.train_y[:200]
    student, teacher = fresh_net(0), fresh_net(1)
    teacher.train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    seen: dict[str, list[torch.Tensor]] = {"student": [], "teacher": []}
    modes: list[bool] = []

    def keep(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen[name].append(inputs[0].detach().clone())
            if name == "teacher":
                modes.append(module.training)
        return hook

    student.register_forward_hook(keep("student"))
    teacher.register_forward_hook(keep("teacher"))
    aug = Augmentation.for_data("crop", digits.input_shape, digits.mean, digits.std)
    train(student, x, y, Schedule(epochs=2, batch_size=50, seed=1), augment=aug, teacher=teacher,
          distill_weight=0.9, distill_temperature=4.0)
    assert len(seen["teacher"]) == len(seen["student"]) == 8
    assert all(torch.equal(a, b) for a, b in zip(seen["student"], seen["teacher"]))
    assert modes == [False] * 8  # eval mode: BatchNorm's running statistics...
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())  # ...and weights untouched
    assert teacher.training  # handed back in its own mode
    assert all(p.is_contiguous() and p.grad is None for p in teacher.parameters())  # default layout, no gradient


def test_a_distilled_student_moves_its_soft_predictions_toward_its_teacher(digits: Splits) -> None:
    x, y = digits.train_x[:512], digits.train_y[:512]
    teacher = mlp(1)
    with torch.no_grad():
        target = teacher(x)

    def distance(net: nn.Module) -> float:
        with torch.no_grad():
            return soft_kl(net(x), target, 4.0)

    distilled, labels_only = mlp(2), mlp(2)
    start = distance(distilled)
    schedule = Schedule(epochs=30, batch_size=32, lr=0.1, seed=0)  # 480 steps of a tiny MLP: well under a second
    train(distilled, x, y, schedule, teacher=teacher, distill_weight=1.0, distill_temperature=4.0, precision="fp32")
    train(labels_only, x, y, schedule, precision="fp32")
    assert start > 0
    assert distance(distilled) < 0.5 * start
    assert distance(distilled) < distance(labels_only)  # the teacher, not the training, moved it


def test_the_teacher_must_share_the_students_device(digits: Splits) -> None:
    with pytest.raises(ValueError, match=r"the teacher \(meta\) and the module \(cpu\) must be on one device"):
        train(mlp(0), digits.train_x[:64], digits.train_y[:64], Schedule(epochs=1), teacher=mlp(1).to("meta"))


# ---- the trial: distil only a child of an approximate morphism that inherits weights ------------------------


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> TaskConfig:
    return TaskConfig(dataset="digits", checkpoint_dir=str(tmp_path_factory.mktemp("store")))


@pytest.fixture(scope="module")
def trained_parent(task: TaskConfig, digits: Splits):
    seed = nash_seed((1, 8, 8), 10, widths=(8, 16, 16))
    cand = Candidate(candidate_id(seed, 0), seed, None, 2, "train", False, "seed", 0)
    return cand, run_candidate(cand, task, ListReporter(), data=digits)


def test_only_the_compression_operators_call_for_distillation(trained_parent) -> None:
    parent, _ = trained_parent
    widen = random_chain(parent.architecture, [create_morphism("widen")], 1, np.random.default_rng(3))
    noisy = random_chain(parent.architecture, [create_morphism("widen", mode="noise")], 1, np.random.default_rng(3))
    steps = list(widen.child.lineage.steps)
    assert not trial_module._compresses([]) and not trial_module._compresses(steps)
    assert not trial_module._compresses(list(noisy.child.lineage.steps))  # EAS's approximate widening: no teacher
    for op in ("remove_layer", "remove_skip", "shrink"):
        assert trial_module._compresses([*steps, Step(op, {"node": "conv1"})]), op


@pytest.mark.parametrize(("case", "distils"), [
    ("exact chain", False),
    ("inexact chain", True),
    ("inexact chain, distill_weight 0", False),
    ("inexact chain, no inheritance", False),
    ("inexact, same architecture", False),
])
def test_the_trial_distils_only_inexact_lineages_that_inherit(trained_parent, task: TaskConfig, digits: Splits,
                                                              monkeypatch: pytest.MonkeyPatch, case: str,
                                                              distils: bool) -> None:
    parent, parent_result = trained_parent
    teachers: list[float | None] = []  # what train() was given: the teacher's validation accuracy, or None
    original = trial_module.train

    def spy(*args, **kwargs):
        teacher = kwargs["teacher"]
        teachers.append(None if teacher is None else evaluate(teacher, digits.val_x, digits.val_y))
        return original(*args, **kwargs)

    monkeypatch.setattr(trial_module, "train", spy)
    serial = 10 + ["exact chain", "inexact chain", "inexact chain, distill_weight 0", "inexact chain, no inheritance",
                   "inexact, same architecture"].index(case)
    operator = create_morphism("widen" if case == "exact chain" else "shrink")  # shrink: a compression morphism
    chain = random_chain(parent.architecture, [operator], 1, np.random.default_rng(serial))
    arch = parent.architecture if case == "inexact, same architecture" else chain.child
    inherits = None if case == "inexact chain, no inheritance" else parent.id
    child = Candidate(candidate_id(arch, serial), arch, inherits, 1, "train", False, "child", 1)
    settings = TaskConfig(dataset="digits", checkpoint_dir=task.checkpoint_dir,
                          distill_weight=0.0 if case.endswith("distill_weight 0") else DISTILL_WEIGHT)
    reporter = ListReporter()
    result = run_candidate(child, settings, reporter, data=digits)
    assert reporter.finals == [result] and result["distilled"] is distils
    assert len(teachers) == 1
    if distils:  # the teacher is the parent's network, with the parent's trained weights
        assert abs(teachers[0] - parent_result["default"]) <= 1 / len(digits.val_y) + 1e-12
        assert result["preservation_error"] is not None
    else:
        assert teachers == [None]
    assert parent_result["distilled"] is False  # a seed has no parent to learn from


def test_task_refuses_a_misspelt_distillation_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'distil_weight'; did you mean 'distill_weight'"):
        TaskConfig.from_dict({"dataset": "digits", "distil_weight": 0.5})


@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"distill_weight": 1.5}, ["'distill_weight' must be float in [0, 1]", "got 1.5", "out of range"]),
    ({"distill_weight": -0.1}, ["'distill_weight' must be float in [0, 1]", "got -0.1"]),
    ({"distill_weight": True}, ["'distill_weight'", "a bool is not a number"]),
    ({"distill_temperature": 0.5}, ["'distill_temperature' must be float in [1, 100]", "got 0.5"]),
    ({"distill_temperature": float("nan")}, ["'distill_temperature'", "not finite"]),
])
def test_task_rejects_bad_distillation_settings_naming_key_value_and_range(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        TaskConfig(dataset="digits", **kwargs)
    assert all(f in str(info.value) for f in fragments), str(info.value)
    assert info.value.key == next(iter(kwargs))


def test_nni_strategies_refuse_the_distillation_settings() -> None:
    for key in ("distill_weight", "distill_temperature"):
        expected = rf"'{key}' is not a setting of NNI's strategies: .*\(no parent to distil from\); remove it"
        with pytest.raises(ConfigError, match=expected):
            split_strategy_settings({"strategy": "random", key: 0.5})
