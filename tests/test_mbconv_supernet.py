"""FNA's search space and super-network over the MobileNetV2 family (nni_nas_ext.search_spaces.mbconv_space,
nni_nas_ext.search_spaces.mbconv_supernet): slots, ops, choices, costs, the super-network's paths and mixer."""

from __future__ import annotations

import json
import random

import pytest
import torch

from nni_nas_ext.core.errors import ArchitectureError
from _mbconv_helpers import random_choice, randomise, small_seed

from nni_nas_ext.core.mbconv import EXPANSIONS, KERNELS, MBConvOp, build_network, mobilenet_v2, state_shapes
from nni_nas_ext.search_spaces.mbconv_space import SuperNetSpace
from nni_nas_ext.search_spaces.mbconv_supernet import MBConvSuperNet, MixedLayer, supernet_state_shapes

TOLERANCE = 1e-5


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


@pytest.mark.slow
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
