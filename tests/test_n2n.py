"""N2N learning (Ashok et al., ICLR 2018): the policies' masks and shapes, the reward, students as exact slices of the
teacher, REINFORCE, the controller's resume, and the strategy's sequence of candidates (fake trainings)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from _archgen import distinct_state, random_architecture, random_batch
from _compression_helpers import assert_sorted_slice, check_child
from test_nash import drive, fake_result

from nni_nas_ext.core import GraphBuilder, replay
from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.core.morphisms import top_units, unit_scores
from nni_nas_ext.search_spaces import nash_seed, plain_cnn
from nni_nas_ext.strategies.n2n import (
    FEATURES, N2NConfig, N2NPolicy, N2NRandom, N2NSearch, RandomActions, Trajectory, accuracy_ratio, apply_removals,
    apply_shrinkage, compression, compression_reward, draw_student, imported_teacher_id, layer_table, n2n_reward,
    shrink_width,
)

TEACHER = plain_cnn(depth=6, input_shape=(1, 8, 8), num_classes=10, width=8, stages=1)
SMALL = {"episodes": 3, "students_per_episode": 4, "epochs_teacher": 2, "epochs_student": 1, "epochs_final": 2,
         "policy_hidden_size": 8, "policy_embedding_dim": 4, "seed": 0}


def residual_teacher():
    """conv1 -> [conv2 -> conv3] + conv1 (a residual add) -> conv4 -> gap -> linear: a layer tied to another."""
    g = GraphBuilder((1, 8, 8), 10)
    x = g.conv_bn_relu(g.input, 8)
    y = g.bn(g.conv(g.conv_bn_relu(x, 8), 8, 3))
    x = g.relu(g.add(x, y))
    x = g.conv_bn_relu(x, 8)
    return g.build(g.linear(g.gap(x), 10))


def small_policy(**kw: Any) -> N2NPolicy:
    return N2NPolicy({"hidden_size": 8, "embedding_dim": 4, **kw})


# ---- the state: layers, features and masks ---------------------------------------------------------------


def test_layer_table_reads_every_layer_with_its_features_and_masks() -> None:
    table = layer_table(TEACHER)
    kinds = [TEACHER.node(n).op for n in table.nodes]
    assert kinds == ["conv"] * 5 + ["gap", "linear"]
    assert all(len(row) == len(FEATURES) for row in table.features)
    # the first conv changes the channel count (1 -> 8): it cannot go; the others map 8 -> 8 and can
    assert table.removable == (False, True, True, True, True, False, False)
    # every conv can shrink; the pool and the output layer cannot
    assert table.shrinkable == (True,) * 5 + (False, False)
    assert table.widths[:5] == (8,) * 5


def test_removal_masks_follow_the_decisions_so_every_student_is_valid() -> None:
    table = layer_table(TEACHER)
    everything = [True] * len(table)  # ask to remove all, masked layers included
    reduced, steps, mask, taken = apply_removals(TEACHER, everything)
    assert [s.op for s in steps] == ["remove_layer"] * 4 and taken == (False, True, True, True, True, False, False)
    assert mask == table.removable and not any(t and not m for t, m in zip(taken, mask))
    assert reduced.num_parameters() < TEACHER.num_parameters() and reduced.lineage.parent == TEACHER.id
    # in the residual net, conv2 and conv3 are tied by the add: removing conv2 keeps shapes, conv3 ends in a BN
    res = residual_teacher()
    _, steps, mask, _ = apply_removals(res, [True] * len(layer_table(res)))
    assert all(mask[i] is False for i, n in enumerate(layer_table(res).nodes) if n in ("conv1", "conv3", "linear1"))
    assert replay(res, [*steps]).child.id == apply_removals(res, [True] * len(layer_table(res)))[0].id


def test_shrink_widths_and_the_residual_partner() -> None:
    assert [shrink_width(8, r) for r in (0.1, 0.25, 0.5, 0.9, 1.0)] == [1, 2, 4, 7, 8]
    res = residual_teacher()
    table = layer_table(res)
    ratios = [0.5 if n in ("conv1", "conv3") else 1.0 for n in table.nodes]
    student, steps = apply_shrinkage(res, res, [], ratios)
    # conv1 and conv3 are tied by the add: shrinking conv1 shrinks conv3 too (conv3 itself cannot lead: conv1's
    # ReLU feeds conv2 as well), so there is one step
    assert [s.site["node"] for s in steps] == ["conv1"]
    assert student.shape("conv3")[0] == 4 and student.shape("conv1")[0] == 4
    with pytest.raises(ValueError, match=r"a shrink ratio must be in \(0, 1\], but got 1.5"):
        apply_shrinkage(res, res, [], [1.5] * len(table))
    with pytest.raises(ValueError, match="one shrink ratio per remaining layer is needed"):
        apply_shrinkage(res, res, [], [1.0])


# ---- the policies -------------------------------------------------------------------------------------------


def test_policy_shapes_and_masked_decisions_never_taken() -> None:
    policy = small_policy()
    table = layer_table(TEACHER)
    probs = policy.removal_probabilities(table.features)
    assert len(probs) == len(table) and all(0.0 < p < 1.0 for p in probs)
    rng = np.random.default_rng(0)
    for _ in range(20):
        student = draw_student(TEACHER, policy, rng)
        t = student.trajectory
        assert len(t.removals) == len(table) and not any(r and not m for r, m in zip(t.removals, t.removal_mask))
        assert len(t.ratios) == len(t.shrink_features) == len(t.shrink_mask)
        assert all((r >= 0) == m for r, m in zip(t.ratios, t.shrink_mask))
        assert all(r < len(policy.ratios) for r in t.ratios)
        assert student.architecture.lineage.parent == TEACHER.id
        assert student.architecture.num_parameters() <= TEACHER.num_parameters()
        logp, entropy, count = policy.log_prob(t)
        assert logp.shape == entropy.shape == count.shape == (2,)
        assert count.tolist() == [sum(t.removal_mask), sum(t.shrink_mask)]
        assert torch.isfinite(logp).all() and (logp <= 0).all() and (entropy >= 0).all()


def test_random_actions_are_uniform_over_what_the_masks_allow() -> None:
    source = RandomActions((0.25, 0.5, 1.0))
    rng = np.random.default_rng(1)
    removed, ratios = [], []
    for _ in range(400):
        student = draw_student(TEACHER, source, rng)
        removed.append(sum(student.trajectory.removals))
        ratios += [r for r in student.trajectory.ratios if r >= 0]
    assert 1.5 < float(np.mean(removed)) < 2.5  # four removable layers, each with probability 1/2 (sequential masks)
    counts = np.bincount(ratios, minlength=3) / len(ratios)
    assert np.allclose(counts, 1 / 3, atol=0.05)


def test_trajectory_round_trips_and_refuses_impossible_decisions() -> None:
    student = draw_student(TEACHER, small_policy(ratios=[0.5, 1.0]), np.random.default_rng(2))
    t = student.trajectory
    assert Trajectory.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    data = t.to_dict()
    masked = data["removal_mask"].index(False)
    data["removals"][masked] = True
    with pytest.raises(ValueError, match="a masked layer cannot be removed"):
        Trajectory.from_dict(data)
    with pytest.raises(ValueError, match="a trajectory is a JSON object with the keys"):
        Trajectory.from_dict({"removals": []})


def test_reinforce_raises_the_probability_of_rewarded_decisions() -> None:
    policy = small_policy(lr=0.05, entropy_weight=0.0)
    rng = np.random.default_rng(3)
    table = layer_table(TEACHER)
    before = policy.removal_probabilities(table.features)
    for _ in range(30):  # reward = number of layers removed: the policy must learn to remove more
        students = [draw_student(TEACHER, policy, rng) for _ in range(5)]
        figures = policy.learn([s.trajectory for s in students], [float(sum(s.trajectory.removals)) for s in students])
    after = policy.removal_probabilities(table.features)
    assert figures["updates"] == 30 and math.isfinite(figures["loss"])
    assert np.mean([after[i] for i in range(1, 5)]) > np.mean([before[i] for i in range(1, 5)]) + 0.2
    with pytest.raises(ValueError, match="one reward per trajectory"):
        policy.learn([students[0].trajectory], [1.0, 2.0])


def test_policy_state_round_trip_gives_identical_next_actions() -> None:
    a = small_policy(seed=5)
    rng = np.random.default_rng(4)
    students = [draw_student(TEACHER, a, rng) for _ in range(3)]
    a.learn([s.trajectory for s in students], [0.1, 0.5, 0.9])
    state = json.loads(json.dumps(a.state_dict()))
    b = small_policy(seed=5)
    b.load_state_dict(state)
    assert b.baseline == a.baseline and b.updates == a.updates == 1
    for p, q in zip(a.network.parameters(), b.network.parameters()):
        assert torch.equal(p, q)
    next_a = [draw_student(TEACHER, a, np.random.default_rng(9)).trajectory for _ in range(3)]
    next_b = [draw_student(TEACHER, b, np.random.default_rng(9)).trajectory for _ in range(3)]
    assert next_a == next_b
    a.learn(next_a, [0.3, 0.2, 0.1])
    b.learn(next_b, [0.3, 0.2, 0.1])  # Adam's moments were restored too: the same step
    for p, q in zip(a.network.parameters(), b.network.parameters()):
        assert torch.equal(p, q)
    with pytest.raises(ValueError, match="another configuration"):
        small_policy(seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match="not an N2N policy state"):
        b.load_state_dict({"format": "eas-controller"})


# ---- the reward -------------------------------------------------------------------------------------------


def test_reward_is_the_papers_product() -> None:
    assert compression(25, 100) == 0.75
    assert compression_reward(0.75) == pytest.approx(0.75 * 1.25)
    assert compression_reward(0.0) == 0.0 and compression_reward(1.0) == 1.0
    assert accuracy_ratio(0.45, 0.9) == pytest.approx(0.5)
    assert n2n_reward(25, 100, 0.45, 0.9) == pytest.approx(0.9375 * 0.5)
    assert n2n_reward(100, 100, 0.9, 0.9) == 0.0  # no compression, no reward
    with pytest.raises(ValueError, match="teacher_acc must be > 0"):
        accuracy_ratio(0.5, 0.0)
    with pytest.raises(ValueError, match="student_params must be an integer >= 1, but got 0"):
        compression(0, 10)
    with pytest.raises(ValueError, match=r"student_acc must be an accuracy in \[0, 1\], but got nan"):
        accuracy_ratio(float("nan"), 0.9)


# ---- students inherit exact slices of the teacher ----------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_a_students_weights_are_exactly_the_teachers_kept_slices(seed: int) -> None:
    teacher = TEACHER if seed % 2 else residual_teacher()
    state = distinct_state(teacher, seed)
    batch = random_batch(teacher, seed, n=8)
    rng = np.random.default_rng(seed)
    student = draw_student(teacher, RandomActions((0.25, 0.5, 0.75, 1.0)), rng)
    while student.architecture.id == teacher.id:  # a draw that kept the teacher as it is: draw again
        student = draw_student(teacher, RandomActions((0.25, 0.5, 0.75, 1.0)), rng)
    result = replay(teacher, student.architecture.lineage.steps)
    assert result.child.id == student.architecture.id
    child_state = check_child(teacher, state, result, batch)  # valid, smaller, exact sorted slices, replay equal
    for key, value in child_state.items():
        assert_sorted_slice(value, state[key], key)


@pytest.mark.parametrize("seed", range(40))
def test_students_of_random_architectures_are_valid_exact_slices(seed: int) -> None:
    """Skips, concatenations, depthwise and strided convs, hidden linear layers: every student the policy or random
    actions can draw is valid, smaller or equal, replays to itself, and holds exact slices of the teacher."""
    rng = np.random.default_rng(seed)
    teacher = random_architecture(rng)
    source = small_policy(seed=seed) if seed % 2 else RandomActions((0.25, 0.5, 1.0))
    state = distinct_state(teacher, seed)
    batch = random_batch(teacher, seed, n=4)
    for _ in range(3):
        student = draw_student(teacher, source, rng)
        arch = student.architecture
        assert arch.num_parameters() <= teacher.num_parameters()
        if arch.id == teacher.id:
            assert not arch.lineage.steps
            continue
        check_child(teacher, state, replay(teacher, arch.lineage.steps), batch)


def test_a_shrunk_layer_keeps_its_largest_l1_units_bit_for_bit() -> None:
    state = distinct_state(TEACHER, 7)
    table = layer_table(TEACHER)
    ratios = [0.5 if n == "conv2" else 1.0 for n in table.nodes]
    student, steps = apply_shrinkage(TEACHER, TEACHER, [], ratios)
    kept = top_units(unit_scores(TEACHER, state, "conv2", "l1"), 4)
    child = replay(TEACHER, steps).transform(state, None)
    assert torch.equal(child["layers.conv2.weight"], state["layers.conv2.weight"][kept])
    assert torch.equal(child["layers.conv3.weight"], state["layers.conv3.weight"][:, kept])
    for name in ("weight", "bias", "running_mean", "running_var"):
        key = f"layers.{TEACHER.consumers('conv2')[0]}.{name}"
        assert torch.equal(child[key], state[key][kept])


# ---- the strategy -----------------------------------------------------------------------------------------


def test_sequence_teacher_students_final() -> None:
    search = N2NSearch(TEACHER, SMALL)
    rounds = drive(search)
    first = rounds[0]
    assert [(c.role, c.parent, c.epochs) for c in first] == [("seed", None, 2)]
    teacher_id = first[0].id
    students = [c for r in rounds[1:-1] for c in r]
    assert students and all(c.role == "child" and c.parent == teacher_id and c.epochs == 1 for c in students)
    assert all(s.op in ("remove_layer", "shrink") for c in students for s in c.architecture.lineage.steps)
    final, reference = rounds[-1]
    assert (final.role, final.train_on, final.epochs, final.evaluate_test) == ("final", "train+val", 2, True)
    assert (reference.role, reference.parent, reference.epochs, reference.evaluate_test) == \
        ("seed_final", teacher_id, 0, True)
    summary = json.loads(json.dumps(search.summary(), allow_nan=False))
    assert summary["status"] == "finished" and len(summary["mean_rewards"]) == 3
    assert summary["winner"]["candidate"] == final.parent and summary["winner"]["compression"] > 1.0
    assert search.policy.updates == 3
    best = max((s for e in summary["history"] for s in e["students"] if s["candidate"]), key=lambda s: s["reward"])
    assert best["candidate"] == final.parent


def test_rewards_are_computed_from_the_students_results() -> None:
    search = N2NRandom(TEACHER, {**SMALL, "episodes": 1})
    teacher = search.ask()[0]
    search.tell(teacher.id, {"default": 0.8, "candidate": teacher.id})
    students = search.ask()
    for i, c in enumerate(students):
        if i == 0:
            search.tell(c.id, None, failure="crashed")
        else:
            search.tell(c.id, {"default": 0.6, "candidate": c.id})
    record = search.summary()["history"][0]
    p_t = TEACHER.num_parameters()
    for s in record["students"]:
        source = s["candidate"] or s["cached_from"]
        expected = -1.0 if source == students[0].id else n2n_reward(s["params"], p_t, 0.6, 0.8)
        assert s["reward"] == pytest.approx(expected)


def test_an_imported_teacher_is_measured_as_it_is() -> None:
    teacher = nash_seed((1, 8, 8), 10, (8, 16, 16))
    search = N2NSearch(teacher, {**SMALL, "teacher": "/data/export"})
    (first,) = search.ask()
    assert (first.role, first.parent, first.epochs) == ("seed", imported_teacher_id(teacher), 0)
    assert first.id != first.parent and first.id.endswith("-0001")
    search.tell(first.id, fake_result(first))
    rounds = drive(search)
    assert search.summary()["status"] == "finished" and rounds
    with pytest.raises(ConfigError, match="teacher must be an absolute path"):
        N2NConfig(teacher="export")


def test_state_round_trip_continues_exactly() -> None:
    original = N2NSearch(TEACHER, SMALL)
    for _ in range(2):
        for c in original.ask():
            original.tell(c.id, fake_result(c))
    state = json.loads(json.dumps(original.state_dict()))
    restored = N2NSearch.from_state_dict(state)
    assert restored.policy.state_dict() == original.policy.state_dict()
    a = [c.to_dict() for r in drive(original) for c in r]
    b = [c.to_dict() for r in drive(restored) for c in r]
    assert a == b


def test_a_teacher_without_accuracy_stops_the_search() -> None:
    search = N2NSearch(TEACHER, SMALL)
    (teacher,) = search.ask()
    search.tell(teacher.id, {"default": 0.0, "candidate": teacher.id})
    assert search.finished and "train it longer" in search.summary()["reason"]


def test_students_are_candidates_a_trial_can_replay() -> None:
    search = N2NSearch(TEACHER, SMALL)
    (teacher,) = search.ask()
    search.tell(teacher.id, fake_result(teacher))
    for c in search.ask():
        again = Candidate.from_dict(json.loads(json.dumps(c.to_dict())))
        assert replay(TEACHER, again.architecture.lineage.steps).child.id == c.architecture.id


def test_the_bridge_state_file_round_trip_resumes_with_the_same_next_students() -> None:
    """``nnictl stop`` / ``resume``: the dispatcher writes ``encode_state(strategy.state_dict())`` as JSON and loads
    ``decode_state`` of it into a freshly built strategy; the policy (weights, Adam, baseline, generator) continues."""
    from nni_nas_ext.nni.dispatcher.state import decode_state, encode_state

    original = N2NSearch(TEACHER, SMALL)
    for _ in range(2):  # the teacher and the first episode told: one policy update made
        for c in original.ask():
            original.tell(c.id, fake_result(c))
    assert original.policy.updates == 1
    text = json.dumps(encode_state(original.state_dict()), allow_nan=False)
    resumed = N2NSearch(TEACHER, SMALL)  # what the dispatcher builds again from the same classArgs
    resumed.load_state_dict(decode_state(json.loads(text)))
    assert resumed.policy.updates == 1 and resumed.policy.baseline == original.policy.baseline
    pending = original.ask()
    assert [c.to_dict() for c in pending] == [c.to_dict() for c in resumed.ask()]  # the episode proposed before
    for strategy in (original, resumed):
        for c in pending:
            strategy.tell(c.id, fake_result(c))
    assert [c.to_dict() for r in drive(original) for c in r] == [c.to_dict() for r in drive(resumed) for c in r]


@pytest.mark.slow
def test_the_policy_learns_what_random_actions_do_not() -> None:
    """On a synthetic task (accuracy falls once a student keeps less than a fifth of the teacher's parameters), the
    policy's mean reward per episode rises and ends above the random baseline's at the same budget."""
    teacher = plain_cnn(depth=8, input_shape=(1, 8, 8), num_classes=10, width=32, stages=1)

    def result(c: Candidate) -> dict[str, Any]:
        acc = 0.95 * min(1.0, math.sqrt(5 * c.architecture.num_parameters() / teacher.num_parameters()))
        return {"default": acc, "candidate": c.id, **({"test_acc": acc} if c.evaluate_test else {})}

    config = {"episodes": 30, "students_per_episode": 5, "seed": 0, "policy_lr": 0.01}
    rewards = {}
    for cls in (N2NSearch, N2NRandom):
        search = cls(teacher, config)
        drive(search, result)
        rewards[cls.__name__] = search.summary()["mean_rewards"]
    learnt, random = rewards["N2NSearch"], rewards["N2NRandom"]
    assert len(learnt) == len(random) == 30
    assert np.mean(learnt[-10:]) > np.mean(learnt[:5]) + 0.03  # measured: 0.876 against 0.788
    assert np.mean(learnt[-10:]) > np.mean(random[-10:]) + 0.05  # measured: 0.876 against 0.778


def test_the_papers_schedule_removes_first_then_shrinks_the_best_removal() -> None:
    search = N2NSearch(TEACHER, {**SMALL, "episodes": 4, "removal_episodes": 2})
    rounds = drive(search)
    summary = search.summary()
    stages = [e["stage"] for e in summary["history"]]
    assert stages == ["removal", "removal", "shrink", "shrink"]
    by_id = {c.id: c for r in rounds for c in r}
    removal_students = [s for e in summary["history"][:2] for s in e["students"] if s["candidate"]]
    assert removal_students and all(s["actions"]["ratios"] == {} for s in removal_students)
    assert all(step.op == "remove_layer" for s in removal_students
               for step in by_id[s["candidate"]].architecture.lineage.steps)
    best = max(removal_students, key=lambda s: s["reward"])  # ties: the first, as the strategy
    kept = list(by_id[best["candidate"]].architecture.lineage.steps)
    for e in summary["history"][2:]:
        for s in e["students"]:
            source = s["candidate"] or s["cached_from"]
            steps = list(by_id[source].architecture.lineage.steps) if by_id[source].architecture.lineage else []
            assert steps[:len(kept)] == kept and all(st.op == "shrink" for st in steps[len(kept):])
    trajectories = [Trajectory.from_dict(s["trajectory"]) for e in search.state_dict()["episodes"]
                    for s in e["students"]]
    assert all(not any(t.shrink_mask) for t in trajectories[:8])  # removal episodes: stage 2 decides nothing
    assert all(not any(t.removal_mask) for t in trajectories[8:])  # shrink episodes: stage 1 decides nothing
    with pytest.raises(ConfigError, match="removal_episodes < episodes must hold"):
        N2NConfig(episodes=2, removal_episodes=2)
