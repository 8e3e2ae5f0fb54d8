"""The compressions (LEMONADE's approximate network morphisms) on hand-made networks: what they keep, where they
apply, that they undo the morphisms they invert, and how a step says whether it is exact.

Every child goes through :func:`_compression_helpers.check_child` (valid, smaller, strict load, exact slices of
the parent's weights, finite preservation error, bit-identical replay).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _archgen import distinct_state, random_batch
from _compression_helpers import check_child, expected_kept

from nni_nas_ext.core import (
    COMPRESSIONS, MORPHISMS, AddSkip, Architecture, Branch, ConcatSkip, Deepen, GraphBuilder, MorphismError,
    RemoveLayer, RemoveSkip, Shrink, Step, Widen, chain_is_exact, create_morphism, list_compressions,
    list_morphisms, preservation_error, replay, state_key, step_is_exact,
)
from nni_nas_ext.core.morphisms import previous_width, top_units
from nni_nas_ext.search_spaces import nash_seed, plain_cnn

BN = ("weight", "bias", "running_mean", "running_var")


def compress_net() -> Architecture:
    """Two conv-BN-ReLU blocks of equal width, a residual block, pooling, a depthwise block, a concat, two hidden
    linear-ReLU layers of equal width, the classifier."""
    g = GraphBuilder((3, 8, 8), 5)
    x = g.conv_bn_relu(g.input, 8)                    # conv1 bn1 relu1 (3 -> 8 channels)
    x = g.conv_bn_relu(x, 8)                          # conv2 bn2 relu2
    y = g.bn(g.conv(g.conv_bn_relu(x, 8), 8, 3))      # conv3 bn3 relu3, conv4 bn4
    x = g.relu(g.add(x, y))                           # add1 relu4
    x = g.maxpool(x, 2)                               # maxpool1
    x = g.relu(g.bn(g.conv(x, 8, 3, groups=8)))       # conv5 bn5 relu5 (depthwise)
    x = g.concat(g.conv_bn_relu(x, 8, 1), x)          # conv6 bn6 relu6, concat1 (16 channels)
    x = g.relu(g.linear(g.gap(x), 16))                # gap1 linear1 relu7
    x = g.relu(g.linear(x, 16))                       # linear2 relu8
    return g.build(g.linear(x, 5))                    # linear3


def three_way_net() -> Architecture:
    """A concat of three branches and a weighted add of three inputs: merges that keep two inputs."""
    g = GraphBuilder((3, 8, 8), 4)
    x = g.conv_bn_relu(g.input, 4)                                    # conv1 bn1 relu1
    a = g.conv_bn_relu(x, 4, 1)                                       # conv2 bn2 relu2 (4 channels)
    b = g.conv_bn_relu(x, 6, 1)                                       # conv3 bn3 relu3 (6)
    c = g.conv_bn_relu(x, 8, 1)                                       # conv4 bn4 relu4 (8)
    y = g.concat(a, b, c)                                             # concat1 (18)
    z = g.add(g.conv(y, 8, 1), g.conv(y, 8, 3), g.conv(x, 8, 1), weights=[1.0, 0.5, 2.0])  # conv5-7, add1
    return g.build(g.linear(g.gap(g.relu(z)), 4))                    # relu5 gap1 linear1


@pytest.fixture
def net() -> tuple[Architecture, dict[str, torch.Tensor], torch.Tensor]:
    arch = compress_net()
    return arch, distinct_state(arch, 0), random_batch(arch, 1, n=16)


def ids(arch: Architecture) -> set[str]:
    return {n.id for n in arch.nodes}


# ---- registry and exactness -------------------------------------------------------------------------------


def test_registry_keeps_the_morphisms_and_adds_the_compressions() -> None:
    assert set(MORPHISMS) == {"deepen", "widen", "add_skip", "concat_skip", "widen_kernel", "branch",
                              "replicate_add", "split_concat", "insert_layer"}
    assert list_morphisms() == list(MORPHISMS)
    assert list_compressions() == list(COMPRESSIONS) == ["remove_layer", "remove_skip", "shrink"]
    assert COMPRESSIONS == {"remove_layer": RemoveLayer, "remove_skip": RemoveSkip, "shrink": Shrink}
    assert all(cls.exact for cls in MORPHISMS.values()) and not any(cls.exact for cls in COMPRESSIONS.values())
    assert all(COMPRESSIONS[name].name == name for name in COMPRESSIONS)
    shrink = create_morphism("shrink", criterion="bn_scale", max_steps=2)
    assert isinstance(shrink, Shrink) and (shrink.criterion, shrink.max_steps) == ("bn_scale", 2)
    assert isinstance(create_morphism("remove_layer"), RemoveLayer)
    with pytest.raises(MorphismError, match="unknown morphism 'shrinc'.*did you mean 'shrink'"):
        create_morphism("shrinc")
    with pytest.raises(MorphismError, match="remove_skip: bad configuration"):
        create_morphism("remove_skip", colour=1)
    with pytest.raises(ValueError, match="criterion must be one of 'l1', 'bn_scale', but got 'l2'"):
        Shrink(criterion="l2")
    with pytest.raises(ValueError, match="max_steps must be an integer >= 1, but got 0"):
        Shrink(max_steps=0)


def test_step_is_exact_tells_compressions_and_noise_from_exact_morphisms(net) -> None:  # noqa: ANN001
    arch, _, _ = net
    rng = np.random.default_rng(0)
    deepen = Deepen().apply(arch, {"node": "relu1"}, rng).steps[0]
    widen = Widen().apply(arch, {"node": "linear1"}, rng).steps[0]
    branch = Branch().apply(arch, {"node": "conv2"}, rng).steps[0]
    assert step_is_exact(deepen) and step_is_exact(widen) and step_is_exact(branch)
    assert step_is_exact(Widen(mode="replicate").apply(arch, {"node": "linear1"}, rng).steps[0])
    # EAS' noise: approximately function-preserving, recorded in the step
    assert not step_is_exact(Widen(mode="noise").apply(arch, {"node": "linear1"}, rng).steps[0])
    assert not step_is_exact(Branch(mode="noise").apply(arch, {"node": "conv2"}, rng).steps[0])
    shrink = Shrink().apply(arch, {"node": "conv1"}, rng).steps[0]
    remove = RemoveLayer().apply(arch, {"node": "conv2"}, rng).steps[0]
    cut = RemoveSkip().apply(arch, {"merge": "add1", "source": "bn4"}, rng).steps[0]
    assert not any(step_is_exact(s) for s in (shrink, remove, cut))
    assert chain_is_exact([]) and chain_is_exact([deepen, widen, branch])
    assert not chain_is_exact([deepen, shrink, widen])
    with pytest.raises(MorphismError, match="unknown morphism 'prune'"):
        step_is_exact(Step("prune", {"node": "conv1"}, {}))


# ---- every site on the seed networks -----------------------------------------------------------------------


SEEDS = {"nash_seed": nash_seed((1, 8, 8), 10, (8, 16, 16)),
         "plain_cnn": plain_cnn(depth=5, input_shape=(3, 16, 16), width=4, stages=2)}
SEED_SITES = {  # (nash: 8-16-16 convs, pooled between; plain: convs 4, 4, pool, 8, 8; no skips in either)
    ("nash_seed", "shrink"): ["conv1", "conv2", "conv3"], ("nash_seed", "remove_layer"): ["conv3"],
    ("plain_cnn", "shrink"): ["conv3", "conv4"], ("plain_cnn", "remove_layer"): ["conv2", "conv4"],
}


@pytest.mark.parametrize("name", list(COMPRESSIONS))
@pytest.mark.parametrize("seed", list(SEEDS))
def test_every_site_of_every_compression_on_the_seed_networks(seed: str, name: str) -> None:
    arch = SEEDS[seed]
    state, batch = distinct_state(arch, 0), random_batch(arch, 1, n=8)
    compression = COMPRESSIONS[name]()
    sites = compression.sites(arch)
    assert [s.get("node") for s in sites] == SEED_SITES.get((seed, name), [])
    for i, site in enumerate(sites):
        check_child(arch, state, compression.apply(arch, site, np.random.default_rng(i)), batch)


# ---- shrink --------------------------------------------------------------------------------------------------


def test_top_units_and_the_width_ladder() -> None:
    assert top_units(np.array([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [1, 2]
    assert top_units(np.array([1.0, 3.0, 3.0, 2.0]), 1).tolist() == [1]  # a tie: the lowest index wins
    assert top_units(np.array([np.nan, 1.0, 0.0]), 2).tolist() == [1, 2]  # NaN ranks last
    with pytest.raises(ValueError, match="width must be an integer in \\[1, 3\\], but got 4"):
        top_units(np.zeros(3), 4)
    assert [previous_width(w) for w in (100, 16, 8, 6, 4)] == [96, 8, 4, 4, None]


def test_shrink_keeps_the_units_with_the_largest_l1_norm(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    weight = torch.zeros(8, 3, 3, 3)
    weight[:, 0, 1, 1] = torch.tensor([5.0, -1.0, 7.0, -3.0, -7.5, 2.0, -5.0, 6.0])  # L1 5, 1, 7, 3, 7.5, 2, 5, 6
    state = {**state, state_key("conv1", "weight"): weight}
    result = Shrink().apply(arch, {"node": "conv1"}, np.random.default_rng(0))
    assert result.steps[0].params == {"width": 4, "criterion": "l1"}
    assert result.child.node("conv1")["out_channels"] == 4 and result.child.shape("relu1") == (4, 8, 8)
    child_state = check_child(arch, state, result, batch, slices=False)
    kept = [0, 2, 4, 7]  # 7.5, 7, 6, then 5 twice: unit 0 wins the tie over unit 6
    assert torch.equal(child_state[state_key("conv1", "weight")], weight[kept])
    for name in BN:
        assert torch.equal(child_state[state_key("bn1", name)], state[state_key("bn1", name)][kept])
    assert torch.equal(child_state[state_key("conv2", "weight")], state[state_key("conv2", "weight")][:, kept])
    assert expected_kept(arch, state, result.steps[0]) == kept


def test_shrink_by_batchnorm_scale_and_its_fallback(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    gamma = torch.tensor([0.1, -2.0, 0.3, 1.5, 0.2, -0.9, 1.0, 0.05])  # |gamma| ranks units 1, 3, 6, 5 first
    state = {**state, state_key("bn1", "weight"): gamma}
    result = Shrink(criterion="bn_scale").apply(arch, {"node": "conv1"}, np.random.default_rng(0))
    assert result.steps[0].params == {"width": 4, "criterion": "bn_scale"}
    child_state = check_child(arch, state, result, batch, slices=False)
    assert torch.equal(child_state[state_key("bn1", "weight")], gamma[[1, 3, 5, 6]])
    assert torch.equal(child_state[state_key("conv1", "weight")], state[state_key("conv1", "weight")][[1, 3, 5, 6]])
    # linear1 has no BatchNorm after it: the step records the criterion used, l1
    step = Shrink(criterion="bn_scale").apply(arch, {"node": "linear1"}, np.random.default_rng(0)).steps[0]
    assert step.params == {"width": 8, "criterion": "l1"}
    with pytest.raises(MorphismError, match="criterion 'bn_scale' needs a BatchNorm as the only consumer of linear1"):
        replay(arch, [Step("shrink", {"node": "linear1"}, {"width": 8, "criterion": "bn_scale"})])


def test_shrink_follows_the_channels_through_the_residual_add(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = Shrink().apply(arch, {"node": "conv2"}, np.random.default_rng(0))
    child = result.child
    # conv4 is absorbed by the residual add; the depthwise conv, the concat and linear1 follow
    assert child.node("conv2")["out_channels"] == child.node("conv4")["out_channels"] == 4
    assert child.node("conv5")["groups"] == child.node("conv5")["out_channels"] == 4
    assert child.shape("concat1") == (12, 4, 4)
    child_state = check_child(arch, state, result, batch)
    kept = expected_kept(arch, state, result.steps[0])
    assert len(kept) == 4

    def old(node: str, name: str = "weight") -> torch.Tensor:
        return state[state_key(node, name)]

    def new(node: str, name: str = "weight") -> torch.Tensor:
        return child_state[state_key(node, name)]

    for node in ("conv2", "conv4", "conv5"):  # rows
        assert torch.equal(new(node), old(node)[kept])
    for node in ("conv4", "conv5"):
        assert torch.equal(new(node, "bias"), old(node, "bias")[kept])
    for node in ("bn2", "bn4", "bn5"):
        for name in BN:
            assert torch.equal(new(node, name), old(node, name)[kept])
    for node in ("conv3", "conv6"):  # columns, scale 1
        assert torch.equal(new(node), old(node)[:, kept])
    assert torch.equal(new("linear1"), old("linear1")[:, list(range(8)) + [8 + k for k in kept]])
    assert preservation_error(arch, state, child, child_state, batch).max_abs > 0  # approximate


def test_shrink_applies_only_where_it_can(net) -> None:  # noqa: ANN001
    arch, _, _ = net
    shrink = Shrink()
    assert [s["node"] for s in shrink.sites(arch)] == ["conv1", "conv2", "conv3", "conv6", "linear1", "linear2"]
    assert shrink.check(arch, {"node": "conv4"}) == "relu2 feeds add1 and also ['conv3']"
    assert "with groups > 1, not a full conv or linear" in shrink.check(arch, {"node": "conv5"})
    assert "relu1 is a relu" in shrink.check(arch, {"node": "relu1"})
    assert "bottom of the width list" in Shrink(widths=(16, 32)).check(arch, {"node": "conv1"})
    with pytest.raises(MorphismError, match="shrink does not apply at .*linear3 is the output layer.*num_classes=5"):
        shrink.apply(arch, {"node": "linear3"}, np.random.default_rng(0))


def test_shrink_draws_among_lower_widths_and_replays_without_the_ladder(net) -> None:  # noqa: ANN001
    arch, _, _ = net
    drawn = {Shrink(max_steps=3).apply(arch, {"node": "linear1"}, np.random.default_rng(i)).steps[0].params["width"]
             for i in range(20)}
    assert drawn == {4, 8}  # the ladder widths below 16
    # A step drawn on another ladder replays with the default instance: realize needs the step alone.
    result = Shrink(widths=(2, 3)).apply(arch, {"node": "conv1"}, np.random.default_rng(0))
    assert result.steps[0].params["width"] == 3
    assert replay(arch, result.steps).child == result.child
    with pytest.raises(MorphismError, match="replaying step 0 .*'width' in \\[1, 8\\)"):
        replay(arch, [Step("shrink", {"node": "conv1"}, {"width": 8, "criterion": "l1"})])


# ---- remove a layer ---------------------------------------------------------------------------------------------


def test_remove_layer_removes_a_block_and_its_weights(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    remove = RemoveLayer()
    assert [s["node"] for s in remove.sites(arch)] == ["conv2", "conv3", "conv5", "linear1", "linear2"]
    result = remove.apply(arch, {"node": "conv2"}, np.random.default_rng(0))
    assert result.steps[0].params == {}
    child = result.child
    assert not {"conv2", "bn2", "relu2"} & ids(child)
    assert child.node("conv3").inputs == ("relu1",) and child.node("add1").inputs == ("relu1", "bn4")
    child_state = check_child(arch, state, result, batch)
    assert set(state) - set(child_state) == {k for k in state if k.startswith(("layers.conv2.", "layers.bn2."))}
    assert all(torch.equal(child_state[k], state[k]) for k in child_state)
    head = remove.apply(arch, {"node": "linear2"}, np.random.default_rng(0))
    assert head.child.node("linear3").inputs == ("relu7",) and not {"linear2", "relu8"} & ids(head.child)
    check_child(arch, state, head, batch)


def test_remove_layer_applies_only_where_the_shapes_allow(net) -> None:  # noqa: ANN001
    arch, _, _ = net
    remove = RemoveLayer()
    assert "maps input's shape (3, 8, 8) to (8, 8, 8)" in remove.check(arch, {"node": "conv1"})
    assert "bn4 feeds ['add1'], not a ReLU alone" in remove.check(arch, {"node": "conv4"})
    assert "concat1 reads both relu6 and relu5" in remove.check(arch, {"node": "conv6"})
    assert "relu1 is a relu, not a conv or linear layer" == remove.check(arch, {"node": "relu1"})
    with pytest.raises(MorphismError, match="remove_layer does not apply at .*linear3 is the output layer"):
        remove.apply(arch, {"node": "linear3"}, np.random.default_rng(0))


def test_deepen_then_remove_layer_gives_the_parent_back(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    sites = Deepen().sites(arch)
    assert len(sites) >= 8  # convolutions (kernels 1, 3, 5) and linear layers
    for i, site in enumerate(sites):
        deeper = Deepen().apply(arch, site, np.random.default_rng(i))
        layer = next(n.id for n in deeper.child.nodes if n.id not in arch and n.op in ("conv", "linear"))
        back = RemoveLayer().apply(deeper.child, {"node": layer}, np.random.default_rng(0))
        assert back.child.with_lineage(None) == arch and back.child.id == arch.id, site
        restored = back.transform(deeper.transform(state, batch), batch)
        assert restored.keys() == state.keys() and all(torch.equal(restored[k], state[k]) for k in state), site


# ---- remove a skip connection or a branch ---------------------------------------------------------------------


def test_remove_skip_drops_a_residual_branch_and_prunes_it(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    remove = RemoveSkip()
    assert remove.sites(arch) == [{"merge": "add1", "source": "bn4"}, {"merge": "concat1", "source": "relu6"},
                                  {"merge": "concat1", "source": "relu5"}]
    # the identity skip holds no parameters: dropping it would not shrink the network
    assert "dropping relu2 from add1 removes no parameters" in remove.check(arch, {"merge": "add1", "source": "relu2"})
    assert "relu9 is not an input of add1" in remove.check(arch, {"merge": "add1", "source": "relu9"})
    assert "relu1 is not an add or concat node" == remove.check(arch, {"merge": "relu1", "source": "conv2"})
    result = remove.apply(arch, {"merge": "add1", "source": "bn4"}, np.random.default_rng(0))
    child = result.child
    assert child.node("relu4").inputs == ("relu2",)
    assert not {"add1", "conv3", "bn3", "relu3", "conv4", "bn4"} & ids(child)
    child_state = check_child(arch, state, result, batch)
    assert all(torch.equal(child_state[k], state[k]) for k in child_state)


def test_remove_skip_from_a_concat_drops_the_matching_columns(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    weight = state[state_key("linear1", "weight")]
    kept_conv = RemoveSkip().apply(arch, {"merge": "concat1", "source": "relu5"}, np.random.default_rng(0))
    assert kept_conv.child.node("gap1").inputs == ("relu6",) and "concat1" not in kept_conv.child
    assert "relu5" in kept_conv.child  # conv6 still reads it
    child_state = check_child(arch, state, kept_conv, batch)
    assert torch.equal(child_state[state_key("linear1", "weight")], weight[:, :8])
    kept_skip = RemoveSkip().apply(arch, {"merge": "concat1", "source": "relu6"}, np.random.default_rng(0))
    assert kept_skip.child.node("gap1").inputs == ("relu5",)
    assert not {"conv6", "bn6", "relu6", "concat1"} & ids(kept_skip.child)
    child_state = check_child(arch, state, kept_skip, batch)
    assert torch.equal(child_state[state_key("linear1", "weight")], weight[:, 8:])


def test_remove_skip_keeps_a_merge_that_has_inputs_left() -> None:
    arch = three_way_net()
    state, batch = distinct_state(arch, 0), random_batch(arch, 1, n=16)
    cut = RemoveSkip().apply(arch, {"merge": "concat1", "source": "relu3"}, np.random.default_rng(0))
    assert cut.child.node("concat1").inputs == ("relu2", "relu4") and cut.child.shape("concat1") == (12, 8, 8)
    assert not {"conv3", "bn3", "relu3"} & ids(cut.child)
    child_state = check_child(arch, state, cut, batch)
    columns = [0, 1, 2, 3, *range(10, 18)]  # relu2's 4 channels and relu4's 8; relu3's 6 (4..9) are gone
    for conv in ("conv5", "conv6"):
        assert torch.equal(child_state[state_key(conv, "weight")], state[state_key(conv, "weight")][:, columns])
    branch = RemoveSkip().apply(arch, {"merge": "add1", "source": "conv6"}, np.random.default_rng(0))
    merge = branch.child.node("add1")
    assert merge.inputs == ("conv5", "conv7") and merge["weights"] == (1.0, 2.0) and "conv6" not in branch.child
    check_child(arch, state, branch, batch)


@pytest.mark.parametrize("grow", [AddSkip(), ConcatSkip(), Branch(mode="replicate")],
                         ids=["add_skip", "concat_skip", "branch_replicate"])
def test_remove_skip_undoes_a_skip_or_a_replicated_branch(net, grow) -> None:  # noqa: ANN001
    """The inverse of add_skip, concat_skip and branch: the parent comes back, every weight bit for bit (a
    replicated branch is averaged, so dropping one copy and the weights of the merge changes nothing)."""
    arch, state, batch = net
    sites = grow.sites(arch)
    assert sites
    for i, site in enumerate(sites):
        grown = grow.apply(arch, site, np.random.default_rng(i))
        merge = next(n for n in grown.child.nodes if n.id not in arch and n.op in ("add", "concat"))
        back = RemoveSkip().apply(grown.child, {"merge": merge.id, "source": merge.inputs[1]},
                                  np.random.default_rng(0))
        assert back.child.with_lineage(None) == arch, site
        restored = back.transform(grown.transform(state, batch), batch)
        assert restored.keys() == state.keys() and all(torch.equal(restored[k], state[k]) for k in state), site
