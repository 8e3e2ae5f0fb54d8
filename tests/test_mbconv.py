"""The MobileNetV2 family (nni_nas_ext.core.mbconv): values, torchvision equivalence, costs, FNA's space
and super-network."""

from __future__ import annotations

import json
import random

import pytest
import torch
import torchvision
from torch import nn

from nni_nas_ext.core.errors import ArchitectureError
from _mbconv_helpers import randomise

from nni_nas_ext.core.mbconv import (
    EXPANSIONS, KERNELS, MBConvArchitecture, MBConvOp, MBConvSuperNet, MixedLayer, Stage, SuperNetSpace,
    build_network, mobilenet_v2, small_input_strides, state_dict_to_torchvision, state_shapes,
    supernet_state_shapes, torchvision_architecture, torchvision_to_state_dict,
)

TOLERANCE = 1e-5


def random_choice(space: SuperNetSpace, rng: random.Random) -> dict[str, int]:
    return {space.label(*slot): rng.randrange(len(space.ops(*slot))) for slot in space.layer_slots()}


def small_seed(num_classes: int = 10) -> MBConvArchitecture:
    return mobilenet_v2(num_classes=num_classes, width_mult=0.35, input_size=32)


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

        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
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


# --------------------------------------------------------------------------------------------------
# FNA's search space
# --------------------------------------------------------------------------------------------------


def test_space_slots_ops_labels_and_errors() -> None:
    seed = mobilenet_v2(num_classes=10, width_mult=0.35, input_size=32)
    space = SuperNetSpace(seed)
    assert space.layer_slots()[0] == (1, 0) and len(space.layer_slots()) == 6 * 4
    assert space.ops(1, 0) == [MBConvOp(k, e) for k in KERNELS for e in EXPANSIONS]
    assert space.ops(1, 1)[-1] is None and len(space.ops(1, 1)) == 7
    assert space.label(2, 3) == "s2_l3" and space.slot_of("s2_l3") == (2, 3)
    assert space.size() == 6 ** 6 * 7 ** 18
    choice = random_choice(space, random.Random(0))
    with pytest.raises(ValueError, match=r"misses slots \['s1_l0'\]"):
        space.derive({k: v for k, v in choice.items() if k != "s1_l0"})
    with pytest.raises(ValueError, match=r"choice\[s1_l0\] must be an op index in \[0, 6\)"):
        space.derive({**choice, "s1_l0": 6})
    with pytest.raises(ValueError, match="unknown slot label 's0_l0'"):
        space.derive({**choice, "s0_l0": 0})
    with pytest.raises(KeyError, match="not a searchable slot"):
        space.ops(0, 0)
    with pytest.raises(ArchitectureError, match="max_layers must be a positive integer"):
        SuperNetSpace(seed, max_layers=0)
    assert SuperNetSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    # slots and labels are interchangeable keys; the stage stays fixed; skips keep their slot
    by_slot = {space.slot_of(k): v for k, v in choice.items()}
    assert space.derive(by_slot) == space.derive(choice)
    derived = space.derive(choice)
    assert derived.stages[0] == seed.stages[0]
    assert all(len(derived.stages[s].layers) == 4 for s in space.searchable_stages)
    assert space.encode(derived) == choice


def test_op_madds_sum_equals_num_madds() -> None:
    rng = random.Random(1)
    for seed in (mobilenet_v2(num_classes=10, width_mult=0.35, input_size=28, in_channels=1),
                 mobilenet_v2(num_classes=1000, width_mult=1.0, input_size=224)):
        space = SuperNetSpace(seed)
        for _ in range(20):
            choice = random_choice(space, rng)
            expected = space.fixed_madds() + sum(space.op_madds(*space.slot_of(k))[v] for k, v in choice.items())
            assert space.derive(choice).num_madds() == expected
        assert all(space.op_madds(*slot)[-1] == 0 for slot in space.layer_slots() if slot[1] > 0)
    # the seed itself (re-expressed in the space) costs what it costs
    seed = mobilenet_v2(num_classes=10, width_mult=0.35, input_size=32)
    space = SuperNetSpace(seed, expansions=(1, 3, 6))
    assert space.derive(space.encode(seed)).num_madds() == seed.num_madds()


# --------------------------------------------------------------------------------------------------
# The super-network
# --------------------------------------------------------------------------------------------------


def test_supernet_path_equals_derived_network() -> None:
    space = SuperNetSpace(small_seed(), max_layers=3)
    supernet = randomise(MBConvSuperNet(space), seed=5)
    assert list(supernet.state_dict()) == list(supernet_state_shapes(space))
    assert all(tuple(v.shape) == supernet_state_shapes(space)[k] for k, v in supernet.state_dict().items())
    rng = random.Random(2)
    x = torch.randn(2, 3, 32, 32)
    outputs = []
    for _ in range(4):
        choice = random_choice(space, rng)
        supernet.set_path(choice)
        arch = space.derive(choice)
        state = supernet.extract(choice)
        assert list(state) == list(state_shapes(arch))
        net = build_network(arch)
        net.load_state_dict(state)
        net.eval()
        with torch.no_grad():
            expected = supernet(x)
            assert (expected - net(x)).abs().max().item() < TOLERANCE
        outputs.append(expected)
    assert (outputs[0] - outputs[1]).abs().max() > 1e-4  # different paths compute different functions


def test_mixer_hook_is_called() -> None:
    space = SuperNetSpace(small_seed(), max_layers=2)
    supernet = randomise(MBConvSuperNet(space), seed=6)
    calls: list[str] = []

    def mixer(x: torch.Tensor, layer: MixedLayer) -> torch.Tensor:
        calls.append(layer.label)
        assert len(layer.ops) == len(layer.candidates) == len(layer.madds)
        return 0.5 * layer.ops[0](x) + 0.5 * layer.ops[1](x)

    x = torch.randn(2, 3, 32, 32)
    supernet.set_path({space.label(*s): 0 for s in space.layer_slots()})
    with torch.no_grad():
        plain = supernet(x)
        supernet.set_mixer(mixer)
        mixed = supernet(x)
    assert calls == [space.label(*s) for s in space.layer_slots()]
    assert (plain - mixed).abs().max() > 1e-4
    supernet.set_mixer(None)
    with torch.no_grad():
        assert torch.equal(supernet(x), plain)
    assert supernet.mixed_layer(2, 1).madds == tuple(space.op_madds(2, 1))
