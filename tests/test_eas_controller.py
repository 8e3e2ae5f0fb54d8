"""The EAS meta-controller (Cai et al. 2018): masks, hand-computed log-probabilities, REINFORCE, learning, state."""

from __future__ import annotations

import base64
import json
import math

import pytest
import torch

from nni_nas_ext.core.config import ConfigError, describe_config, parse_config
from nni_nas_ext.strategies.eas import (
    MAX_ACCURACY, ControllerConfig, DeeperAction, EasController, Trajectory, WiderAction, accuracy_reward,
    action_from_dict,
)
from nni_nas_ext.strategies.eas.actions import Step

TOKENS = ("conv-16-3", "conv-16-3", "pool", "conv-32-3", "conv-32-3", "pool", "fc-64")
MASK = (True, True, False, True, True, False, True)
BLOCKS = ((0, 1), (3, 4), (6,))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _parameters(controller: EasController) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in controller.network.state_dict().items()}


def _trajectory(controller: EasController, generator: torch.Generator) -> Trajectory:
    return Trajectory((Step(TOKENS, controller.wider(TOKENS, MASK, generator), MASK),
                       Step(TOKENS, controller.deeper(TOKENS, BLOCKS, generator), blocks=BLOCKS)))


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def test_config_defaults_are_the_papers_and_bad_values_name_key_and_range() -> None:
    config = ControllerConfig()
    assert (config.embedding_dim, config.hidden_size, config.kernels) == (16, 50, (1, 3, 5))
    assert (config.lr, config.baseline_decay, config.entropy_weight) == (2e-3, 0.95, 1e-5)
    assert all(row.doc for row in describe_config(ControllerConfig))

    with pytest.raises(ConfigError, match=r"'baseline_decay' must be float in \[0, 1\], but got 1.5") as info:
        parse_config(ControllerConfig, {"baseline_decay": 1.5})
    assert info.value.key == "baseline_decay"
    with pytest.raises(ConfigError, match=r"'hidden_size' must be int in \[1, 4096\], but got 0"):
        ControllerConfig(hidden_size=0)
    with pytest.raises(ConfigError, match=r"'kernels' must hold odd sizes.*\[1, 4\] with even \[4\]"):
        parse_config(ControllerConfig, {"kernels": [1, 4]})
    with pytest.raises(ConfigError, match=r"'kernels'.*non-empty"):
        ControllerConfig(kernels=())
    with pytest.raises(ConfigError, match=r"unknown key 'entropy_weigth'; did you mean 'entropy_weight'"):
        parse_config(ControllerConfig, {"entropy_weigth": 0.1})
    assert EasController({"kernels": [3, 5]}).config.kernels == (3, 5)


# --------------------------------------------------------------------------------------------------
# Masks and blocks
# --------------------------------------------------------------------------------------------------


def test_wider_never_widens_masked_layers_and_samples_the_sigmoid() -> None:
    controller = EasController()
    with torch.no_grad():  # every unmasked layer widened with probability 0.8, whatever the tokens
        controller.network.wider_head.weight.zero_()
        controller.network.wider_head.bias.fill_(math.log(0.8 / 0.2))
    generator = _gen(0)
    counts = torch.zeros(len(TOKENS))
    n = 400
    for _ in range(n):
        action = controller.wider(TOKENS, MASK, generator)
        assert len(action.decisions) == len(TOKENS)
        counts += torch.tensor(action.decisions, dtype=torch.float32)
    assert all(counts[i] == 0 for i, m in enumerate(MASK) if not m)
    freq = counts[torch.tensor(MASK)] / n
    assert torch.all((freq > 0.72) & (freq < 0.88)), freq  # 0.8 +- 4 standard deviations


def test_wider_respects_random_masks() -> None:
    controller = EasController()
    with torch.no_grad():  # near-certain widening: a masked layer would show up at once
        controller.network.wider_head.bias.fill_(8.0)
        controller.network.wider_head.weight.zero_()
    rng, generator = _gen(1), _gen(2)
    for _ in range(100):
        length = int(torch.randint(1, 12, (1,), generator=rng))
        mask = tuple(bool(b) for b in torch.rand(length, generator=rng) < 0.5)
        tokens = tuple(f"conv-{8 * int(k)}-3" for k in torch.randint(1, 6, (length,), generator=rng))
        action = controller.wider(tokens, mask, generator)
        assert all(m or not d for d, m in zip(action.decisions, mask))
        assert sum(action.decisions) >= sum(mask) - 1


def test_deeper_picks_only_non_empty_blocks_and_layers_inside_the_block() -> None:
    controller = EasController()
    tokens = ("conv-8-3", "pool", "conv-8-3", "conv-8-3", "pool", "pool", "conv-16-5", "fc-32")
    blocks = ((), (0,), (2, 3), (), (6, 7))
    generator = _gen(3)
    seen = set()
    for _ in range(300):
        action = controller.deeper(tokens, blocks, generator)
        assert blocks[action.block], action
        assert action.layer in blocks[action.block], action
        assert action.kernel in (1, 3, 5)
        seen.add((action.block, action.layer))
    assert seen == {(1, 0), (2, 2), (2, 3), (4, 6), (4, 7)}  # every legal choice is reachable


def test_deeper_raises_when_no_block_has_a_layer() -> None:
    controller = EasController()
    for blocks in ([], [[], []]):
        with pytest.raises(ValueError, match="no block has a layer"):
            controller.deeper(TOKENS, blocks, _gen(0))
    with pytest.raises(ValueError, match=r"token indices in \[0, 6\], but holds 7"):
        controller.deeper(TOKENS, [[0, 7]], _gen(0))
    with pytest.raises(ValueError, match="one entry per token"):
        controller.wider(TOKENS, MASK[:-1], _gen(0))
    with pytest.raises(TypeError, match="torch.Generator"):
        controller.wider(TOKENS, MASK, 0)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Log-probabilities and entropies by hand
# --------------------------------------------------------------------------------------------------


def _bernoulli_entropy(p: float) -> float:
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_wider_log_prob_and_entropy_by_hand() -> None:
    controller = EasController()
    with torch.no_grad():
        controller.network.wider_head.weight.zero_()
        controller.network.wider_head.bias.fill_(math.log(0.8 / 0.2))  # sigmoid = 0.8 everywhere
    action = WiderAction((True, False, False, True, False, False, False))
    logp, entropy = controller.log_prob(TOKENS, action, mask=MASK)
    # unmasked: 0, 1, 3, 4, 6 -> widened 0 and 3, kept 1, 4 and 6; the masked 2 and 5 count for nothing
    assert logp.item() == pytest.approx(2 * math.log(0.8) + 3 * math.log(0.2), rel=1e-5)
    assert entropy.item() == pytest.approx(5 * _bernoulli_entropy(0.8), rel=1e-5)
    assert logp.requires_grad and entropy.requires_grad
    none_logp, none_entropy = controller.log_prob(TOKENS, WiderAction((False,) * 7), mask=(False,) * 7)
    assert none_logp.item() == 0.0 and none_entropy.item() == 0.0


def test_deeper_log_prob_is_the_sum_of_three_log_softmax_entries() -> None:
    controller = EasController()
    net = controller.network
    with torch.no_grad():  # uniform over non-empty blocks and over the block's layers; kernels 1:2:5
        for head in (net.block_query, net.layer_query, net.kernel_head):
            head.weight.zero_()
            head.bias.zero_()
        net.kernel_head.bias.copy_(torch.log(torch.tensor([1.0, 2.0, 5.0])))
    tokens = ("conv-8-3", "conv-8-3", "pool", "conv-8-3", "conv-8-3", "conv-8-3")
    blocks = ((0, 1), (), (3, 4, 5))
    kernel_p = [1 / 8, 2 / 8, 5 / 8]
    kernel_entropy = -sum(p * math.log(p) for p in kernel_p)
    for action, n_layers, p_kernel in ((DeeperAction(2, 4, 5), 3, 5 / 8), (DeeperAction(0, 0, 1), 2, 1 / 8)):
        logp, entropy = controller.log_prob(tokens, action, blocks=blocks)
        assert logp.item() == pytest.approx(math.log(1 / 2) + math.log(1 / n_layers) + math.log(p_kernel), rel=1e-5)
        assert entropy.item() == pytest.approx(math.log(2) + math.log(n_layers) + kernel_entropy, rel=1e-5)
    # and the sampler follows the same distribution: kernel 5 about 5/8 of the time, block 1 never
    generator = _gen(4)
    samples = [controller.deeper(tokens, blocks, generator) for _ in range(400)]
    assert abs(sum(a.kernel == 5 for a in samples) / 400 - 5 / 8) < 0.1
    assert abs(sum(a.block == 0 for a in samples) / 400 - 1 / 2) < 0.1


def test_log_prob_rejects_impossible_actions() -> None:
    controller = EasController()
    with pytest.raises(ValueError, match=r"cannot widen masked layers, but widens \[2\]"):
        controller.log_prob(TOKENS, WiderAction((False, False, True) + (False,) * 4), mask=MASK)
    with pytest.raises(ValueError, match=r"layer must be in its block \[3, 4\], but got layer 0"):
        controller.log_prob(TOKENS, DeeperAction(1, 0, 3), blocks=BLOCKS)
    with pytest.raises(ValueError, match=r"non-empty block"):
        controller.log_prob(TOKENS, DeeperAction(1, 3, 3), blocks=((0,), ()))
    with pytest.raises(ValueError, match=r"kernel must be one of \[1, 3, 5\], but got 7"):
        controller.log_prob(TOKENS, DeeperAction(0, 0, 7), blocks=BLOCKS)
    with pytest.raises(ValueError, match="needs its mask"):
        controller.log_prob(TOKENS, WiderAction((False,) * 7))


# --------------------------------------------------------------------------------------------------
# REINFORCE
# --------------------------------------------------------------------------------------------------


def test_reinforce_moves_probability_toward_positive_and_away_from_negative_advantage() -> None:
    controller = EasController(ControllerConfig(entropy_weight=0.0))
    trajectory = _trajectory(controller, _gen(5))
    wider_step, deeper_step = trajectory.steps

    def logps() -> tuple[float, float]:
        with torch.no_grad():
            return (controller.log_prob(TOKENS, wider_step.action, mask=MASK)[0].item(),
                    controller.log_prob(TOKENS, deeper_step.action, blocks=BLOCKS)[0].item())

    before = logps()
    stats = controller.update([trajectory], [0.9])
    r1 = math.tan(0.9 * math.pi / 2)
    assert stats["baseline"] == pytest.approx(0.95 * r1)  # b <- 0 + 0.95 (R - 0): advantage 0.05 R > 0
    assert stats["mean_advantage"] == pytest.approx(0.05 * r1)
    after = logps()
    assert after[0] > before[0] and after[1] > before[1]

    stats = controller.update([trajectory], [0.1])
    r2 = math.tan(0.1 * math.pi / 2)
    b2 = 0.95 * r1 + 0.95 * (r2 - 0.95 * r1)
    assert stats["baseline"] == pytest.approx(b2)
    assert stats["mean_advantage"] == pytest.approx(r2 - b2) and r2 - b2 < 0
    again = logps()
    assert again[0] < after[0] and again[1] < after[1]
    assert controller.updates == 2 and controller.baseline == pytest.approx(b2)


def test_update_validates_and_clips_accuracies() -> None:
    controller = EasController()
    trajectory = _trajectory(controller, _gen(6))
    before = _parameters(controller)
    for bad in (1.5, -0.1, float("nan"), True):
        with pytest.raises(ValueError, match=r"accuracy must be a number in \[0, 1\]"):
            controller.update([trajectory], [bad])
    with pytest.raises(ValueError, match="one accuracy per trajectory"):
        controller.update([trajectory, trajectory], [0.5])
    bad_kernel = Trajectory((Step(TOKENS, DeeperAction(0, 0, 7), blocks=BLOCKS),))
    with pytest.raises(ValueError, match="kernel must be one of"):
        controller.update([trajectory, bad_kernel], [0.5, 0.5])
    assert controller.updates == 0 and controller.baseline == 0.0
    assert all(torch.equal(before[k], v) for k, v in _parameters(controller).items())

    assert accuracy_reward(1.0) == pytest.approx(math.tan(MAX_ACCURACY * math.pi / 2))
    assert math.isfinite(controller.update([trajectory, Trajectory(())], [1.0, 0.0])["loss"])


def test_learning_beats_the_uniform_random_policy_on_a_synthetic_reward() -> None:
    target = {1, 3}  # widen exactly layers 1 and 3, deepen block 0 with kernel 3

    def accuracy(w: WiderAction, d: DeeperAction) -> float:
        agree = sum(w.decisions[i] == (i in target) for i in range(len(TOKENS)) if MASK[i]) / sum(MASK)
        return 0.3 + 0.3 * agree + 0.15 * (d.block == 0) + 0.15 * (d.kernel == 3)

    # exact expectation under uniform choices: half of the layers agree, block 0 w.p. 1/3, kernel 3 w.p. 1/3
    uniform = 0.3 + 0.3 * 0.5 + 0.15 / 3 + 0.15 / 3

    def evaluate(controller: EasController) -> float:
        generator = _gen(99)
        values = [accuracy(controller.wider(TOKENS, MASK, generator), controller.deeper(TOKENS, BLOCKS, generator))
                  for _ in range(100)]
        return sum(values) / len(values)

    controller = EasController()
    untrained = evaluate(controller)
    generator = _gen(7)
    for _ in range(30):  # episodes of 10 children, as the paper
        trajectories = [_trajectory(controller, generator) for _ in range(10)]
        controller.update(trajectories, [accuracy(t.steps[0].action, t.steps[1].action)  # type: ignore[arg-type]
                                         for t in trajectories])
    trained = evaluate(controller)
    assert trained > uniform + 0.1, (trained, uniform)
    assert trained > untrained + 0.05, (trained, untrained)


# --------------------------------------------------------------------------------------------------
# Determinism and state
# --------------------------------------------------------------------------------------------------


def test_seeded_initialisation_leaves_the_global_generator_alone() -> None:
    global_state = torch.get_rng_state()
    a, b, c = EasController(), EasController(), EasController(ControllerConfig(seed=1))
    trajectory = _trajectory(a, _gen(8))
    a.update([trajectory], [0.5])
    assert torch.equal(torch.get_rng_state(), global_state)
    params_b, params_c = _parameters(b), _parameters(c)
    assert not all(torch.equal(params_b[k], v) for k, v in params_c.items())
    assert [_trajectory(b, _gen(9)) for _ in range(3)] == [_trajectory(EasController(), _gen(9)) for _ in range(3)]


def test_state_dict_json_round_trip_is_exact() -> None:
    config = ControllerConfig(lr=0.01)
    original = EasController(config)
    generator = _gen(10)
    for _ in range(2):
        original.update([_trajectory(original, generator) for _ in range(3)], [0.4, 0.6, 0.8])
    state = json.loads(json.dumps(original.state_dict()))
    restored = EasController(config)
    restored.load_state_dict(state)
    fresh = EasController(config)
    assert restored.baseline == original.baseline and restored.updates == 2

    episode = [_trajectory(original, _gen(11)) for _ in range(3)]
    for step in episode[0].steps:
        kwargs = {"mask": step.mask} if step.mask is not None else {"blocks": step.blocks}
        lp_original, ent_original = original.log_prob(step.tokens, step.action, **kwargs)
        lp_restored, ent_restored = restored.log_prob(step.tokens, step.action, **kwargs)
        assert torch.equal(lp_original, lp_restored) and torch.equal(ent_original, ent_restored)
    assert [_trajectory(restored, _gen(12)) for _ in range(2)] == [_trajectory(original, _gen(12)) for _ in range(2)]

    for controller in (original, restored, fresh):  # Adam's moments matter: the fresh one ends elsewhere
        controller.update(episode, [0.7, 0.2, 0.5])
    p_original, p_restored, p_fresh = _parameters(original), _parameters(restored), _parameters(fresh)
    assert all(torch.equal(p_original[k], p_restored[k]) for k in p_original)
    assert not all(torch.equal(p_original[k], p_fresh[k]) for k in p_original)
    assert restored.state_dict()["baseline"] == original.state_dict()["baseline"]

    again = EasController.from_state_dict(json.loads(json.dumps(original.state_dict())))
    assert all(torch.equal(p_original[k], v) for k, v in _parameters(again).items())


def test_load_state_dict_rejects_other_configurations_and_garbage() -> None:
    state = EasController().state_dict()
    other = EasController(ControllerConfig(seed=3))
    before = _parameters(other)
    with pytest.raises(ValueError, match=r"keys \['seed'\] differ"):
        other.load_state_dict(state)
    with pytest.raises(ValueError, match="not an EAS controller state"):
        other.load_state_dict({"format": "nash-hill-climbing"})
    with pytest.raises(ValueError, match="cannot be restored"):
        other.load_state_dict({**state, "config": other.config.to_dict(), "tensors": "bm90IGEgdG9yY2ggZmlsZQ=="})
    assert all(torch.equal(before[k], v) for k, v in _parameters(other).items())


def test_actions_and_trajectories_round_trip_through_json() -> None:
    trajectory = _trajectory(EasController(), _gen(13))
    assert Trajectory.from_dict(json.loads(json.dumps(trajectory.to_dict()))) == trajectory
    assert action_from_dict(DeeperAction(1, 3, 5).to_dict()) == DeeperAction(1, 3, 5)
    assert WiderAction.from_dict({"kind": "wider", "decisions": [True, False]}) == WiderAction((True, False))
    with pytest.raises(ValueError, match="'kind' must be 'wider' or 'deeper'"):
        action_from_dict({"kind": "sideways"})
    with pytest.raises(ValueError, match="int >= 0"):
        action_from_dict({"kind": "deeper", "block": -1, "layer": 0, "kernel": 3})
    with pytest.raises(ValueError, match="cannot widen masked layers"):
        Step.from_dict({"tokens": ["pool"], "action": {"kind": "wider", "decisions": [True]}, "mask": [False]})
    with pytest.raises(ValueError, match="a deeper step has blocks, not a mask"):
        Step(("conv-8-3",), DeeperAction(0, 0, 3), mask=(True,))


def test_state_tensors_are_plain_json_without_pickle_and_old_states_are_refused() -> None:
    state = EasController(ControllerConfig(hidden_size=4, embedding_dim=2)).state_dict()
    tensors = state["tensors"]
    assert set(tensors) == {"network", "optimizer"}
    weight = tensors["network"]["wider_head.weight"]
    assert (weight["dtype"], weight["shape"]) == ("float32", [1, 8])
    assert len(base64.b64decode(weight["data"])) == 8 * 4  # the raw float32 bytes, not a torch.save archive
    with pytest.raises(ValueError, match="version 1 held torch.save bytes"):
        EasController(ControllerConfig(hidden_size=4, embedding_dim=2)).load_state_dict({**state, "version": 1})
