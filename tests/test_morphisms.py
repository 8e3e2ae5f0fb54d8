"""Each morphism on hand-made networks: what it builds, that it preserves the function, how it fails."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _archgen import random_batch, random_state

from nni_nas_ext.core import (
    MORPHISMS, AddSkip, Architecture, Branch, ConcatSkip, Deepen, GraphBuilder, MorphismError, Widen, WidenKernel,
    build_module, create_morphism, preservation_error, random_chain, replay, state_key,
)
from nni_nas_ext.core.morphisms import bn_identity, nni_bn_rule

TOLERANCE = 1e-5


def residual_net() -> Architecture:
    """conv-bn-relu, a residual block, pooling, depthwise conv, a concat, a hidden linear layer."""
    g = GraphBuilder((3, 8, 8), 5)
    x = g.conv_bn_relu(g.input, 8)
    y = g.bn(g.conv(g.conv_bn_relu(x, 8), 8, 3))
    x = g.relu(g.add(x, y))
    x = g.maxpool(x, 2)
    x = g.relu(g.bn(g.conv(x, 8, 3, groups=8)))
    x = g.concat(g.conv_bn_relu(x, 8, 1), x)
    x = g.relu(g.linear(g.gap(x), 16))
    return g.build(g.linear(x, 5))


@pytest.fixture
def net() -> tuple[Architecture, dict[str, torch.Tensor], torch.Tensor]:
    arch = residual_net()
    return arch, random_state(arch, 0), random_batch(arch, 1, n=32)


def check_exact(result, arch, state, batch):  # noqa: ANN001, ANN201
    child_state = result.transform(state, batch)
    build_module(result.child, child_state)  # loads strictly: keys and shapes match the child
    error = preservation_error(arch, state, result.child, child_state, batch)
    assert error.relative <= TOLERANCE, error
    return child_state


def test_registry() -> None:
    assert set(MORPHISMS) == {"deepen", "widen", "add_skip", "concat_skip", "widen_kernel", "branch",
                              "replicate_add", "split_concat", "insert_layer"}
    assert create_morphism("widen", mode="noise").mode == "noise"
    with pytest.raises(MorphismError, match="unknown morphism 'widden'.*did you mean 'widen'"):
        create_morphism("widden")
    with pytest.raises(MorphismError, match="widen: bad configuration .*'colour'"):
        create_morphism("widen", colour=1)
    with pytest.raises(ValueError, match="mode must be one of 'exact', 'replicate', 'noise', but got 'fuzzy'"):
        Widen(mode="fuzzy")
    with pytest.raises(ValueError, match="kernels must be odd positive integers"):
        Deepen(kernels=(2,))


@pytest.mark.parametrize("name", list(MORPHISMS))
def test_every_site_of_every_morphism_is_exact(name: str, net) -> None:  # noqa: ANN001
    arch, state, batch = net
    morphism = MORPHISMS[name]()
    sites = morphism.sites(arch)
    assert sites, f"{name} found no site in {arch.describe()}"
    for i, site in enumerate(sites):
        result = morphism.apply(arch, site, np.random.default_rng(i))
        assert result.child.lineage.parent == arch.id and result.steps[0].site == site
        assert result.child.id != arch.id
        check_exact(result, arch, state, batch)
        # Parent nodes keep their ids, so the parent's keys survive in the child.
        assert {n.id for n in arch.nodes} <= {n.id for n in result.child.nodes}


def test_deepen_inserts_identity_conv_bn_relu(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = Deepen(kernels=(5,)).apply(arch, {"node": "maxpool1"}, np.random.default_rng(0))
    child = result.child
    assert [child.node(n).op for n in ("conv6", "bn6", "relu7")] == ["conv", "bn", "relu"]
    assert child.node("conv6")["kernel"] == 5 and child.node("conv6").inputs == ("maxpool1",)
    assert child.node("conv4").inputs == ("relu7",)  # the depthwise conv now reads the new layer
    child_state = check_exact(result, arch, state, batch)
    w = child_state[state_key("conv6", "weight")]
    assert w.shape == (8, 8, 5, 5) and w.sum() == 8 and torch.all(w[:, :, 2, 2] == torch.eye(8))


def test_deepen_a_feature_vector(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = Deepen().apply(arch, {"node": "relu6"}, np.random.default_rng(0))
    assert result.child.node("linear3").inputs == ("relu6",) and result.child.node("linear2").inputs == ("relu7",)
    check_exact(result, arch, state, batch)


def test_deepen_needs_calibration(net) -> None:  # noqa: ANN001
    arch, state, _ = net
    result = Deepen().apply(arch, {"node": "relu1"}, np.random.default_rng(0))
    with pytest.raises(MorphismError, match="needs a calibration batch"):
        result.transform(state)


def test_bn_identity_from_data_beats_nni_rule_in_train_mode(net) -> None:  # noqa: ANN001
    """NNI's rule (gamma=1, beta=0, mean=0, var=1) is close to the identity in eval mode, but training
    starts in train mode, where BatchNorm standardises with batch statistics: the inserted layer then
    changes the function. Ours, set from the data's statistics, stays the identity."""
    arch, state, batch = net
    result = Deepen(kernels=(3,)).apply(arch, {"node": "relu1"}, np.random.default_rng(0))
    ours = result.transform(state, batch)
    nni = {**ours, **nni_bn_rule("bn6", 8)}
    train_ours = preservation_error(arch, state, result.child, ours, batch, train_mode=True)
    train_nni = preservation_error(arch, state, result.child, nni, batch, train_mode=True)
    assert train_ours.relative <= 1e-4, train_ours
    assert train_nni.relative > 1e-2, train_nni

    # After one forward pass in train mode (the first training step) the running statistics of NNI's
    # layer have moved, and even eval-mode outputs change; ours stay where they were.
    def after_one_step(child_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        module = build_module(result.child, {k: v.clone() for k, v in child_state.items()}).train()
        with torch.no_grad():
            module(batch)
        return module.state_dict()

    parent_after = build_module(arch, {k: v.clone() for k, v in state.items()}).train()
    with torch.no_grad():
        parent_after(batch)
    parent_state = parent_after.state_dict()
    assert preservation_error(arch, parent_state, result.child, after_one_step(ours), batch).relative <= 1e-3
    assert preservation_error(arch, parent_state, result.child, after_one_step(nni), batch).relative > 1e-2


def test_bn_identity_is_exact_for_any_statistics() -> None:
    mean, var = torch.randn(4, dtype=torch.float64), torch.rand(4, dtype=torch.float64) + 0.1
    bn = torch.nn.BatchNorm2d(4).eval()
    bn.load_state_dict({k.split(".", 2)[2]: v for k, v in bn_identity("x", mean, var).items()})
    x = torch.randn(3, 4, 5, 5) * 10
    assert torch.allclose(bn(x), x, atol=1e-5)


def test_widen_follows_channels_through_residual_add(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = Widen(mode="replicate").apply(arch, {"node": "conv1"}, np.random.default_rng(3))
    child, step = result.child, result.steps[0]
    assert step.params["width"] == 16 and len(step.params["replicate"]) == 8
    assert all(0 <= i < 8 for i in step.params["replicate"])
    # conv1 feeds the residual add whose other input ends in conv3: absorbed, widened alike.
    assert child.node("conv1")["out_channels"] == child.node("conv3")["out_channels"] == 16
    # The depthwise conv after the pool follows the map, the convs reading it take it in.
    assert child.node("conv4")["groups"] == child.node("conv4")["out_channels"] == 16
    assert child.shape("concat1") == (24, 4, 4)
    child_state = check_exact(result, arch, state, batch)
    # Outgoing weights of a replicated unit are divided among its copies.
    w_old, w_new = state[state_key("conv2", "weight")], child_state[state_key("conv2", "weight")]
    mapping = list(range(8)) + step.params["replicate"]
    counts = np.bincount(mapping)
    for j, i in enumerate(mapping):
        assert torch.allclose(w_new[:, j], w_old[:, i] / counts[i])


def test_exact_widen_gives_new_units_random_inputs_and_zero_outputs(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = Widen().apply(arch, {"node": "conv1"}, np.random.default_rng(3))
    assert result.steps[0].params["init"] == "fresh"
    child_state = check_exact(result, arch, state, batch)  # through the residual add, depthwise conv, concat
    for producer in ("conv1", "conv3"):  # conv3 is absorbed by the residual add
        w = child_state[state_key(producer, "weight")]
        assert torch.equal(w[:8], state[state_key(producer, "weight")])
        assert w[8:].abs().min() > 0 and len({tuple(r.flatten().tolist()) for r in w}) == 16  # all different
    w_old, w_new = state[state_key("conv2", "weight")], child_state[state_key("conv2", "weight")]
    assert torch.equal(w_new[:, :8], w_old) and w_new[:, 8:].abs().sum() == 0  # old undivided, new zero
    # the same step gives the same weights (lineage replay)
    again = replay(arch, result.steps).transform(state, batch)
    assert all(torch.equal(again[k], child_state[k]) for k in child_state)


def _train_a_few_steps(arch, state, steps: int = 5):  # noqa: ANN001, ANN202
    torch.manual_seed(0)
    model = build_module(arch, state)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(64, *arch.input_shape)
    y = torch.randint(0, arch.num_classes, (64,))
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {k: v.detach() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("node", ["conv1", "linear1"])
def test_exact_widen_gives_units_that_training_separates_where_copies_stay_copies(net, node: str) -> None:  # noqa: ANN001
    """The learnability defect of Net2Net's copies, and its fix: after a few SGD steps, a widened layer in
    ``exact`` mode has no two identical units, while ``replicate``'s copies are still exact copies."""
    arch, state, _ = net
    counts = {}
    for mode in ("exact", "replicate"):
        result = Widen(mode=mode).apply(arch, {"node": node}, np.random.default_rng(1))
        trained = _train_a_few_steps(result.child, result.transform(state, None))
        rows = trained[state_key(node, "weight")].flatten(1)
        distinct = {tuple(torch.round(r, decimals=6).tolist()) for r in rows}
        counts[mode] = (len(distinct), rows.shape[0])
    assert counts["exact"][0] == counts["exact"][1], counts
    assert counts["replicate"][0] < counts["replicate"][1], counts  # the test can fail: copies stay copies

def test_widen_noise_breaks_symmetry_but_stays_close(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    exact = Widen(mode="replicate").apply(arch, {"node": "linear1"}, np.random.default_rng(0))
    noisy = Widen(mode="noise").apply(arch, {"node": "linear1"}, np.random.default_rng(0))
    assert noisy.child.id == exact.child.id and noisy.steps[0].params["noise"] == 1e-2
    w_exact = exact.transform(state)[state_key("linear1", "weight")]
    w_noisy = noisy.transform(state)[state_key("linear1", "weight")]
    assert torch.equal(w_exact[:16], w_noisy[:16]) and not torch.equal(w_exact[16:], w_noisy[16:])
    error = preservation_error(arch, state, noisy.child, noisy.transform(state), batch)
    assert 0 < error.relative < 0.05


def test_widen_is_not_offered_where_it_cannot_be_exact() -> None:
    g = GraphBuilder((3, 8, 8), 4)
    x = g.conv_bn_relu(g.input, 8)
    y = g.conv(x, 8, 3, groups=2)  # grouped, not depthwise
    arch = g.build(g.linear(g.gap(g.add(y, g.conv(x, 8, 1))), 4))
    sites = {s["node"] for s in Widen().sites(arch)}
    assert "conv1" not in sites  # its channels would split conv2's groups
    assert "linear1" not in sites  # the output keeps num_classes
    with pytest.raises(MorphismError, match="widen does not apply at .*conv1.*grouped convolution"):
        Widen().apply(arch, {"node": "conv1"}, np.random.default_rng(0))


def test_widen_stops_at_end_of_width_list(net) -> None:  # noqa: ANN001
    arch, _, _ = net
    assert {"node": "conv1"} not in Widen(widths=(4, 8)).sites(arch)
    assert "end of the width list" in Widen(widths=(4, 8)).check(arch, {"node": "conv1"})


def test_add_skip_pools_a_larger_source(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = AddSkip().apply(arch, {"source": "relu1", "target": "relu4"}, np.random.default_rng(0))
    child = result.child
    assert child.node("avgpool1")["kernel"] == 2 and child.node("avgpool1").inputs == ("relu1",)
    assert child.node("conv6").inputs == ("avgpool1",) and child.node("conv6")["kernel"] == 1
    assert child.node("add2").inputs == ("relu4", "conv6")
    check_exact(result, arch, state, batch)


def test_concat_skip_gives_readers_zero_weights(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = ConcatSkip().apply(arch, {"source": "relu2", "target": "relu4"}, np.random.default_rng(0))
    assert result.child.node("concat2").inputs == ("relu4", "avgpool1")
    assert result.child.shape("concat2") == (16, 4, 4)
    child_state = check_exact(result, arch, state, batch)
    w = child_state[state_key("conv5", "weight")]  # reads relu4 (via concat2): 8 old + 8 new channels
    assert w.shape[1] == 16 and torch.all(w[:, 8:] == 0)


def test_skip_must_go_forward(net) -> None:  # noqa: ANN001
    arch, _, _ = net
    with pytest.raises(MorphismError, match="not an ancestor"):
        AddSkip().apply(arch, {"source": "relu4", "target": "relu1"}, np.random.default_rng(0))
    with pytest.raises(MorphismError, match="site is an object with keys \\['source', 'target'\\]"):
        AddSkip().apply(arch, {"node": "relu1"}, np.random.default_rng(0))
    with pytest.raises(MorphismError, match="'relu9' is not a node"):
        AddSkip().apply(arch, {"source": "relu9", "target": "relu1"}, np.random.default_rng(0))


def test_widen_kernel_pads_with_zeros(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = WidenKernel().apply(arch, {"node": "conv2"}, np.random.default_rng(0))
    assert result.child.node("conv2")["kernel"] == 5 and result.child.node("conv2")["padding"] == 2
    w = check_exact(result, arch, state, batch)[state_key("conv2", "weight")]
    assert torch.equal(w[:, :, 1:4, 1:4], state[state_key("conv2", "weight")]) and w[:, :, 0].abs().sum() == 0
    assert {"node": "conv2"} not in WidenKernel(max_kernel=3).sites(arch)


def test_branch_splits_the_weights_exactly(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = Branch().apply(arch, {"node": "conv2"}, np.random.default_rng(0))
    merge = result.child.node("add2")
    assert merge.inputs == ("conv2", "conv6") and merge["weights"] == (1.0, 1.0)
    child_state = check_exact(result, arch, state, batch)
    original = state[state_key("conv2", "weight")]
    w1, w2 = child_state[state_key("conv2", "weight")], child_state[state_key("conv6", "weight")]
    assert torch.allclose(w1 + w2, original) and not torch.allclose(w1, w2)
    bias = state_key("conv6", "bias")
    assert bias not in child_state or child_state[bias].abs().sum() == 0


def test_branch_averages_two_copies(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    result = Branch(mode="replicate").apply(arch, {"node": "conv2"}, np.random.default_rng(0))
    merge = result.child.node("add2")
    assert merge.inputs == ("conv2", "conv6") and merge["weights"] == (0.5, 0.5)
    child_state = check_exact(result, arch, state, batch)
    assert torch.equal(child_state[state_key("conv6", "weight")], state[state_key("conv2", "weight")])
    noisy = Branch(mode="noise").apply(arch, {"node": "conv2"}, np.random.default_rng(0))
    assert not torch.equal(noisy.transform(state)[state_key("conv6", "weight")], state[state_key("conv2", "weight")])


def test_chain_is_one_morphism_with_lineage(net) -> None:  # noqa: ANN001
    arch, state, batch = net
    morphisms = [cls() for cls in MORPHISMS.values()]
    result = random_chain(arch, morphisms, 5, np.random.default_rng(7))
    assert result.child.lineage.parent == arch.id and len(result.steps) == 5
    # Applying the steps one at a time gives the same child and weights as the composed transform.
    a, s = arch, state
    for step in result.steps:
        one = replay(a, [step])
        a, s = one.child, one.transform(s, batch)
    assert a.id == result.child.id
    composed = result.transform(state, batch)
    assert all(torch.equal(composed[k], s[k]) for k in s)
    # Same seed, same chain (randomness is an argument).
    assert random_chain(arch, morphisms, 5, np.random.default_rng(7)).child == result.child
    assert random_chain(arch, morphisms, 5, np.random.default_rng(8)).child.id != result.child.id


def test_replay_rejects_tampered_steps(net) -> None:  # noqa: ANN001
    arch, _, _ = net
    step = Widen().apply(arch, {"node": "conv1"}, np.random.default_rng(0)).steps[0]
    bad = type(step)(step.op, step.site, {**step.params, "replicate": step.params["replicate"][:-1]})
    with pytest.raises(MorphismError, match="replaying step 0 .*'replicate' = width - 8 indices"):
        replay(arch, [bad])
    with pytest.raises(MorphismError, match="unknown morphism 'prune'"):  # ('shrink' is a compression now)
        replay(arch, [type(step)("prune", {"node": "conv1"}, {})])


def test_random_chain_reports_when_nothing_applies() -> None:
    g = GraphBuilder((1, 4, 4), 2)
    arch = g.build(g.linear(g.gap(g.input), 2))
    with pytest.raises(MorphismError, match="no morphism of \\['widen'\\] applies"):
        random_chain(arch, [Widen()], 1, np.random.default_rng(0))
