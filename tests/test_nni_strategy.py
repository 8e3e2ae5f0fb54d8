"""MorphismStrategy's resume rule: NNI re-runs the trials it had; what never reached NNI goes out again."""

from __future__ import annotations

import json

from nni_nas_ext.nni.nas_strategy import MorphismStrategy
from nni_nas_ext.search_spaces import nash_seed
from nni_nas_ext.strategies.nash import HillClimbing

SEED = nash_seed((1, 8, 8), 10, widths=(4, 8, 8))
CONFIG = {"n_steps": 2, "n_neighbours": 4, "n_morphisms": 2, "epochs_seed": 1, "epochs_neighbour": 1,
          "epochs_final": 1, "seed": 0}


def test_resume_hands_out_again_only_the_candidates_never_submitted() -> None:
    adapter = MorphismStrategy(HillClimbing(SEED, CONFIG))
    (seed,) = adapter.search.ask()
    adapter._submitted.append(seed.id)  # as _submit records it
    adapter.search.tell(seed.id, {"default": 0.5, "candidate": seed.id})
    step = adapter.search.ask()
    assert len(step) == 4
    for c in step[:2]:  # two reached NNI before the stop; two were still waiting for a free trial slot
        adapter._submitted.append(c.id)
    state = json.loads(json.dumps(adapter.state_dict()))

    restored = MorphismStrategy(HillClimbing(SEED, CONFIG))
    restored.load_state_dict(state)
    assert [c.id for c in restored.search.ask()] == [c.id for c in step[2:]]
    assert sorted(restored.search.pending) == sorted(c.id for c in step)

    # a state saved before the search's ledger was the only one: the adapter kept copies of candidates and results
    old = {k: v for k, v in state.items() if k != "submitted"}
    old.update(candidates={cid: adapter.search.job(cid).to_dict() for cid in state["submitted"]},
               results={seed.id: {"default": 0.5, "candidate": seed.id}})
    legacy = MorphismStrategy(HillClimbing(SEED, CONFIG))
    legacy.load_state_dict(json.loads(json.dumps(old)))
    assert legacy.submitted == [seed.id, *(c.id for c in step[:2])]
    assert [c.id for c in legacy.search.ask()] == [c.id for c in step[2:]]


def test_the_adapter_keeps_ids_and_reads_candidates_and_results_from_the_search_s_ledger() -> None:
    adapter = MorphismStrategy(HillClimbing(SEED, CONFIG))
    (seed,) = adapter.search.ask()
    adapter._submitted.append(seed.id)
    adapter.search.tell(seed.id, {"default": 0.5, "candidate": seed.id})
    state = json.loads(json.dumps(adapter.state_dict()))
    assert state["submitted"] == [seed.id] and "candidates" not in state and "results" not in state
    assert adapter.results == {seed.id: {"default": 0.5, "candidate": seed.id}}
    assert adapter.sample_of(seed.id) == {"architecture": seed.to_dict()} and adapter.sample_of("nope") is None


def test_state_files_naming_the_old_module_resume_the_same_strategy() -> None:
    """State files written before ``nni/strategy.py`` became ``nni/nas_strategy.py`` name the old module."""
    from nni_nas_ext.nni.dispatcher.state import RENAMED_STRATEGY_CLASSES

    name = f"{MorphismStrategy.__module__}.{MorphismStrategy.__qualname__}"
    assert RENAMED_STRATEGY_CLASSES["nni_nas_ext.nni.strategy.MorphismStrategy"] == name
