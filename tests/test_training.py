"""The training loop: schedule, learning on digits, determinism, divergence, evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nni_nas_ext.core import build_module
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.trial_code.datasets import DatasetSpec, Splits, load_dataset
from nni_nas_ext.trial_code.augment import Augmentation
from nni_nas_ext.trial_code import training
from nni_nas_ext.trial_code.training import (EpochResult, Schedule, TrainingDiverged, autocast_dtype, evaluate,
                                             memory_format_of, train)

SEED_NET = nash_seed((1, 8, 8), 10, widths=(8, 16, 16))


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset(DatasetSpec("digits"))


def fresh_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_module(SEED_NET)


# ---- Schedule ---------------------------------------------------------------------------------------------


def test_schedule_defaults_are_nash_and_the_cosine_endpoints() -> None:
    s = Schedule(epochs=3)
    assert (s.lr, s.lr_min, s.batch_size, s.momentum) == (0.05, 0.0, 128, 0.9)
    assert s.lr_at(0, 100) == 0.05
    assert s.lr_at(100, 100) == pytest.approx(0.0, abs=1e-15)
    assert s.lr_at(50, 100) == pytest.approx(0.025)
    assert s.lr_at(25, 100) == pytest.approx(0.025 * (1 + math.cos(math.pi / 4)))
    lrs = [s.lr_at(k, 100) for k in range(101)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    warm = Schedule(epochs=1, lr=0.1, lr_min=0.01)
    assert warm.lr_at(0, 10) == 0.1 and warm.lr_at(10, 10) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="step=11, total=10"):
        s.lr_at(11, 10)
    with pytest.raises(ValueError, match="total=0"):
        s.lr_at(0, 0)


@pytest.mark.parametrize(("kwargs", "fragment"), [
    ({"epochs": True}, "epochs=True"),
    ({"epochs": -1}, "epochs=-1"),
    ({"epochs": 1.5}, "epochs=1.5"),
    ({"epochs": "3"}, "epochs='3'"),
    ({"lr": float("nan")}, "lr=nan"),
    ({"lr": float("inf")}, "lr=inf"),
    ({"lr": 0}, "lr=0"),
    ({"lr": True}, "lr=True"),
    ({"lr": "0.1"}, "lr='0.1'"),
    ({"lr_min": 0.1}, "lr_min=0.1"),
    ({"lr_min": -0.01}, "lr_min=-0.01"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"batch_size": True}, "batch_size=True"),
    ({"batch_size": 64.0}, "batch_size=64.0"),
    ({"momentum": 1.0}, "momentum=1.0"),
    ({"momentum": float("nan")}, "momentum=nan"),
    ({"weight_decay": -1e-4}, "weight_decay=-0.0001"),
    ({"weight_decay": float("inf")}, "weight_decay=inf"),
    ({"nesterov": 1}, "nesterov=1"),
    ({"momentum": 0.0}, "nesterov=True"),  # Nesterov without momentum: torch would fail in the trial
    ({"seed": 1.0}, "seed=1.0"),
    ({"seed": False}, "seed=False"),
])
def test_schedule_rejects_bad_values_naming_them(kwargs: dict, fragment: str) -> None:
    args = {"epochs": 1, **kwargs}
    with pytest.raises(ValueError, match="Schedule: ") as info:
        Schedule(**args)
    assert fragment in str(info.value)


def test_schedule_accepts_integers_for_floats() -> None:
    assert Schedule(epochs=2, lr=1, lr_min=0, momentum=0, nesterov=False, weight_decay=0).lr_at(0, 1) == 1


# ---- training -------------------------------------------------------------------------------------------


def test_training_the_nash_seed_on_digits_learns(digits: Splits) -> None:
    net = fresh_net()
    before = evaluate(net, digits.val_x, digits.val_y)
    epochs: list[EpochResult] = []
    first: list[int] = []
    results = train(net, digits.train_x, digits.train_y, Schedule(epochs=4, seed=0),
                    validation=(digits.val_x, digits.val_y), on_epoch=epochs.append,
                    on_first_batch=lambda: first.append(1))
    assert results == epochs and [r.epoch for r in results] == [1, 2, 3, 4] and first == [1]
    assert before < 0.3
    assert results[-1].val_accuracy > 0.8
    assert results[-1].train_loss < results[0].train_loss
    assert 0.0 <= results[-1].train_accuracy <= 1.0 and results[-1].seconds > 0
    assert results[-1].val_accuracy == evaluate(net, digits.val_x, digits.val_y)
    assert evaluate(net, digits.test_x, digits.test_y) > 0.8
    assert net.training  # left in train mode


def test_the_learning_rate_follows_one_cosine_cycle(digits: Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    lrs: list[float] = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        lrs.append(self.param_groups[0]["lr"])
        assert all(g["lr"] == lrs[-1] for g in self.param_groups)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    x, y = digits.train_x[:300], digits.train_y[:300]
    schedule = Schedule(epochs=3, batch_size=100)
    train(fresh_net(), x, y, schedule)
    assert len(lrs) == 9 and lrs[0] == 0.05
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    assert lrs[-1] == pytest.approx(schedule.lr_at(8, 9)) and 0 < lrs[-1] < 0.002


def test_same_seed_same_weights_other_seed_other_batches(digits: Splits) -> None:
    x, y = digits.train_x[:256], digits.train_y[:256]

    def run(shuffle_seed: int) -> dict[str, torch.Tensor]:
        net = fresh_net(0)
        train(net, x, y, Schedule(epochs=1, batch_size=32, seed=shuffle_seed))
        return net.state_dict()

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_zero_epochs_leaves_the_weights(digits: Splits) -> None:
    net = fresh_net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert train(net, digits.train_x, digits.train_y, Schedule(epochs=0)) == []
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_a_last_batch_of_one_example_is_dropped() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10))
    x, y = torch.randn(17, 1, 8, 8), torch.randint(0, 10, (17,))
    results = train(net, x, y, Schedule(epochs=2, batch_size=16))  # BatchNorm1d fails on a batch of one
    assert len(results) == 2
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        net.train()(x[:1])  # what the dropped batch would have done


def test_nan_input_raises_training_diverged_naming_epoch_and_step(digits: Splits) -> None:
    x, y = digits.train_x[:200].clone(), digits.train_y[:200]
    x[137, 0, 3, 3] = float("nan")
    order = torch.randperm(200, generator=torch.Generator().manual_seed(5))
    step = int((order == 137).nonzero()) // 25 + 1
    seen: list[EpochResult] = []
    with pytest.raises(TrainingDiverged, match=rf"epoch 1, step {step} of 8 \(optimisation step {step} overall\)"):
        train(fresh_net(), x, y, Schedule(epochs=2, batch_size=25, seed=5), on_epoch=seen.append)
    assert seen == []


def test_a_huge_learning_rate_diverges(digits: Splits) -> None:
    with pytest.raises(TrainingDiverged, match=r"the training loss became (nan|inf|-inf) in epoch \d+, step \d+"):
        train(fresh_net(), digits.train_x, digits.train_y, Schedule(epochs=3, lr=1e6))


def test_data_and_module_must_share_a_device(digits: Splits) -> None:
    net = fresh_net()
    with pytest.raises(ValueError, match=r"one device: move the data with .to\('cpu'\)"):
        train(net, digits.train_x.to("meta"), digits.train_y.to("meta"), Schedule(epochs=1))
    with pytest.raises(ValueError, match="10 images and 9 labels"):
        train(net, digits.train_x[:10], digits.train_y[:9], Schedule(epochs=1))
    with pytest.raises(ValueError, match="0 images"):
        train(net, digits.train_x[:0], digits.train_y[:0], Schedule(epochs=1))


def test_epochs_time_their_validation_apart(digits: Splits) -> None:
    with_val = train(fresh_net(), digits.train_x, digits.train_y, Schedule(epochs=2),
                     validation=(digits.val_x, digits.val_y))
    assert all(0 < r.val_seconds < r.seconds for r in with_val)
    assert all(r.val_seconds == 0 for r in train(fresh_net(), digits.train_x, digits.train_y, Schedule(epochs=1)))


def test_the_optimiser_step_is_fused_sgd_on_the_cpu(digits: Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    fused: list[object] = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):
        fused.append(self.defaults["fused"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    train(fresh_net(), digits.train_x[:256], digits.train_y[:256], Schedule(epochs=1))
    assert fused == [True, True]


# ---- augmentation and precision ---------------------------------------------------------------------------


def _aug(mode: str, data: Splits) -> Augmentation:
    return Augmentation.for_data(mode, data.input_shape, data.mean, data.std)


def test_augmentation_none_changes_nothing_and_crop_is_reproducible(digits: Splits) -> None:
    x, y = digits.train_x[:512], digits.train_y[:512]

    def run(augment: Augmentation | None, seed: int = 0) -> dict[str, torch.Tensor]:
        net = fresh_net(0)
        train(net, x, y, Schedule(epochs=2, batch_size=64, seed=seed), augment=augment)
        return net.state_dict()

    plain, none = run(None), run(_aug("none", digits))
    crop, crop_again, crop_other = run(_aug("crop", digits)), run(_aug("crop", digits)), run(_aug("crop", digits), 1)
    assert all(torch.equal(plain[k], none[k]) for k in plain)
    assert all(torch.equal(crop[k], crop_again[k]) for k in crop)
    assert not all(torch.equal(crop[k], plain[k]) for k in crop)
    assert not all(torch.equal(crop[k], crop_other[k]) for k in crop)


def test_augmented_batches_are_the_shuffled_batches_shifted(digits: Splits, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same examples in the same order with or without augmentation; only their pixels move."""
    batches: dict[str, list[torch.Tensor]] = {"plain": [], "crop": []}
    current: list[str] = []
    net = fresh_net()
    original = type(net).forward

    def spy(self, x):
        batches[current[0]].append(x.detach().clone())
        return original(self, x)

    monkeypatch.setattr(type(net), "forward", spy)
    x, y = digits.train_x[:300], digits.train_y[:300]
    for mode in ("plain", "crop"):
        current[:] = [mode]
        train(fresh_net(), x, y, Schedule(epochs=2, batch_size=100, seed=3),
              augment=_aug(mode, digits) if mode != "plain" else None)
    assert len(batches["plain"]) == len(batches["crop"]) == 6
    aug = _aug("crop", digits)
    moved = 0
    for a, b in zip(batches["plain"], batches["crop"]):
        # every augmented image is its plain image shifted by at most one pixel (digits: padding 1)
        candidates = torch.stack([aug.apply(a, torch.tensor([[dy, dx, 0]] * len(a)))
                                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
        assert ((candidates == b).flatten(2).all(2)).any(0).all()
        moved += int((a != b).flatten(1).any(1).sum())
    assert moved > 400  # 8 of 9 shifts move the image


def test_training_with_crop_still_learns_digits(digits: Splits) -> None:
    net = fresh_net()
    results = train(net, digits.train_x, digits.train_y, Schedule(epochs=6, seed=0), augment=_aug("crop", digits),
                    validation=(digits.val_x, digits.val_y))
    assert results[-1].val_accuracy > 0.7


def test_autocast_dtype_by_precision_and_device(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    native = training.cpu_has_native_bf16()
    assert autocast_dtype("auto", cpu) is (torch.bfloat16 if native else None)
    assert autocast_dtype("fp32", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    with pytest.raises(ValueError, match="precision='fp16'"):
        autocast_dtype("fp16", cpu)
    # auto follows the CPU's bfloat16 instructions (emulated bfloat16 is not expected to pay)
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: False)
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(training, "cpu_has_native_bf16", lambda: True)
    assert autocast_dtype("auto", cpu) is torch.bfloat16 and autocast_dtype("fp32", cpu) is None


def test_memory_format_by_setting_device_and_autocast() -> None:
    cpu, cuda, cl, nchw = torch.device("cpu"), torch.device("cuda"), torch.channels_last, torch.contiguous_format
    assert memory_format_of("auto", cpu, None) == cl and memory_format_of("auto", cpu, torch.bfloat16) == cl
    assert memory_format_of("auto", cuda, torch.bfloat16) == cl and memory_format_of("auto", cuda, None) == nchw
    assert memory_format_of("contiguous", cpu, torch.bfloat16) == nchw
    assert memory_format_of("channels_last", cuda, None) == cl
    with pytest.raises(ValueError, match="memory_format='nhwc'"):
        memory_format_of("nhwc", cpu, None)


@pytest.mark.parametrize(("precision", "memory_format", "layout"), [
    ("auto", "auto", torch.channels_last),  # the CPU default
    ("fp32", "contiguous", torch.contiguous_format),  # the loop as it was
    ("bf16", "channels_last", torch.channels_last),
])
def test_cpu_layouts_reach_the_batches_and_the_module_comes_back_nchw(
        digits: Splits, monkeypatch: pytest.MonkeyPatch, precision: str, memory_format: str,
        layout: torch.memory_format) -> None:
    net = fresh_net()
    seen: list[tuple[bool, bool]] = []
    original = type(net).forward

    def spy(self, x):
        conv = next(m for m in self.modules() if isinstance(m, nn.Conv2d))
        seen.append((x.is_contiguous(memory_format=layout), conv.weight.is_contiguous(memory_format=layout)))
        return original(self, x)

    monkeypatch.setattr(type(net), "forward", spy)
    train(net, digits.train_x[:256], digits.train_y[:256], Schedule(epochs=1, batch_size=64),
          precision=precision, memory_format=memory_format)
    assert seen == [(True, True)] * 4
    assert all(p.is_contiguous() and p.dtype == torch.float32 for p in net.parameters())
    assert all(v.is_contiguous() for v in net.state_dict().values())  # checkpoints keep the NCHW layout


def test_the_cpu_default_is_reproducible_and_learns_like_the_old_loop(digits: Splits) -> None:
    def run(**kwargs) -> tuple[nn.Module, list[EpochResult]]:
        net = fresh_net()
        return net, train(net, digits.train_x, digits.train_y, Schedule(epochs=4, seed=0),
                          validation=(digits.val_x, digits.val_y), **kwargs)

    default, again, old = run(), run(), run(precision="fp32", memory_format="contiguous")
    assert all(torch.equal(a, b) for a, b in zip(default[0].state_dict().values(), again[0].state_dict().values()))
    assert old[1][-1].val_accuracy > 0.8 and default[1][-1].val_accuracy > 0.8
    assert abs(default[1][-1].val_accuracy - old[1][-1].val_accuracy) < 0.05
    # channels-last alone changes only the order of float32 sums
    nhwc = run(precision="fp32", memory_format="channels_last")
    assert abs(nhwc[1][-1].train_loss - old[1][-1].train_loss) < 1e-3


def test_bf16_autocast_on_the_cpu_trains_float32_weights(digits: Splits) -> None:
    net = fresh_net()
    results = train(net, digits.train_x, digits.train_y, Schedule(epochs=3), precision="bf16",
                    validation=(digits.val_x, digits.val_y))
    assert results[-1].val_accuracy > 0.5
    assert all(p.dtype == torch.float32 for p in net.parameters())


# ---- evaluate -------------------------------------------------------------------------------------------


def test_evaluate_uses_eval_mode_and_restores_the_mode(digits: Splits) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.BatchNorm1d(32), nn.Dropout(0.9), nn.Linear(32, 10))
    running = net[2].running_mean.clone()
    x, y = digits.val_x, digits.val_y
    expected = float((net.eval()(x).argmax(1) == y).float().mean())
    net.train()
    first = evaluate(net, x, y, batch_size=50)
    assert net.training
    assert first == pytest.approx(expected) and evaluate(net, x, y) == first  # no dropout noise
    assert torch.equal(net[2].running_mean, running)  # BatchNorm statistics untouched
    net.eval()
    evaluate(net, x, y)
    assert not net.training
    assert evaluate(net, x[:0], y[:0]) == 0.0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda(digits: Splits) -> None:
    net = fresh_net().cuda()
    x, y = digits.train_x.cuda(), digits.train_y.cuda()
    results = train(net, x, y, Schedule(epochs=4), validation=(digits.val_x.cuda(), digits.val_y.cuda()))
    assert results[-1].val_accuracy > 0.8
    assert evaluate(net, digits.test_x, digits.test_y) > 0.8  # CPU data, moved batch by batch
    with pytest.raises(ValueError, match="one device"):
        train(net, digits.train_x, digits.train_y, Schedule(epochs=1))
    xn = x[:256].clone()
    xn[3] = float("inf")
    with pytest.raises(TrainingDiverged, match="epoch 1"):
        train(fresh_net().cuda(), xn, y[:256], Schedule(epochs=1, batch_size=8))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["auto", "fp32"])
def test_cuda_precision_layout_and_augmentation(digits: Splits, precision: str) -> None:
    net = fresh_net().cuda()
    aug = Augmentation.for_data("crop", digits.input_shape, digits.mean, digits.std)
    results = train(net, digits.train_x.cuda(), digits.train_y.cuda(), Schedule(epochs=4), augment=aug,
                    precision=precision, validation=(digits.val_x.cuda(), digits.val_y.cuda()))
    assert results[-1].val_accuracy > 0.6
    # handed back in the default layout, float32, whatever ran inside
    assert all(p.is_contiguous() and p.dtype == torch.float32 for p in net.parameters())
