"""NASH without weight inheritance (``inherit_weights: false``): the ablation of issue 6.

Every candidate after the seed is trained from scratch (``parent=None``), and otherwise the search is the
same: the same random draws, so the same children as with inheritance while the results are the same. With
inheritance (the default) the proposals are byte for byte what they were before the option existed.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from _reporters import ListReporter

from nni_nas_ext.core import Step, replay
from nni_nas_ext.core.config import ConfigError, parse_config
from nni_nas_ext.strategies import HillClimbing, NashConfig
from nni_nas_ext.trial_code.datasets import load_dataset
from nni_nas_ext.trial_code.trial import TaskConfig, run_candidate

from test_nash import SEED_ARCH, SMALL, drive, fake_accuracy, fake_result

BIGGER = {**SMALL, "n_steps": 3, "n_neighbours": 4, "n_morphisms": 3, "seed": 11,
          "morphisms": ["deepen", "widen", "add_skip", "concat_skip", "widen_kernel", "branch"]}

#: sha256 of (proposals, state_dict, summary) of a full fake-trained run, computed with nash.py as it was
#: before ``inherit_weights`` existed (the config key itself left out of state and summary). The morphisms'
#: mode of that time, ``exact`` with Net2Net's copies, is called ``replicate`` since exact became
#: symmetry-breaking: the run uses it and its name is written back as ``exact`` for the hash.
SNAPSHOT = {
    "small": ("32f340e5e75c08f3e1dadf44545c810d1956fe7d4aac2a0ef4cfe0ac50c39192",
              "8a9297d502f7e6c5935eaf4c3002146893674ada32e76e03add5076732edba70",
              "39c00cfe043993e03b4e88621bad0b3a88838a4d82ee6e0a855e1de817d1a18f", 9),
    "bigger": ("94d26582408fb80d0a764451aafad10423f41826a63fa82fb3a004ff3062ca37",
               "1949c011a78b386f060bd7d80edb99458bba1a613c3c8e0c0d455fbe3dfdc258",
               "07cc50d36bc2592b15639eca48a2cdef9618096d9851130e76ee407a91cbe208", 15),
}


def _sha(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _without_option(data: dict[str, Any]) -> dict[str, Any]:
    config = {k: v for k, v in data["config"].items() if k != "inherit_weights"}
    return {**data, "config": {**config, "morphism_mode": "exact"}}


@pytest.mark.parametrize("name,config", [("small", SMALL), ("bigger", BIGGER)])
@pytest.mark.parametrize("explicit", [False, True])
def test_with_inheritance_the_search_is_byte_identical_to_before(name: str, config: dict[str, Any],
                                                                  explicit: bool) -> None:
    config = {**config, "morphism_mode": "replicate"}
    strategy = HillClimbing(SEED_ARCH, {**config, "inherit_weights": True} if explicit else config)
    rounds = drive(strategy)
    proposals = json.dumps([[c.to_dict() for c in r] for r in rounds], sort_keys=True)
    got = (hashlib.sha256(proposals.encode()).hexdigest(), _sha(_without_option(strategy.state_dict())),
           _sha(_without_option(strategy.summary())), sum(map(len, rounds)))
    assert got == SNAPSHOT[name]


@pytest.mark.parametrize("config", [SMALL, BIGGER])
def test_without_inheritance_no_candidate_has_a_parent_and_the_draws_are_the_same(config: dict[str, Any]) -> None:
    with_, without = HillClimbing(SEED_ARCH, config), HillClimbing(SEED_ARCH, {**config, "inherit_weights": False})
    rounds_with, rounds_without = drive(with_), drive(without)
    flat_with = [c for r in rounds_with for c in r]
    flat_without = [c for r in rounds_without for c in r]
    assert all(c.parent is None for c in flat_without)
    assert sum(c.parent is not None for c in flat_with) == len(flat_with) - 1  # all but the seed
    # the fake trainer scores by architecture and serial: the same results, so the same search
    assert [c.to_dict() | {"parent": None} for c in flat_with] == [c.to_dict() for c in flat_without]
    assert [[c.role for c in r] for r in rounds_without] == [[c.role for c in r] for r in rounds_with]
    # the lineage is kept for the record: children still carry the morphisms from the incumbent
    children = [c for c in flat_without if c.role == "child"]
    assert children and all(c.architecture.lineage is not None for c in children)
    assert without.summary()["winner"]["lineage"] == with_.summary()["winner"]["lineage"]
    assert without.summary()["winner"]["generations"] == with_.summary()["winner"]["generations"]


def test_without_inheritance_schedules_roles_and_finals() -> None:
    strategy = HillClimbing(SEED_ARCH, {**SMALL, "inherit_weights": False})
    rounds = drive(strategy)
    assert [[c.epochs for c in r] for r in rounds] == [[5], [3, 3, 3], [3, 3, 3], [7, 7]]
    final, seed_final = rounds[-1]
    assert (final.role, seed_final.role) == ("final", "seed_final")
    assert final.train_on == seed_final.train_on == "train+val" and final.evaluate_test and seed_final.evaluate_test
    assert seed_final.architecture.id == SEED_ARCH.id and final.architecture.lineage is None
    summary = strategy.summary()
    assert summary["winner"]["final_candidate"] == final.id
    assert summary["winner"]["test_acc"] == pytest.approx(fake_accuracy(final) - 0.02)
    # the recorded lineage rebuilds the winner from the seed, without any parent link
    arch = SEED_ARCH
    for generation in summary["winner"]["generations"]:
        assert generation["parent_arch"] == arch.id
        arch = replay(arch, [Step.from_dict(s) for s in generation["steps"]]).child
    assert arch.id == summary["winner"]["arch_id"]


def test_without_inheritance_other_results_give_other_children() -> None:
    def inverted(c: Any) -> dict[str, Any]:  # smaller nets win: another incumbent, other children
        return {**fake_result(c), "default": 1.0 - fake_accuracy(c)}

    config = {**SMALL, "inherit_weights": False}
    same = drive(HillClimbing(SEED_ARCH, config))
    other = drive(HillClimbing(SEED_ARCH, config), inverted)
    assert [c.id for c in same[1]] == [c.id for c in other[1]]  # the first step does not depend on results
    assert [c.id for r in same for c in r] != [c.id for r in other for c in r]


def test_without_inheritance_state_round_trip_continues_exactly() -> None:
    config = {**SMALL, "inherit_weights": False}
    original = HillClimbing(SEED_ARCH, config)
    for _ in range(2):
        for c in original.ask():
            original.tell(c.id, fake_result(c))
    restored = HillClimbing.from_state_dict(json.loads(json.dumps(original.state_dict())))
    assert restored.state_dict() == original.state_dict()
    assert [c.to_dict() for r in drive(original) for c in r] == [c.to_dict() for r in drive(restored) for c in r]
    assert original.summary() == restored.summary()
    with pytest.raises(ValueError, match=r"another configuration \(keys \['inherit_weights'\] differ\)"):
        HillClimbing(SEED_ARCH, SMALL).load_state_dict(original.state_dict())


def test_inherit_weights_is_a_validated_bool() -> None:
    assert NashConfig().inherit_weights is True
    assert parse_config(NashConfig, {"inherit_weights": False}).inherit_weights is False
    with pytest.raises(ConfigError, match="'inherit_weights'.*bool.*1"):
        parse_config(NashConfig, {"inherit_weights": 1})


def test_a_child_without_parent_trains_from_scratch_in_the_trial(tmp_path) -> None:
    """The trial side of the ablation: a child with a lineage but no parent starts from a fresh initialisation."""
    task = TaskConfig(dataset="digits", limit=300, batch_size=64, checkpoint_dir=str(tmp_path))
    data = load_dataset(task.dataset_spec())
    strategy = HillClimbing(SEED_ARCH, {**SMALL, "inherit_weights": False, "epochs_seed": 1, "epochs_neighbour": 1})
    (seed,) = strategy.ask()
    strategy.tell(seed.id, fake_result(seed))  # the seed's weights are never needed: no checkpoint written
    child = next(c for c in strategy.ask() if c.role == "child")
    assert child.parent is None and child.architecture.lineage is not None

    result = run_candidate(child, task, ListReporter(), data=data)
    assert result["candidate"] == child.id and result["parent"] is None
    assert result["preservation_error"] is None and result["start_val_acc"] is None and result["morphisms"] == []
    assert 0.0 <= result["default"] <= 1.0
