"""FNA's architecture adaptation: binary gates, the cost term (trial_code/fna_gates.py), the settings and the
search (trial_code/fna_adaptation.py)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nni_nas_ext.core.config import ConfigError, parse_config
from nni_nas_ext.core.mbconv import build_network, mobilenet_v2
from nni_nas_ext.search_spaces.mbconv_space import SuperNetSpace
from nni_nas_ext.search_spaces.mbconv_supernet import MBConvSuperNet, remap_to_supernet
from nni_nas_ext.trial_code.fna_adaptation import AdaptationConfig, adapt
from nni_nas_ext.trial_code.fna_gates import BinaryGateMixer, alpha_gradient, expected_madds, rescale_pair


class _Layer(nn.Module):
    """A MixedLayer stand-in: ``ops`` and the ``mixer`` hook, as the super-network's MixedLayer."""

    def __init__(self, n_ops: int, width: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(nn.Sequential(nn.Linear(width, width), nn.Tanh()) for _ in range(n_ops))
        self.mixer = None
        self.active = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mixer(x, self) if self.mixer is not None else self.ops[self.active](x)


def _loss(layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return nn.functional.cross_entropy(layer(x), y)


def test_gate_gradient_matches_a_finite_difference() -> None:
    torch.manual_seed(0)
    layer = _Layer(4, 5).double()
    x, y = torch.randn(7, 5, dtype=torch.float64), torch.randint(0, 5, (7,))
    alpha = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    mixer = BinaryGateMixer([layer], [alpha])
    mixer.sample(torch.Generator().manual_seed(3))
    layer.mixer = mixer
    loss = _loss(layer, x, y)
    loss.backward()
    gates = mixer.gates[0]
    assert gates is not None and gates.grad is not None
    pair, active = mixer.pairs[0], mixer.active[0]
    assert len(set(pair)) == 2 and active in pair
    # the forward value is the active op alone
    layer.mixer = None
    layer.active = active
    assert torch.allclose(loss, _loss(layer, x, y))

    def loss_at(g: torch.Tensor) -> float:  # the layer's output as sum_k g_k o_k(x), gates relaxed to reals
        with torch.no_grad():
            out = sum(g[k] * layer.ops[i](x) for k, i in enumerate(pair))
            return float(nn.functional.cross_entropy(out, y))

    eps = 1e-6
    base = gates.detach().clone()
    for k in range(2):
        up, down = base.clone(), base.clone()
        up[k] += eps
        down[k] -= eps
        numeric = (loss_at(up) - loss_at(down)) / (2 * eps)
        assert gates.grad[k].item() == pytest.approx(numeric, rel=1e-5, abs=1e-8)


def test_alpha_gradient_is_the_derivative_of_the_expected_gate_loss() -> None:
    torch.manual_seed(1)
    alpha = torch.randn(6, dtype=torch.float64)
    pair = (4, 1)
    g = torch.randn(2, dtype=torch.float64)
    grad = alpha_gradient(alpha, pair, g)

    def f(a: torch.Tensor) -> float:  # sum_k softmax(a[pair])_k * g_k
        return float((torch.softmax(a[list(pair)], 0) * g).sum())

    eps = 1e-6
    for i in range(6):
        up, down = alpha.clone(), alpha.clone()
        up[i] += eps
        down[i] -= eps
        assert grad[i].item() == pytest.approx((f(up) - f(down)) / (2 * eps), abs=1e-8)
    assert grad[[0, 2, 3, 5]].abs().max() == 0  # ops outside the pair get nothing


def test_rescale_keeps_the_pair_s_total_probability_mass() -> None:
    alpha = torch.tensor([0.3, -1.0, 2.0, 0.5])
    before = alpha[[0, 2]].clone()
    alpha[[0, 2]] += torch.tensor([0.7, -0.2])
    rescale_pair(alpha, (0, 2), before)
    assert torch.logsumexp(alpha[[0, 2]], 0).item() == pytest.approx(torch.logsumexp(before, 0).item(), abs=1e-6)
    assert (alpha[0] - alpha[2]).item() == pytest.approx(0.3 + 0.7 - 2.0 + 0.2, abs=1e-6)


def test_expected_madds_of_a_one_hot_choice_is_the_derived_architecture_s() -> None:
    space = SuperNetSpace(mobilenet_v2(10, 0.25, 8, 1), max_layers=2)
    choice = {space.label(s, l): (l + s) % len(space.ops(s, l)) for s, l in space.layer_slots()}
    alphas = [torch.full((len(space.ops(s, l)),), -1e4, dtype=torch.float64) for s, l in space.layer_slots()]
    for a, (s, l) in zip(alphas, space.layer_slots()):
        a[choice[space.label(s, l)]] = 0.0
    tables = [torch.tensor(space.op_madds(s, l), dtype=torch.float64) for s, l in space.layer_slots()]
    assert float(expected_madds(alphas, tables, space.fixed_madds())) == pytest.approx(
        space.derive(choice).num_madds(), rel=1e-9)


# --------------------------------------------------------------------------------------------------
# The search on a tiny super-network
# --------------------------------------------------------------------------------------------------

def _tiny(seed: int = 0) -> tuple[SuperNetSpace, MBConvSuperNet, tuple[torch.Tensor, ...]]:
    space = SuperNetSpace(mobilenet_v2(4, 0.25, 8, 1, dropout=0.0), max_layers=2, kernels=(3, 5), expansions=(3, 6))
    torch.manual_seed(seed)
    net = MBConvSuperNet(space)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(96, 1, 8, 8, generator=gen)
    y = torch.randint(0, 4, (96,), generator=gen)
    x[y == 1, :, :4] += 2.0  # some learnable signal
    x[y == 2, :, 4:] -= 2.0
    return space, net, (x[:64], y[:64], x[64:], y[64:])


def _config(**kw) -> AdaptationConfig:
    return AdaptationConfig(**{"epochs": 3, "warmup_epochs": 1, "batch_size": 16, "seed": 0, **kw})


def test_a_huge_lambda_derives_a_cheaper_architecture_than_lambda_zero() -> None:
    derived, choices = {}, {}
    for lam in (0.0, 1e4):
        space, net, data = _tiny()
        result = adapt(net, space, *data, _config(cost_lambda=lam, arch_lr=0.05))
        derived[lam] = result.architecture.num_madds()
        choices[lam] = [result.choice[space.label(s, l)] for s, l in space.layer_slots()]
    # with the cost term dominating, every slot ends on an op cheaper than its slot's average (Adam moves the
    # alphas of all below-average ops up, the others down)
    space, _, _ = _tiny()
    for (s, l), index in zip(space.layer_slots(), choices[1e4]):
        madds = space.op_madds(s, l)
        assert madds[index] < sum(madds) / len(madds), (space.label(s, l), space.op_names(s, l)[index])
    assert derived[1e4] < derived[0.0]


def _remapped(seed: int = 0) -> tuple[SuperNetSpace, MBConvSuperNet, tuple[torch.Tensor, ...]]:
    """FNA's starting point on a tiny task: a seed network trained briefly (64 steps on the first 256 images),
    remapped into the super-network (Fang et al. 2020, sec. 3.2); 384 images to adapt on, 128 to validate.
    Class ``k`` adds ``k`` to every pixel: learnable by a network that ends in global pooling."""
    seed_arch = mobilenet_v2(4, 0.25, 8, 1, dropout=0.0)
    space = SuperNetSpace(seed_arch, max_layers=2, kernels=(3, 5), expansions=(3, 6))
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(768, 1, 8, 8, generator=gen)
    y = torch.randint(0, 4, (768,), generator=gen)
    x += y.view(-1, 1, 1, 1).float()
    torch.manual_seed(seed)
    seed_net = build_network(seed_arch)
    opt = torch.optim.SGD(seed_net.parameters(), lr=0.02, momentum=0.9)
    seed_net.train()
    for _ in range(64):
        batch = torch.randint(0, 256, (16,), generator=gen)
        loss = nn.functional.cross_entropy(seed_net(x[batch]), y[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net = MBConvSuperNet(space)
    net.load_state_dict(remap_to_supernet(seed_arch, seed_net.state_dict(), space))
    return space, net, (x[256:640], y[256:640], x[640:], y[640:])


@pytest.mark.slow
def test_a_tiny_run_learns_and_reports_every_epoch() -> None:
    # What was asserted before (issue 13): the epoch-6 weight loss of a *randomly initialised* super-network
    # below epoch 1's, with 2 weight steps an epoch. Measured on 12 seeds: a coin flip (3-6 of 12 failed, on
    # Intel and AMD alike), and still 1 of 12 with 16 steps an epoch: every weight step trains a freshly
    # sampled path through 12 slots of 4-5 ops, so from random weights the loss rises above chance for 2-3
    # epochs (at FNA's lr with momentum 0.9; plain training of one path learns the same task in 96 steps) and
    # an epoch's mean loss is noise. FNA starts from a trained seed, remapped; from there every one of 24 runs
    # (12 seeds x 1 and 2 threads) ended with the derived network at 0.79-1.0 validation accuracy (chance 0.25).
    space, net, data = _remapped()
    seen = []
    result = adapt(net, space, *data, _config(epochs=6, warmup_epochs=2), on_epoch=seen.append)
    assert [h.epoch for h in seen] == [1, 2, 3, 4, 5, 6]
    assert [h.arch_updates for h in seen] == [False, False, True, True, True, True]
    assert seen[0].arch_loss is None and seen[-1].arch_loss is not None
    assert seen[-1].val_acc >= 0.7  # the derived network, far above chance (0.25)
    assert result.architecture == space.derive(result.choice)
    assert result.history[-1].derived_madds == result.architecture.num_madds()
    for probs in result.probabilities.values():
        assert sum(probs) == pytest.approx(1.0)


@pytest.mark.slow
def test_the_same_seed_gives_the_same_search_and_leaves_the_global_generator_alone() -> None:
    outcomes = []
    for _ in range(2):
        space, net, data = _tiny()
        torch.manual_seed(123)
        result = adapt(net, space, *data, _config(arch_lr=0.01))
        after = torch.rand(1)
        torch.manual_seed(123)
        assert torch.equal(after, torch.rand(1))  # adapt forked the global generator
        outcomes.append((result.choice, result.probabilities, [h.weight_loss for h in result.history]))
    assert outcomes[0] == outcomes[1]
    space, net, data = _tiny()
    other = adapt(net, space, *data, _config(arch_lr=0.01, seed=1))
    assert other.probabilities != outcomes[0][1]


def test_the_supernet_ends_on_the_derived_path_without_a_mixer() -> None:
    space, net, data = _tiny()
    result = adapt(net, space, *data, _config())
    for layer, (s, l) in zip(net.searchable, space.layer_slots()):
        assert layer.mixer is None
        assert layer.active == result.choice[space.label(s, l)]
    assert all(p.requires_grad for p in net.parameters())


def test_configuration_errors_name_the_key_and_the_rule() -> None:
    with pytest.raises(ConfigError, match="warmup_epochs < epochs must hold"):
        AdaptationConfig(epochs=2, warmup_epochs=2)
    with pytest.raises(ConfigError, match="'cost_lambda' must be float"):
        parse_config(AdaptationConfig, {"cost_lambda": -1.0})
    with pytest.raises(ConfigError, match="unknown key 'arch_l'"):
        parse_config(AdaptationConfig, {"arch_l": 1.0})
    assert AdaptationConfig().weight_lr == 0.02 and AdaptationConfig().arch_lr == 3e-4  # FNA's values
    space, net, data = _tiny()
    with pytest.raises(ValueError, match="too small to split"):
        adapt(net, space, data[0][:3], data[1][:3], data[2], data[3], _config())


def test_nan_losses_stop_the_search_with_a_remedy() -> None:
    space, net, (x, y, vx, vy) = _tiny()
    x = x.clone()
    x[0, 0, 0, 0] = math.nan
    with pytest.raises(FloatingPointError, match="lower weight_lr"):
        adapt(net, space, x, y, vx, vy, _config())
