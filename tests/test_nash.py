"""NASH hill climbing driven by a fake trainer (no torch training); the contract every strategy meets is in
tests/test_strategy_contract.py, which shares this file's fake trainer.

The fake trainer's validation accuracy is a function of the architecture (more parameters score higher)
plus noise drawn from a generator seeded by the candidate itself, so results do not depend on the order
in which candidates are told.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Optional

import numpy as np
import pytest

from nni_nas_ext.core import Architecture, Step, replay
from nni_nas_ext.core.config import Config, ConfigError, describe_config, option, parse_config
from nni_nas_ext.core.jobs import Candidate, candidate_id
from nni_nas_ext.search_spaces import cell_cnn, nash_seed
from nni_nas_ext.strategies import (
    HillClimbing, NashConfig, SearchStrategy, create_strategy, describe_strategy, list_strategies,
    strategy_classes,
)

SEED_ARCH = nash_seed((1, 8, 8), 10, (4, 8, 8))
SMALL = {"n_steps": 2, "n_neighbours": 3, "n_morphisms": 2, "epochs_seed": 5, "epochs_neighbour": 3,
         "epochs_final": 7, "seed": 0}

#: A small configuration for every registered strategy (the contract tests run each).
#: A tiny EAS (small controller too, to keep the contract tests fast).
SMALL_EAS = {"episodes": 2, "children_per_episode": 2, "n_deeper": 1, "n_wider": 1, "epochs": 1, "epochs_start": 1,
             "epochs_final": 1, "max_width": 64, "controller_hidden_size": 8, "controller_embedding_dim": 4, "seed": 0}
#: A small random-morphism baseline: 5 samples, two out at a time.
SMALL_RANDOM = {"n_samples": 5, "max_morphisms": 3, "epochs": 2, "epochs_final": 3, "max_in_flight": 2, "seed": 0}
#: A small LEMONADE: two initial networks, four children, three of the front tested.
SMALL_LEMONADE = {"n_initial": 2, "n_generated": 4, "epochs_seed": 2, "epochs_child": 1, "max_children": 4,
                  "final_front_max": 3, "seed": 0}
#: A small N2N: the teacher, two episodes of three students, the best student's final and the teacher's test.
SMALL_N2N = {"episodes": 2, "students_per_episode": 3, "epochs_teacher": 2, "epochs_student": 1, "epochs_final": 1,
             "policy_hidden_size": 8, "policy_embedding_dim": 4, "seed": 0}
SMALL_PATH = {"episodes": 2, "children_per_episode": 2, "epochs": 1, "epochs_start": 1, "epochs_final": 1}
SMALL_CONFIGS: dict[str, dict[str, Any]] = {"nash": SMALL, "nash_async": SMALL, "eas": SMALL_EAS,
                                            "net2net_random": SMALL_EAS, "path_eas": SMALL_PATH,
                                            "path_eas_random": SMALL_PATH, "random_morphism": SMALL_RANDOM,
                                            "lemonade": SMALL_LEMONADE, "n2n": SMALL_N2N, "n2n_random": SMALL_N2N}
#: the seed of the searches that grow cells (Path-level EAS)
CELL_SEED_ARCH = cell_cnn((1, 8, 8), 10, widths=(4, 8), cells_per_stage=1, stem_width=4)


def seed_for(name: str) -> Architecture:
    """The seed network a strategy of the registry starts from in these tests."""
    return CELL_SEED_ARCH if name.startswith("path_eas") else SEED_ARCH

Result = Optional[Mapping[str, Any]]


def fake_accuracy(c: Candidate, seed: int = 0) -> float:
    """Saturating in the parameter count, plus noise seeded by the candidate itself."""
    noise = np.random.default_rng([seed, int(c.architecture.id, 16), c.serial]).normal(0.0, 0.01)
    return float(1.0 - math.exp(-c.architecture.num_parameters() / 5000) + noise)


def fake_result(c: Candidate, seed: int = 0) -> dict[str, Any]:
    acc = fake_accuracy(c, seed)
    out = {"default": acc, "candidate": c.id, "arch_id": c.architecture.id, "role": c.role, "step": c.step,
           "params": c.architecture.num_parameters(), "epochs": c.epochs}
    if c.evaluate_test:
        out["test_acc"] = acc - 0.02
    return out


def drive(strategy: SearchStrategy, result: Callable[[Candidate], Result] = fake_result,
          max_rounds: int = 100) -> list[list[Candidate]]:
    """Ask, train (fake) and tell until finished; the candidates of each ask, in order."""
    rounds = []
    for _ in range(max_rounds):
        if strategy.finished:
            return rounds
        asked = strategy.ask()
        assert asked, "not finished, nothing pending, but ask() returned nothing"
        rounds.append(asked)
        for c in asked:
            r = result(c)
            if isinstance(r, str):
                assert strategy.tell(c.id, None, failure=r) is True
            else:
                assert strategy.tell(c.id, r) is True
    raise AssertionError(f"not finished after {max_rounds} rounds")


def nash(**overrides: Any) -> HillClimbing:
    return HillClimbing(SEED_ARCH, {**SMALL, **overrides})


def trace(rounds: list[list[Candidate]]) -> list[tuple]:
    return [(c.id, c.parent, c.role, c.step, c.epochs) for r in rounds for c in r]


# --------------------------------------------------------------------------------------------------
# NASH: the sequence of candidates
# --------------------------------------------------------------------------------------------------


def test_sequence_of_roles_steps_epochs_parents() -> None:
    strategy = nash()
    rounds = drive(strategy)
    assert [[c.role for c in r] for r in rounds] == [
        ["seed"], ["incumbent", "child", "child"], ["incumbent", "child", "child"], ["final", "seed_final"]]
    assert [[c.step for c in r] for r in rounds] == [[0], [1, 1, 1], [2, 2, 2], [3, 3]]
    assert [[c.epochs for c in r] for r in rounds] == [[5], [3, 3, 3], [3, 3, 3], [7, 7]]
    (seed,) = rounds[0]
    assert seed.parent is None and seed.architecture == SEED_ARCH and seed.train_on == "train"
    assert seed.id == candidate_id(SEED_ARCH, 0)
    incumbent = seed
    for r in rounds[1:3]:
        assert all(c.parent == incumbent.id and c.train_on == "train" and not c.evaluate_test for c in r)
        assert r[0].architecture.id == incumbent.architecture.id and r[0].architecture.lineage is None
        # the best of the step by the fake trainer's accuracy, ties to the first proposed
        incumbent = max(r, key=lambda c: (fake_accuracy(c), -r.index(c)))
    final, seed_final = rounds[3]
    assert final.parent == incumbent.id and final.architecture.id == incumbent.architecture.id
    assert seed_final.parent == seed.id and seed_final.architecture.id == SEED_ARCH.id
    for c in (final, seed_final):
        assert c.train_on == "train+val" and c.evaluate_test is True and c.architecture.lineage is None
    assert len({c.id for r in rounds for c in r}) == sum(map(len, rounds))
    assert [c.serial for r in rounds for c in r] == list(range(9))


def test_children_carry_a_replayable_lineage_from_the_incumbent() -> None:
    strategy = nash(n_steps=3, n_neighbours=5, n_morphisms=3)
    rounds = drive(strategy)
    by_id = {c.id: c for r in rounds for c in r}
    for r in rounds[1:-1]:
        parent_arch = by_id[r[0].parent].architecture
        children = [c for c in r if c.role == "child"]
        assert len(children) == 4
        assert len({c.architecture.id for c in r}) == len(r)  # distinct, and none is the incumbent
        for child in children:
            lineage = child.architecture.lineage
            assert lineage is not None and lineage.parent == parent_arch.id and len(lineage.steps) == 3
            assert {s.op for s in lineage.steps} <= {"deepen", "widen", "add_skip", "concat_skip"}
            assert replay(parent_arch, lineage.steps).child == child.architecture


def test_summary_lineage_follows_the_incumbent_ancestry() -> None:
    strategy = nash(n_steps=3)
    rounds = drive(strategy)
    summary = strategy.summary()
    by_id = {c.id: c for r in rounds for c in r}
    expected, current = [], strategy.incumbent
    while current is not None:
        if current.architecture.lineage is not None:
            expected[:0] = [s.describe() for s in current.architecture.lineage.steps]
        current = by_id.get(current.parent) if current.parent else None
    winner = summary["winner"]
    assert winner["lineage"] == expected
    assert winner["candidate"] == strategy.incumbent.id and winner["arch_id"] == strategy.incumbent.architecture.id
    arch = SEED_ARCH
    for generation in winner["generations"]:  # the recorded steps rebuild the winner from the seed
        assert generation["parent_arch"] == arch.id
        arch = replay(arch, [Step.from_dict(s) for s in generation["steps"]]).child
    assert arch.id == winner["arch_id"]
    assert [h["step"] for h in summary["history"]] == [0, 1, 2, 3, 4]
    assert [h["incumbent_after"] for h in summary["history"]][-2] == strategy.incumbent.id


def test_final_phase_reports_seed_and_winner_test_accuracy() -> None:
    strategy = nash()
    rounds = drive(strategy)
    final, seed_final = rounds[-1]
    summary = strategy.summary()
    assert strategy.finished and summary["status"] == "finished" and summary["reason"] is None
    assert summary["winner"]["test_acc"] == pytest.approx(fake_accuracy(final) - 0.02)
    assert summary["seed"]["test_acc"] == pytest.approx(fake_accuracy(seed_final) - 0.02)
    assert summary["winner"]["final_candidate"] == final.id and summary["seed"]["final_candidate"] == seed_final.id
    assert summary["seed"]["val_acc"] == pytest.approx(fake_accuracy(rounds[0][0]))
    assert summary["winner"]["params"] > summary["seed"]["params"]  # the fake rewards size
    assert summary["epochs_total"] == 5 + 2 * 3 * 3 + 2 * 7


# --------------------------------------------------------------------------------------------------
# NASH: choosing the incumbent, failures, bad reports
# --------------------------------------------------------------------------------------------------


def tell_all(strategy: HillClimbing, accs: list[Any]) -> list[Candidate]:
    """Tell the next asked candidates: a number is the accuracy, a string a failure."""
    asked = strategy.ask()
    assert len(asked) == len(accs)
    for c, acc in zip(asked, accs):
        if isinstance(acc, str):
            strategy.tell(c.id, None, failure=acc)
        elif c.train_on == "train+val":  # a final training reports what a trial reports: no validation accuracy
            strategy.tell(c.id, {"test_acc": acc, "candidate": c.id})
        else:
            strategy.tell(c.id, {"default": acc, "candidate": c.id})
    return asked


def test_a_final_counts_by_its_test_accuracy_not_by_a_validation_figure() -> None:
    strategy = nash(n_steps=1)
    tell_all(strategy, [0.3])
    tell_all(strategy, [0.4, 0.5, 0.6])
    final, seed_final = strategy.ask()
    assert final.train_on == seed_final.train_on == "train+val" and final.evaluate_test
    strategy.tell(final.id, {"default": 0.99, "candidate": final.id})  # saw the validation images: no figure
    strategy.tell(seed_final.id, {"test_acc": 0.7, "candidate": seed_final.id})
    summary = strategy.summary()
    assert "'test_acc'" in {f["candidate"]: f for f in summary["failures"]}[final.id]["reason"]
    assert summary["seed"]["test_acc"] == 0.7 and summary["winner"]["test_acc"] is None


def test_best_is_kept_and_ties_go_to_the_first_proposed() -> None:
    strategy = nash(n_steps=3)
    (seed,) = tell_all(strategy, [0.3])
    inc, a, b = tell_all(strategy, [0.5, 0.7, 0.7])
    assert strategy.incumbent == a  # a tie of two children: the first proposed
    inc2, c, d = tell_all(strategy, [0.8, 0.8, 0.6])
    assert strategy.incumbent == inc2  # the retrained incumbent is proposed first: a child must beat it
    assert inc2.architecture.id == a.architecture.id and inc2.parent == a.id
    step3 = tell_all(strategy, [0.1, 0.2, 0.3])
    # the incumbent's earlier score does not count: the best of this step wins even if lower
    assert all(x.parent == inc2.id for x in step3) and strategy.incumbent == step3[2]
    history = strategy.summary()["history"]
    assert [h["incumbent_after"] for h in history[:4]] == [seed.id, a.id, inc2.id, step3[2].id]


def test_failures_never_become_incumbent_and_the_search_goes_on() -> None:
    strategy = nash()
    tell_all(strategy, [0.3])
    inc, a, b = strategy.ask()
    strategy.tell(inc.id, {"default": 0.4})
    strategy.tell(a.id, {"default": 0.0, "candidate": a.id, "failed": "NaN loss at epoch 2"})
    strategy.tell(b.id, {"default": float("nan")})
    assert strategy.incumbent == inc
    step2 = tell_all(strategy, [0.2, "CUDA out of memory", 0.9])
    assert strategy.incumbent == step2[2]
    tell_all(strategy, [0.9, 0.5])
    summary = strategy.summary()
    assert summary["status"] == "finished"
    failures = {f["candidate"]: f for f in summary["failures"]}
    assert set(failures) == {a.id, b.id, step2[1].id}
    assert failures[a.id]["reason"] == "NaN loss at epoch 2" and failures[a.id]["role"] == "child"
    assert "finite" in failures[b.id]["reason"] and failures[step2[1].id]["reason"] == "CUDA out of memory"
    json.dumps(strategy.state_dict(), allow_nan=False)


def test_a_step_where_everything_fails_keeps_the_incumbent() -> None:
    strategy = nash()
    (seed,) = tell_all(strategy, [0.3])
    tell_all(strategy, ["boom", "boom", "boom"])
    assert strategy.incumbent == seed
    step2 = strategy.ask()
    assert all(c.parent == seed.id for c in step2) and step2[0].architecture.id == seed.architecture.id
    assert any("every candidate failed" in n for n in strategy.summary()["notes"])


def test_a_failed_seed_ends_the_search_with_a_reason() -> None:
    strategy = nash()
    (seed,) = tell_all(strategy, ["exception in the data loader"])
    assert strategy.finished and strategy.ask() == []
    summary = strategy.summary()
    assert summary["status"] == "failed" and summary["winner"] is None
    assert seed.id in summary["reason"] and "exception in the data loader" in summary["reason"]
    assert strategy.tell(seed.id, {"default": 1.0}) is False


def test_reports_for_other_candidates_and_early_reports(caplog: pytest.LogCaptureFixture) -> None:
    strategy = nash()
    tell_all(strategy, [0.3])
    inc, a, b = strategy.ask()
    with caplog.at_level(logging.WARNING):
        assert strategy.tell(a.id, {"default": 0.9, "candidate": b.id}) is False  # NNI's FIFO mix-up
    assert "names candidate" in caplog.text and a.id in strategy.pending
    assert strategy.pending == [inc.id, a.id, b.id] and strategy.ask() == []
    for c in (inc, a, b):
        strategy.tell(c.id, {"default": 0.5})
    nxt = strategy.candidates[-1].id  # proposed but not yet asked for, told early: taken, never handed out
    assert strategy.tell(nxt, {"default": 0.5}) is True
    assert nxt not in [c.id for c in strategy.ask()]


def test_reissue_pending_hands_lost_trials_out_again() -> None:
    strategy = nash()
    (seed,) = strategy.ask()
    assert strategy.ask() == [] and strategy.reissue_pending() == [seed.id]
    assert strategy.ask() == [seed]


def test_max_parameters_is_respected() -> None:
    limit = SEED_ARCH.num_parameters() + 1500
    strategy = nash(n_steps=4, n_neighbours=4, max_parameters=limit)
    rounds = drive(strategy)
    assert all(c.architecture.num_parameters() <= limit for r in rounds for c in r)
    assert strategy.summary()["status"] == "finished"


def test_max_parameters_too_tight_stops_climbing_with_a_reason() -> None:
    strategy = nash(max_parameters=SEED_ARCH.num_parameters(), max_redraws=5)
    rounds = drive(strategy)
    assert [[c.role for c in r] for r in rounds] == [["seed"], ["final", "seed_final"]]
    assert [c.step for c in rounds[1]] == [1, 1]
    summary = strategy.summary()
    assert summary["status"] == "finished" and summary["winner"]["candidate"] == rounds[0][0].id
    assert "max_redraws=5" in summary["stopped_early"] and "max_parameters" in summary["stopped_early"]
    with pytest.raises(ValueError, match="seed architecture has .* parameters, more than max_parameters=10"):
        nash(max_parameters=10)


# --------------------------------------------------------------------------------------------------
# NASH: randomness and state
# --------------------------------------------------------------------------------------------------


def test_same_seed_same_candidates_other_seed_other_candidates() -> None:
    first = trace(drive(nash(seed=11, n_steps=3)))
    assert trace(drive(nash(seed=11, n_steps=3))) == first
    assert trace(drive(nash(seed=12, n_steps=3))) != first


def test_state_round_trip_mid_step_continues_exactly() -> None:
    reference = nash(n_steps=3, n_neighbours=4)
    reference_rounds = drive(reference)

    strategy = nash(n_steps=3, n_neighbours=4)
    (seed,) = strategy.ask()
    strategy.tell(seed.id, fake_result(seed))
    step1 = strategy.ask()
    for c in step1:
        strategy.tell(c.id, fake_result(c))
    step2 = strategy.ask()
    strategy.tell(step2[1].id, fake_result(step2[1]))  # mid-step: two told, two pending
    strategy.tell(step2[3].id, fake_result(step2[3]))
    state = json.loads(json.dumps(strategy.state_dict(), allow_nan=False))
    assert set(strategy.pending) == {step2[0].id, step2[2].id}

    loaded = HillClimbing(SEED_ARCH, {**SMALL, "n_steps": 3, "n_neighbours": 4})
    loaded.load_state_dict(state)
    for restored in (HillClimbing.from_state_dict(state), loaded):
        assert restored.pending == strategy.pending and restored.ask() == []
        for c in (step2[0], step2[2]):
            restored.tell(c.id, fake_result(c))
        rest = drive(restored)
        assert trace([[seed], step1, step2] + rest) == trace(reference_rounds)
        assert restored.summary() == reference.summary()
        assert restored.state_dict() == json.loads(json.dumps(reference.state_dict()))


def test_load_state_dict_rejects_other_configurations_and_garbage() -> None:
    state = nash().state_dict()
    with pytest.raises(ValueError, match=r"another configuration \(keys \['n_steps'\] differ\)"):
        nash(n_steps=5).load_state_dict(state)
    with pytest.raises(ValueError, match="not a NASH state"):
        nash().load_state_dict({"format": "something else"})
    broken = {**state, "candidates": []}
    strategy = nash()
    with pytest.raises(ValueError, match="referred to but not listed"):
        strategy.load_state_dict(broken)
    assert strategy.ask()  # unchanged by the failed load


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "expected"), [
    ({"n_step": 3}, r"unknown key 'n_step'; did you mean 'n_steps'\? Known keys are \[.*'n_neighbours'"),
    ({"zzz": 1}, r"unknown key 'zzz'\. Known keys are"),
    ({"n_steps": "3"}, r"'n_steps' must be int in \[1, 10000\], but got '3' of type str"),
    ({"n_steps": 2.0}, r"'n_steps' must be int .* but got 2.0 of type float"),
    ({"n_steps": True}, r"'n_steps' must be int .* but got True of type bool \(a bool is not an int\)"),
    ({"n_neighbours": 1}, r"'n_neighbours' must be int in \[2, 10000\], but got 1 .*\(out of range\)"),
    ({"epochs_seed": -1}, r"'epochs_seed' must be int in \[0, 100000\], but got -1"),
    ({"morphisms": ["deepen", "widden"]}, r"'morphisms' must be list\[str\], each one of .*"
                                          r"item 1 is 'widden'; did you mean 'widen'\?"),
    ({"morphisms": "widen"}, r"'morphisms' must be list\[str\].*give a list"),
    ({"morphisms": []}, r"'morphisms'.*it is empty"),
    ({"morphisms": ["widen", "widen"]}, r"'widen' appears twice"),
    ({"morphism_mode": "exakt"},
     r"'morphism_mode' must be str, one of \"exact\", \"replicate\", \"noise\".*did you mean 'exact'"),
    ({"max_parameters": 0}, r"'max_parameters' must be int or null, >= 1, but got 0"),
    ({"seed": -1}, r"'seed' must be int in \[0, "),
])
def test_config_errors_name_key_value_type_and_range(args: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        HillClimbing(SEED_ARCH, args)
    assert info.value.key == next(iter(args)) and info.value.value == next(iter(args.values()))
    assert isinstance(info.value, ValueError)


def test_config_is_typed_frozen_and_round_trips() -> None:
    config = parse_config(NashConfig, {"morphisms": ["widen", "branch"], "max_parameters": None})
    assert config.morphisms == ("widen", "branch") and config.max_parameters is None
    assert parse_config(NashConfig, json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n_steps = 9  # type: ignore[misc]
    with pytest.raises(ConfigError, match="'n_steps'"):
        NashConfig(n_steps=0)  # the constructor validates like parse_config
    with pytest.raises(ConfigError, match="must be a mapping"):
        parse_config(NashConfig, ["n_steps"])  # type: ignore[arg-type]
    rows = {r.name: r for r in describe_config(NashConfig)}
    assert list(rows) == [f.name for f in dataclasses.fields(NashConfig)]
    assert "paper n_neigh: 8" in rows["n_neighbours"].doc and "paper: 20" in rows["epochs_seed"].doc
    assert "17" in rows["epochs_neighbour"].doc and "5" in rows["n_morphisms"].doc
    assert rows["n_steps"].range == "[1, 10000]" and rows["max_parameters"].type == "int or null"
    assert describe_strategy("nash") == describe_config(NashConfig)


def test_generic_config_floats_optionals_and_required_keys() -> None:
    @dataclasses.dataclass(frozen=True)
    class Example(Config):
        name: str = option(doc="required")
        rate: float = option(0.5, minimum=0.0, maximum=1.0, doc="a rate")
        sizes: tuple[int, ...] = option((1, 2), minimum=1)

    example = parse_config(Example, {"rate": 1, "sizes": [3], "name": "x"})
    assert example.rate == 1.0 and isinstance(example.rate, float) and example.sizes == (3,)
    with pytest.raises(ConfigError, match=r"'rate' must be float in \[0, 1\], but got True .*bool is not a number"):
        parse_config(Example, {"rate": True, "name": "x"})
    with pytest.raises(ConfigError, match=r"'rate'.*not finite"):
        parse_config(Example, {"rate": float("inf"), "name": "x"})
    with pytest.raises(ConfigError, match=r"'sizes' must be list\[int\], each item >= 1.*item 1 is 0"):
        parse_config(Example, {"sizes": [1, 0], "name": "x"})
    with pytest.raises(ConfigError, match=r"the key 'name' is required \(str\)"):
        parse_config(Example, {})
    assert [r.default for r in describe_config(Example)] == ["(required)", "0.5", "[1, 2]"]


# --------------------------------------------------------------------------------------------------
# Candidates and the registry
# --------------------------------------------------------------------------------------------------


def test_candidate_round_trip_and_validation() -> None:
    c = Candidate(candidate_id(SEED_ARCH, 7), SEED_ARCH, None, 3, "train", False, "seed", 0)
    assert c.id == f"{SEED_ARCH.id}-0007" and c.serial == 7
    data = json.loads(json.dumps(c.to_dict()))
    assert Candidate.from_dict(data) == c
    for bad, pattern in [
        ({**data, "role": "winner"}, r"Candidate.role must be one of .*'winner'"),
        ({**data, "epochs": True}, r"Candidate.epochs must be an integer >= 0, but got True"),
        ({**data, "step": -1}, r"Candidate.step must be an integer >= 0, but got -1"),
        ({**data, "train_on": "val"}, r"Candidate.train_on must be one of \['train', 'train\+val'\], but got 'val'"),
        ({**data, "evaluate_test": 1}, r"Candidate.evaluate_test must be true or false, but got 1"),
        ({**data, "id": "abc-0001"}, r"Candidate.id must be .*'abc-0001'"),
        ({**data, "parent": "../etc"}, r"Candidate.parent must be null or a candidate id"),
        ({**data, "colour": 1}, r"unknown field\(s\) \['colour'\]"),
        ({k: v for k, v in data.items() if k != "epochs"}, r"\['epochs'\] are missing"),
        ({**data, "architecture": {"nodes": []}}, r"Candidate.architecture is not a valid architecture"),
        ("text", r"a candidate must be a JSON object"),
    ]:
        with pytest.raises(ValueError, match=pattern):
            Candidate.from_dict(bad)
    with pytest.raises(ValueError, match="serial must be an integer >= 0"):
        candidate_id(SEED_ARCH, -1)


def test_registry() -> None:
    assert list_strategies() == ["nash", "nash_async", "eas", "net2net_random", "path_eas", "path_eas_random",
                                 "random_morphism", "lemonade", "n2n", "n2n_random"]
    assert strategy_classes("nash") == (NashConfig, HillClimbing)
    strategy = create_strategy("nash", SEED_ARCH, {"n_steps": 1})
    assert isinstance(strategy, HillClimbing) and strategy.config.n_steps == 1
    with pytest.raises(ValueError, match=r"unknown strategy 'nahs': known are \['nash', .*\]; did you mean 'nash'\?"):
        create_strategy("nahs", SEED_ARCH)
    with pytest.raises(ConfigError, match="unknown key 'step'"):
        create_strategy("nash", SEED_ARCH, {"step": 1})
    with pytest.raises(TypeError, match="seed_architecture must be an Architecture"):
        HillClimbing(SEED_ARCH.to_dict())  # type: ignore[arg-type]
    assert isinstance(SEED_ARCH, Architecture)
