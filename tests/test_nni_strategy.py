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
    adapter._candidates[seed.id] = seed.to_dict()
    adapter.search.tell(seed.id, {"default": 0.5, "candidate": seed.id})
    step = adapter.search.ask()
    assert len(step) == 4
    for c in step[:2]:  # two reached NNI before the stop; two were still waiting for a free trial slot
        adapter._candidates[c.id] = c.to_dict()
    state = json.loads(json.dumps(adapter.state_dict()))

    restored = MorphismStrategy(HillClimbing(SEED, CONFIG))
    restored.load_state_dict(state)
    assert [c.id for c in restored.search.ask()] == [c.id for c in step[2:]]
    assert sorted(restored.search.pending) == sorted(c.id for c in step)


def test_state_files_naming_the_old_module_resume_the_same_strategy() -> None:
    """State files written before ``nni/strategy.py`` became ``nni/nas_strategy.py`` name the old module."""
    from nni_nas_ext.nni.dispatcher.state import RENAMED_STRATEGY_CLASSES

    name = f"{MorphismStrategy.__module__}.{MorphismStrategy.__qualname__}"
    assert RENAMED_STRATEGY_CLASSES["nni_nas_ext.nni.strategy.MorphismStrategy"] == name
