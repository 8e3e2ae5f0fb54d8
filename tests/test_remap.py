"""FNA's parameter remapping (nni_nas_ext.core.remap): each rule on hand-made tensors, then on networks --
what is exact is asserted exact, what is not is asserted not exact."""

from __future__ import annotations

import random

import pytest
import torch
import torchvision
from torch import nn

from _mbconv_helpers import randomise

from nni_nas_ext.core.mbconv import (
    MBConvArchitecture, MBConvOp, Stage, build_network, mobilenet_v2, torchvision_to_state_dict,
)
from nni_nas_ext.core.remap import (
    BN_FILL, RemapError, depth_source, remap_batchnorm, remap_channels, remap_kernel, remap_state_dict,
    remap_tensor,
)
from nni_nas_ext.search_spaces.mbconv_space import SuperNetSpace
from nni_nas_ext.search_spaces.mbconv_supernet import MBConvSuperNet, remap_to_supernet

TOLERANCE = 1e-5


SEED = mobilenet_v2(num_classes=10, width_mult=0.35, input_size=32)


@pytest.fixture(scope="module")
def seed_state() -> dict[str, torch.Tensor]:
    """A seed that comes from torchvision: a randomised torchvision mobilenet_v2, converted."""
    tv = randomise(torchvision.models.mobilenet_v2(weights=None, num_classes=10, width_mult=0.35), seed=11)
    return torchvision_to_state_dict(tv.state_dict(), SEED)


def outputs(arch: MBConvArchitecture, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    net = build_network(arch)
    net.load_state_dict(state)  # strict: the remapped dict has exactly the target's keys and shapes
    net.eval()
    with torch.no_grad():
        return net(x)


def batch(arch: MBConvArchitecture, n: int = 4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(n, arch.in_channels, arch.input_size, arch.input_size, generator=gen)


def with_stages(arch: MBConvArchitecture, stages: list[Stage]) -> MBConvArchitecture:
    return MBConvArchitecture(tuple(stages), arch.num_classes, arch.input_size, arch.in_channels, arch.width_mult,
                              arch.stem_channels, arch.head_channels, arch.stem_stride, arch.dropout)


# --------------------------------------------------------------------------------------------------
# Each rule on hand-made tensors
# --------------------------------------------------------------------------------------------------


def test_remap_kernel_centres_and_crops() -> None:
    w = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    wide = remap_kernel(w, 5)
    assert wide.shape == (1, 1, 5, 5)
    assert torch.equal(wide[0, 0, 1:4, 1:4], w[0, 0])
    assert wide.sum() == w.sum() and wide[0, 0, 0].abs().sum() == 0 and wide[0, 0, :, 4].abs().sum() == 0
    assert torch.equal(remap_kernel(w, 7)[0, 0, 2:5, 2:5], w[0, 0])
    big = torch.arange(49.0).reshape(1, 1, 7, 7)
    assert torch.equal(remap_kernel(big, 3), big[..., 2:5, 2:5])
    assert torch.equal(remap_kernel(big, 5), big[..., 1:6, 1:6])
    full = torch.randn(4, 2, 3, 3)  # a full (not depthwise) conv weight
    assert torch.equal(remap_kernel(full, 5)[..., 1:4, 1:4], full)
    assert torch.equal(remap_kernel(remap_kernel(full, 7), 3), full)
    with pytest.raises(RemapError, match="same parity"):
        remap_kernel(w, 4)
    with pytest.raises(RemapError, match="square kernel"):
        remap_kernel(torch.zeros(1, 1, 3, 5), 5)


def test_remap_channels_keeps_the_first_and_pads() -> None:
    t = torch.arange(12.0).reshape(3, 4)
    assert torch.equal(remap_channels(t, 2, 0), t[:2])
    assert torch.equal(remap_channels(t, 3, 1), t[:, :3])
    padded = remap_channels(t, 5, 0)
    assert torch.equal(padded[:3], t) and padded[3:].abs().sum() == 0
    assert torch.equal(remap_channels(t, 6, 1, fill=1.0)[:, 4:], torch.ones(3, 2))
    out = remap_channels(t, 3, 0)
    out += 1  # a copy, never a view of the seed
    assert t[0, 0] == 0
    with pytest.raises(RemapError, match="dim 2 is out of range"):
        remap_channels(t, 2, 2)


def test_remap_batchnorm_new_entries_are_a_fresh_batchnorm() -> None:
    bn = {"weight": torch.tensor([2.0, 3.0]), "bias": torch.tensor([0.5, -0.5]),
          "running_mean": torch.tensor([0.1, 0.2]), "running_var": torch.tensor([4.0, 5.0]),
          "num_batches_tracked": torch.tensor(9)}
    wide = remap_batchnorm(bn, 4)
    assert torch.equal(wide["weight"], torch.tensor([2.0, 3.0, 1.0, 1.0]))
    assert torch.equal(wide["bias"], torch.tensor([0.5, -0.5, 0.0, 0.0]))
    assert torch.equal(wide["running_mean"], torch.tensor([0.1, 0.2, 0.0, 0.0]))
    assert torch.equal(wide["running_var"], torch.tensor([4.0, 5.0, 1.0, 1.0]))
    assert wide["num_batches_tracked"] == 9
    fresh = nn.BatchNorm2d(3).state_dict()
    assert all(torch.equal(fresh[k], torch.full((3,), v)) for k, v in BN_FILL.items())
    narrow = remap_batchnorm(bn, 1)
    assert narrow["weight"].tolist() == [2.0] and narrow["running_var"].tolist() == [4.0]


def test_depth_source_is_min_l_and_last_seed_layer() -> None:
    assert [depth_source(l, 3) for l in range(5)] == [0, 1, 2, 2, 2]
    assert [depth_source(l, 1) for l in range(4)] == [0, 0, 0, 0]
    with pytest.raises(RemapError, match="L_seed >= 1"):
        depth_source(0, 0)


def test_remap_tensor_combines_width_and_kernel() -> None:
    w = torch.randn(6, 4, 3, 3)
    out = remap_tensor(w, (8, 2, 5, 5))
    assert out.shape == (8, 2, 5, 5)
    assert torch.equal(out[:6, :, 1:4, 1:4], w[:, :2])
    assert out[6:].abs().sum() == 0 and out[:, :, 0].abs().sum() == 0
    with pytest.raises(RemapError, match="ranks differ"):
        remap_tensor(w, (6, 4))


# --------------------------------------------------------------------------------------------------
# Whole networks
# --------------------------------------------------------------------------------------------------


def test_identity_remap_and_purity(seed_state) -> None:  # noqa: ANN001
    before = {k: v.clone() for k, v in seed_state.items()}
    same = remap_state_dict(SEED, seed_state, SEED)
    assert list(same) == list(seed_state)
    assert all(torch.equal(same[k], seed_state[k]) for k in same)
    assert all(same[k].data_ptr() != seed_state[k].data_ptr() for k in same if seed_state[k].numel())
    x = batch(SEED)
    assert (outputs(SEED, same, x) - outputs(SEED, seed_state, x)).abs().max() == 0
    space = SuperNetSpace(SEED)
    remap_to_supernet(SEED, seed_state, space)
    assert all(torch.equal(before[k], seed_state[k]) for k in before)  # the seed is never modified


def test_kernel_widening_is_exact(seed_state) -> None:  # noqa: ANN001
    """Every kernel 5 or 7 (stem and the expansion-1 stage included in the comparison): same function."""
    stages = [Stage(st.channels, st.stride, tuple(MBConvOp(5 if (s + l) % 2 else 7, op.expansion)
                                                 for l, op in enumerate(st.layers)))
              for s, st in enumerate(SEED.stages)]
    target = with_stages(SEED, stages)
    state = remap_state_dict(SEED, seed_state, target)
    x = batch(SEED)
    reference = outputs(SEED, seed_state, x)
    assert reference.abs().max() > 1e-2
    assert (outputs(target, state, x) - reference).abs().max().item() < TOLERANCE
    # and back to 3x3 (centre crop of the widened kernels) gives the seed's tensors again
    back = remap_state_dict(target, state, SEED)
    assert all(torch.equal(back[k], seed_state[k]) for k in back)


def test_kernel_shrinking_is_not_exact(seed_state) -> None:  # noqa: ANN001
    wide = with_stages(SEED, [Stage(st.channels, st.stride, tuple(MBConvOp(5, op.expansion) for op in st.layers))
                              for st in SEED.stages])
    wide_state = remap_state_dict(SEED, seed_state, wide)
    gen = torch.Generator().manual_seed(3)
    for key, value in wide_state.items():  # give the 5x5 kernels a non-zero border
        if key.endswith("depthwise.conv.weight"):
            wide_state[key] = value + 0.1 * torch.randn(value.shape, generator=gen)
    x = batch(SEED)
    cropped = remap_state_dict(wide, wide_state, SEED)
    assert (outputs(SEED, cropped, x) - outputs(wide, wide_state, x)).abs().max() > 1e-3


def test_width_rules_keep_the_first_channels(seed_state) -> None:  # noqa: ANN001
    space = SuperNetSpace(SEED)
    choice = {space.label(*slot): space.op_names(*slot).index("k3_e3") for slot in space.layer_slots()}
    target = space.derive(choice)
    state = remap_state_dict(SEED, seed_state, target)
    # stage 2 layer 0 (input 8 channels): seed hidden 8 * 6 = 48, target 8 * 3 = 24
    p = "stages.2.0"
    assert state[f"{p}.expand.conv.weight"].shape == (24, 8, 1, 1)
    assert torch.equal(state[f"{p}.expand.conv.weight"], seed_state[f"{p}.expand.conv.weight"][:24])
    assert torch.equal(state[f"{p}.expand.bn.running_var"], seed_state[f"{p}.expand.bn.running_var"][:24])
    assert torch.equal(state[f"{p}.depthwise.conv.weight"], seed_state[f"{p}.depthwise.conv.weight"][:24])
    assert torch.equal(state[f"{p}.project.conv.weight"], seed_state[f"{p}.project.conv.weight"][:, :24])
    assert torch.equal(state[f"{p}.project.bn.weight"], seed_state[f"{p}.project.bn.weight"])
    # narrowing the expansion is not function-preserving
    x = batch(SEED)
    assert (outputs(target, state, x) - outputs(SEED, seed_state, x)).abs().max() > 1e-3


def test_widening_is_exact(seed_state) -> None:  # noqa: ANN001
    """New channels get zero weights in and out and a fresh BN: they output 0, so widening (wider stages,
    stem and head, larger expansion) preserves the function in eval mode."""
    wider = mobilenet_v2(num_classes=10, width_mult=0.5, input_size=32)
    stages = [Stage(st.channels, st.stride, tuple(MBConvOp(op.kernel, 8 if op.expansion == 6 else 1)
                                                  for op in st.layers)) for st in wider.stages]
    target = MBConvArchitecture(tuple(stages), 10, 32, 3, 0.5, 24, 1288, SEED.stem_stride)
    state = remap_state_dict(SEED, seed_state, target)
    p = "stages.3.1.expand.conv.weight"
    assert state[p].shape == (32 * 8, 32, 1, 1) and torch.equal(state[p][:144, :24], seed_state[p])
    assert state[p][144:].abs().sum() == 0 and state[p][:, 24:].abs().sum() == 0
    x = batch(SEED)
    assert (outputs(target, state, x) - outputs(SEED, seed_state, x)).abs().max().item() < TOLERANCE


def test_depth_rule_copies_seed_layer_min_l(seed_state) -> None:  # noqa: ANN001
    """Stage 1 has 2 seed layers and stage 3 has 4: a 4-layer target copies 0, 1, 1, 1 and 0, 1, 2, 3."""
    space = SuperNetSpace(SEED)
    choice = {space.label(*slot): space.op_names(*slot).index("k3_e6") for slot in space.layer_slots()}
    deeper = space.derive(choice)
    state = remap_state_dict(SEED, seed_state, deeper)
    for stage, sources in ((1, [0, 1, 1, 1]), (3, [0, 1, 2, 3])):
        for l, src in enumerate(sources):
            for part in ("expand.conv.weight", "depthwise.conv.weight", "project.conv.weight", "project.bn.bias"):
                assert torch.equal(state[f"stages.{stage}.{l}.{part}"], seed_state[f"stages.{stage}.{src}.{part}"])
    # stage 6 has one seed layer (input 56 channels); its copies take 112 inputs: depth, then the width rule
    seed_expand = seed_state["stages.6.0.expand.conv.weight"]  # (336, 56, 1, 1)
    for l in (1, 2, 3):
        expand = state[f"stages.6.{l}.expand.conv.weight"]
        assert expand.shape == (672, 112, 1, 1) and torch.equal(expand[:336, :56], seed_expand)
        assert expand[336:].abs().sum() == 0 and expand[:, 56:].abs().sum() == 0
        assert torch.equal(state[f"stages.6.{l}.depthwise.bn.running_var"][336:], torch.ones(336))
    # the extra layers are residual copies, not identities: deeper is NOT the same function
    x = batch(SEED)
    assert (outputs(deeper, state, x) - outputs(SEED, seed_state, x)).abs().max() > 1e-3
    # ...while a target whose extra slots are skipped is the seed exactly (the seed re-expressed in the space)
    same = space.derive(space.encode(SEED))
    assert (outputs(same, remap_state_dict(SEED, seed_state, same), x) - outputs(SEED, seed_state, x)).abs().max() \
        < TOLERANCE


def test_depth_uses_the_slot_index_after_a_skip(seed_state) -> None:  # noqa: ANN001
    op = MBConvOp(3, 6)
    stages = list(SEED.stages)
    stages[3] = Stage(stages[3].channels, stages[3].stride, (op, None, op, None))
    target = with_stages(SEED, stages)
    state = remap_state_dict(SEED, seed_state, target)
    assert not any(k.startswith(("stages.3.1.", "stages.3.3.")) for k in state)
    assert torch.equal(state["stages.3.2.depthwise.conv.weight"], seed_state["stages.3.2.depthwise.conv.weight"])
    # dropping seed layers is not exact
    x = batch(SEED)
    assert (outputs(target, state, x) - outputs(SEED, seed_state, x)).abs().max() > 1e-3


def test_classifier_and_input_channels(seed_state) -> None:  # noqa: ANN001
    five = mobilenet_v2(num_classes=5, width_mult=0.35, input_size=32)
    state = remap_state_dict(SEED, seed_state, five)
    assert torch.equal(state["classifier.weight"], seed_state["classifier.weight"][:5])
    twelve = mobilenet_v2(num_classes=12, width_mult=0.35, input_size=32)
    state = remap_state_dict(SEED, seed_state, twelve)
    assert torch.equal(state["classifier.bias"][:10], seed_state["classifier.bias"])
    assert state["classifier.weight"][10:].abs().sum() == 0
    zero = remap_state_dict(SEED, seed_state, twelve, classifier="zero")
    assert zero["classifier.weight"].abs().sum() == 0 and zero["classifier.bias"].abs().sum() == 0
    assert torch.equal(zero["head.conv.weight"], seed_state["head.conv.weight"])
    gray = mobilenet_v2(num_classes=10, width_mult=0.35, input_size=28, in_channels=1)
    state = remap_state_dict(SEED, seed_state, gray)
    assert torch.equal(state["stem.conv.weight"], seed_state["stem.conv.weight"][:, :1])
    with pytest.raises(RemapError, match="'remap' or 'zero'"):
        remap_state_dict(SEED, seed_state, gray, classifier="random")  # type: ignore[arg-type]


def test_expansion_one_seed_layer_into_an_expanded_target(seed_state) -> None:  # noqa: ANN001
    stages = list(SEED.stages)
    stages[0] = Stage(stages[0].channels, 1, (MBConvOp(3, 3),))
    target = with_stages(SEED, stages)
    state = remap_state_dict(SEED, seed_state, target)
    eye = state["stages.0.0.expand.conv.weight"][:, :, 0, 0]
    assert eye.shape == (48, 16) and torch.equal(eye[:16], torch.eye(16)) and eye[16:].abs().sum() == 0
    assert torch.equal(state["stages.0.0.depthwise.conv.weight"][:16], seed_state["stages.0.0.depthwise.conv.weight"])


def test_errors_name_the_key_and_shapes(seed_state) -> None:  # noqa: ANN001
    broken = dict(seed_state)
    del broken["stages.2.1.project.conv.weight"]
    with pytest.raises(RemapError, match="no key 'stages.2.1.project.conv.weight'"):
        remap_state_dict(SEED, broken, SEED)
    wrong = {**seed_state, "head.conv.weight": torch.zeros(1280, 99, 1, 1)}
    with pytest.raises(RemapError, match=r"'head.conv.weight'\] has shape \(1280, 99, 1, 1\) but seed_arch needs "
                                         r"\(1280, 112, 1, 1\)"):
        remap_state_dict(SEED, wrong, SEED)
    with pytest.raises(RemapError, match="the seed has 7 stages and the target 6"):
        remap_state_dict(SEED, seed_state, with_stages(SEED, list(SEED.stages[:6])))


# --------------------------------------------------------------------------------------------------
# The super-network
# --------------------------------------------------------------------------------------------------


def test_supernet_remap_then_extract_equals_direct_remap(seed_state) -> None:  # noqa: ANN001
    space = SuperNetSpace(SEED)
    supernet = MBConvSuperNet(space)
    supernet.load_state_dict(remap_to_supernet(SEED, seed_state, space))  # strict
    supernet.eval()
    rng = random.Random(7)
    x = batch(SEED, 2)
    for _ in range(5):
        choice = {space.label(*slot): rng.randrange(len(space.ops(*slot))) for slot in space.layer_slots()}
        derived = space.derive(choice)
        direct = remap_state_dict(SEED, seed_state, derived)
        extracted = supernet.extract(choice)
        assert list(extracted) == list(direct)
        for key in direct:
            assert torch.equal(extracted[key], direct[key]), key
        supernet.set_path(choice)
        with torch.no_grad():
            assert (supernet(x) - outputs(derived, direct, x)).abs().max().item() < TOLERANCE
