"""The random-morphism baseline (random architectures of the morphism space, trained from scratch)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from nni_nas_ext.core import replay
from nni_nas_ext.core.config import ConfigError, parse_config
from nni_nas_ext.core.jobs import Candidate
from nni_nas_ext.strategies import RandomMorphismConfig, RandomMorphismSearch, create_strategy, strategy_classes

from test_nash import SEED_ARCH, drive, fake_accuracy, fake_result

SMALL = {"n_samples": 6, "max_morphisms": 3, "epochs": 2, "epochs_final": 3, "max_in_flight": 2, "seed": 0}


def search(**overrides: Any) -> RandomMorphismSearch:
    return RandomMorphismSearch(SEED_ARCH, {**SMALL, **overrides})


def test_registered_under_its_name() -> None:
    assert strategy_classes("random_morphism") == (RandomMorphismConfig, RandomMorphismSearch)
    assert isinstance(create_strategy("random_morphism", SEED_ARCH, SMALL), RandomMorphismSearch)


def test_samples_are_distinct_random_chains_from_the_seed_trained_from_scratch() -> None:
    strategy = search(n_samples=30, max_morphisms=4, max_in_flight=5)
    rounds = drive(strategy)
    flat = [c for r in rounds for c in r]
    samples, finals = flat[:-2], flat[-2:]
    assert len(samples) == 30 and samples[0].role == "seed" and samples[0].architecture == SEED_ARCH
    assert all(c.role == "child" for c in samples[1:])
    assert all(c.parent is None and c.epochs == 2 and c.train_on == "train" and not c.evaluate_test for c in samples)
    assert [c.step for c in samples] == list(range(30))
    assert len({c.architecture.id for c in samples}) == 30  # deduplicated by architecture
    counts = Counter()
    for c in samples[1:]:
        lineage = c.architecture.lineage
        assert lineage is not None and lineage.parent == SEED_ARCH.id
        assert {s.op for s in lineage.steps} <= {"deepen", "widen", "add_skip", "concat_skip"}
        assert replay(SEED_ARCH, lineage.steps).child == c.architecture
        counts[len(lineage.steps)] += 1
    assert set(counts) == {1, 2, 3, 4}  # uniform in [1, max_morphisms]: every length occurs in 29 draws
    winner = max(samples, key=lambda c: (fake_accuracy(c), -samples.index(c)))
    final, seed_final = finals
    assert (final.role, final.parent, final.architecture.id) == ("final", winner.id, winner.architecture.id)
    assert (seed_final.role, seed_final.parent) == ("seed_final", samples[0].id)
    assert all(c.epochs == 3 and c.train_on == "train+val" and c.evaluate_test for c in finals)
    summary = strategy.summary()
    assert summary["status"] == "finished" and summary["winner"]["candidate"] == winner.id
    assert summary["winner"]["test_acc"] == pytest.approx(fake_accuracy(final) - 0.02)
    assert summary["winner"]["n_morphisms"] == len(winner.architecture.lineage.steps)
    assert summary["winner"]["lineage"] == [s.describe() for s in winner.architecture.lineage.steps]
    assert summary["sampled"] == summary["trained"] == 30
    assert [len(h["candidates"]) for h in summary["history"]] == [30, 2]
    assert summary["epochs_total"] == 30 * 2 + 2 * 3


def test_at_most_max_in_flight_samples_are_out() -> None:
    strategy = search(n_samples=5, max_in_flight=2)
    first = strategy.ask()
    assert len(first) == 2 and strategy.ask() == []
    strategy.tell(first[0].id, fake_result(first[0]))
    (third,) = strategy.ask()
    assert third.step == 2 and strategy.ask() == []
    assert sorted(strategy.pending) == sorted([first[1].id, third.id])


def test_samples_do_not_depend_on_results_or_timing() -> None:
    def inverted(c: Candidate) -> dict[str, Any]:
        return {**fake_result(c), "default": 1.0 - fake_accuracy(c)}

    a = [c.id for r in drive(search(max_in_flight=1)) for c in r][:-2]
    b = [c.id for r in drive(search(max_in_flight=4), inverted) for c in r][:-2]
    assert a == b
    assert a != [c.id for r in drive(search(seed=1)) for c in r][:-2]


def test_failures_never_win_and_a_failed_seed_loses_only_its_final() -> None:
    def result(c: Candidate) -> Any:
        if c.role == "seed" or c.step == 2:
            return "diverged"
        return {**fake_result(c), "default": 0.9 if c.step == 2 else 0.5 + 0.01 * c.step}

    strategy = search(n_samples=4)
    rounds = drive(strategy, result)
    (final,) = rounds[-1]
    assert final.role == "final" and final.parent.endswith("-0003")  # the best successful sample
    summary = strategy.summary()
    assert summary["status"] == "finished" and summary["seed"]["final_candidate"] is None
    assert {f["candidate"][-4:] for f in summary["failures"]} == {"0000", "0002"}


def test_every_sample_failing_ends_the_search_failed_with_a_reason() -> None:
    strategy = search(n_samples=3)
    drive(strategy, lambda c: "crashed")
    summary = strategy.summary()
    assert strategy.finished and summary["status"] == "failed" and summary["winner"] is None
    assert "every one of the 3 samples failed" in summary["reason"]


def test_max_parameters_bounds_every_sample() -> None:
    limit = SEED_ARCH.num_parameters() + 400
    rounds = drive(search(n_samples=8, max_parameters=limit, max_redraws=500))
    assert all(c.architecture.num_parameters() <= limit for r in rounds for c in r)
    with pytest.raises(ValueError, match="the seed architecture has .* more than max_parameters=10"):
        search(max_parameters=10)


def test_a_space_too_small_stops_sampling_early_then_finishes() -> None:
    strategy = search(n_samples=50, morphisms=["widen_kernel"], max_morphisms=1, max_redraws=30)
    rounds = drive(strategy)
    summary = strategy.summary()
    assert summary["status"] == "finished" and summary["stopped_early"] is not None
    assert "rejected draws in a row" in summary["stopped_early"] and "sampled before" in summary["stopped_early"]
    assert 1 < summary["sampled"] < 50 and rounds[-1][0].role == "final"


def test_budget_cut_leaves_the_best_so_far_as_winner() -> None:
    strategy = search(n_samples=100, max_in_flight=3)
    asked = strategy.ask() + []
    for c in asked:
        strategy.tell(c.id, fake_result(c))
    summary = strategy.summary()  # NNI's budget ends here: no final phase
    assert summary["status"] == "running" and summary["winner"]["test_acc"] is None
    best = max(asked, key=lambda c: fake_accuracy(c))
    assert summary["winner"]["candidate"] == best.id and strategy.incumbent == best


def test_state_round_trip_mid_sampling_continues_exactly() -> None:
    original = search(n_samples=8, max_in_flight=3)
    first = original.ask()
    original.tell(first[0].id, fake_result(first[0]))
    original.ask()
    state = json.loads(json.dumps(original.state_dict(), allow_nan=False))
    restored = RandomMorphismSearch.from_state_dict(state)
    assert restored.state_dict() == original.state_dict() and restored.ask() == []
    for strategy in (original, restored):
        for cid in list(strategy.pending):
            strategy.tell(cid, fake_result(strategy._candidates[cid]))
    assert [c.to_dict() for r in drive(original) for c in r] == [c.to_dict() for r in drive(restored) for c in r]
    assert original.summary() == restored.summary()
    with pytest.raises(ValueError, match=r"keys \['n_samples'\] differ"):
        search(n_samples=9, max_in_flight=3).load_state_dict(state)
    with pytest.raises(ValueError, match="not a RandomMorphism state"):
        search().load_state_dict({"format": "nash-hill-climbing"})


@pytest.mark.parametrize("args,expected", [
    ({"n_samples": 0}, r"'n_samples' must be int in \[1, 1000000\], but got 0"),
    ({"max_morphisms": 1.5}, r"'max_morphisms' must be int"),
    ({"morphisms": ["deepen", "grow"]}, r"'morphisms'.*'grow'"),
    ({"max_in_flight": 0}, r"'max_in_flight' must be int in \[1, 10000\], but got 0"),
    ({"n_sample": 3}, r"unknown key 'n_sample'.*did you mean 'n_samples'"),
])
def test_config_errors_name_the_key_and_the_value(args: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_config(RandomMorphismConfig, args)


def test_nni_settings_and_tuner() -> None:
    from nni_nas_ext.nni.search import split_settings
    from nni_nas_ext.nni.tuners import TUNERS, RandomMorphismTuner

    config, task, seed = split_settings({"n_samples": 3, "dataset": "digits", "seed": 4, "lr": 0.1,
                                         "seed_widths": [4, 8, 8]}, "random_morphism")
    assert isinstance(config, RandomMorphismConfig) and config.n_samples == 3 and config.seed == 4
    assert task.seed == 4 and task.lr == 0.1 and seed.seed_widths == (4, 8, 8)
    bridge, validator = TUNERS["RandomMorphism"]
    assert bridge is RandomMorphismTuner and bridge.search_name == "random_morphism"
    validator().validate({"n_samples": 3, "epochs": 1})
    with pytest.raises(ConfigError, match="unknown setting 'n_step'"):
        validator().validate({"n_step": 3})
    with pytest.raises(ConfigError, match="'epochs' must be int"):
        validator().validate({"epochs": "two"})
