"""The MobileNetV2 family (nni_nas_ext.core.mbconv): values, torchvision equivalence, costs
(FNA's space and super-network: test_mbconv_supernet.py)."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torchvision
from torch import nn

from nni_nas_ext.core.errors import ArchitectureError
from _mbconv_helpers import random_choice, randomise, small_seed

from nni_nas_ext.core.mbconv import (
    MBConvArchitecture, MBConvOp, Stage, build_network, mobilenet_v2, small_input_strides,
    state_dict_to_torchvision, torchvision_architecture, torchvision_to_state_dict,
)
from nni_nas_ext.search_spaces.mbconv_space import SuperNetSpace

TOLERANCE = 1e-5


# --------------------------------------------------------------------------------------------------
# Values
# --------------------------------------------------------------------------------------------------


def test_values_validate_and_name_the_field() -> None:
    with pytest.raises(ArchitectureError, match="kernel must be an odd positive integer, but found 4"):
        MBConvOp(4, 6)
    with pytest.raises(ArchitectureError, match="expansion must be a positive integer, but found 0"):
        MBConvOp(3, 0)
    with pytest.raises(ArchitectureError, match=r"first layer \(layers\[0\]\) must not be a skip"):
        Stage(16, 1, (None, MBConvOp(3, 6)))
    with pytest.raises(ArchitectureError, match="stride must be 1 or 2, but found 3"):
        Stage(16, 3, (MBConvOp(3, 6),))
    stage = Stage(16, 1, (MBConvOp(3, 1),))
    with pytest.raises(ArchitectureError, match="num_classes must be a positive integer, but found 0"):
        MBConvArchitecture((stage,), num_classes=0, input_size=32)
    with pytest.raises(ArchitectureError, match="dropout must lie in"):
        MBConvArchitecture((stage,), num_classes=2, input_size=32, dropout=1.0)
    with pytest.raises(ArchitectureError, match="stem_stride must be 1 or 2"):
        MBConvArchitecture((stage,), num_classes=2, input_size=32, stem_stride=4)
    with pytest.raises(ArchitectureError, match="stages must be a non-empty tuple"):
        MBConvArchitecture((), num_classes=2, input_size=32)
    assert MBConvOp.parse("k7_e3") == MBConvOp(7, 3)
    with pytest.raises(ArchitectureError, match="'k<kernel>_e<expansion>'"):
        MBConvOp.parse("conv3")


def test_dict_round_trip_and_stable_id() -> None:
    space = SuperNetSpace(small_seed())
    arch = space.derive(random_choice(space, random.Random(3)))
    data = json.loads(json.dumps(arch.to_dict()))
    again = MBConvArchitecture.from_dict(data)
    assert again == arch and again.id == arch.id and len(arch.id) == 16
    assert mobilenet_v2().id == mobilenet_v2().id != mobilenet_v2(num_classes=10).id
    with pytest.raises(ArchitectureError, match=r"extra keys \['colour'\]"):
        MBConvArchitecture.from_dict({**data, "colour": 1})
    with pytest.raises(ArchitectureError, match="needs key 'stages'"):
        MBConvArchitecture.from_dict({k: v for k, v in data.items() if k != "stages"})
    assert "parameters" in arch.describe() and "MAdds" in arch.describe()


# --------------------------------------------------------------------------------------------------
# torchvision
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "classes"), [(1.0, 1000), (0.35, 10), (0.75, 7), (1.4, 3)])
def test_parameter_count_equals_torchvision(width: float, classes: int) -> None:
    tv = torchvision.models.mobilenet_v2(weights=None, num_classes=classes, width_mult=width)
    arch = mobilenet_v2(num_classes=classes, width_mult=width)
    assert arch.num_parameters() == sum(p.numel() for p in tv.parameters())
    assert arch.num_parameters() == sum(p.numel() for p in build_network(arch).parameters())
    assert torchvision_architecture(tv.state_dict()) == arch


def test_madds_of_mobilenet_v2_is_the_published_300m() -> None:
    # Sandler et al. 2018, Table 4: 300M multiply-adds at 224x224, width 1.0.
    madds = mobilenet_v2().num_madds()
    assert madds == 300_774_272
    assert abs(madds - 300e6) / 300e6 < 0.01


def test_madds_formula_agrees_with_counting_hooks() -> None:
    """num_madds counted by forward hooks on the built network, for random derived architectures."""
    space = SuperNetSpace(mobilenet_v2(num_classes=5, width_mult=0.35, input_size=40))
    rng = random.Random(0)
    for _ in range(3):
        arch = space.derive(random_choice(space, rng))
        net = build_network(arch).eval()
        counted = []

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor, counted: list = counted) -> None:
            if isinstance(module, nn.Conv2d):
                counted.append(output[0].numel() * module.weight[0].numel())
            else:
                counted.append(module.weight.numel())

        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.register_forward_hook(hook)
        with torch.no_grad():
            net(torch.zeros(1, 3, 40, 40))
        assert sum(counted) == arch.num_madds()
        assert sum(p.numel() for p in net.parameters()) == arch.num_parameters()


def check_torchvision_equivalence(width: float, size: int, classes: int, seed: int) -> None:
    tv = randomise(torchvision.models.mobilenet_v2(weights=None, num_classes=classes, width_mult=width), seed)
    arch = mobilenet_v2(num_classes=classes, width_mult=width, input_size=size)
    sd = torchvision_to_state_dict(tv.state_dict(), arch)
    net = build_network(arch)
    net.load_state_dict(sd)  # strict
    net.eval()
    x = torch.randn(2 if size < 224 else 1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected, got = tv(x), net(x)
    assert expected.abs().max() > 1e-2  # a function worth comparing
    assert (expected - got).abs().max().item() < TOLERANCE
    back = state_dict_to_torchvision(net.state_dict(), arch)
    fresh = torchvision.models.mobilenet_v2(weights=None, num_classes=classes, width_mult=width)
    fresh.load_state_dict(back)  # strict: every key and shape of torchvision
    for key, value in tv.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_torchvision_equivalence_224_width_1() -> None:
    check_torchvision_equivalence(1.0, 224, 1000, seed=1)


@pytest.mark.parametrize(("width", "size", "classes"), [(0.35, 96, 10), (0.5, 64, 3)])
def test_torchvision_equivalence_small(width: float, size: int, classes: int) -> None:
    check_torchvision_equivalence(width, size, classes, seed=2)


def test_users_torchvision_checkpoint_file_loads(tmp_path) -> None:  # noqa: ANN001
    tv = randomise(torchvision.models.mobilenet_v2(weights=None, num_classes=10, width_mult=0.35), 4)
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(tv.state_dict(), path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    arch = torchvision_architecture(loaded, input_size=64)
    assert arch == mobilenet_v2(num_classes=10, width_mult=0.35, input_size=64)
    net = build_network(arch)
    net.load_state_dict(torchvision_to_state_dict(loaded, arch))
    net.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (net(x) - tv(x)).abs().max().item() < TOLERANCE
    # a DataParallel checkpoint ("module." prefix) loads too
    prefixed = {f"module.{k}": v for k, v in loaded.items()}
    assert torchvision_to_state_dict(prefixed, arch).keys() == net.state_dict().keys()


def test_mismatched_checkpoint_raises_with_shapes_and_remedy() -> None:
    sd = torchvision.models.mobilenet_v2(weights=None, num_classes=1000, width_mult=0.35).state_dict()
    with pytest.raises(ValueError) as info:
        torchvision_to_state_dict(sd, mobilenet_v2(num_classes=10, width_mult=0.35))
    message = str(info.value)
    assert "classifier.1.weight" in message and "(1000, 1280)" in message and "(10, 1280)" in message
    assert "mobilenet_v2(num_classes=1000" in message and "remap_state_dict" in message
    with pytest.raises(ValueError, match=r"features.0.0.weight.*\(16, 3, 3, 3\).*\(16, 1, 3, 3\).*in_channels=3"):
        torchvision_to_state_dict(sd, mobilenet_v2(num_classes=1000, width_mult=0.35, in_channels=1))
    with pytest.raises(ValueError, match="another width"):
        torchvision_to_state_dict(sd, mobilenet_v2(num_classes=1000, width_mult=0.5))
    with pytest.raises(ValueError, match=r"unexpected keys \['extra.weight'\]"):
        torchvision_to_state_dict({**sd, "extra.weight": torch.zeros(1)}, mobilenet_v2(width_mult=0.35))


# --------------------------------------------------------------------------------------------------
# Small inputs
# --------------------------------------------------------------------------------------------------


def test_small_inputs_build_and_run() -> None:
    mnist = mobilenet_v2(input_size=28, in_channels=1, num_classes=10, width_mult=0.35)
    assert mnist.stem_stride == 1 and [st.stride for st in mnist.stages] == [1, 2, 2, 2, 1, 2, 1]
    assert mnist.feature_sizes() == [28, 28, 14, 7, 4, 4, 2, 2]
    tiny = mobilenet_v2(input_size=8, in_channels=3, num_classes=4, width_mult=0.35)
    assert tiny.stem_stride == 1 and [st.stride for st in tiny.stages] == [1, 1, 1, 2, 1, 2, 1]
    assert tiny.feature_sizes()[-1] == 2
    for arch in (mnist, tiny):
        net = build_network(arch).eval()
        x = torch.randn(3, arch.in_channels, arch.input_size, arch.input_size)
        with torch.no_grad():
            assert net(x).shape == (3, arch.num_classes)
            assert net.features(x).shape[-1] == arch.feature_sizes()[-1]
    assert mobilenet_v2(input_size=224).feature_sizes()[-1] == 7


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 8, 9, 16, 27, 28, 32, 33, 63, 64, 65, 96, 224, 500])
def test_small_input_stride_rule(size: int) -> None:
    keep = small_input_strides(size)
    arch = mobilenet_v2(input_size=size, width_mult=0.35)
    last = arch.feature_sizes()[-1]
    assert last >= 2 if size >= 2 else last == 1
    assert sum(keep) == 5 or (last + 1) // 2 < 2  # one more halving would go below 2x2
    assert list(keep) == sorted(keep)  # the earliest positions are the ones turned to stride 1
