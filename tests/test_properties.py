"""Property tests: random valid architectures, random chains of >= 5 exact morphisms, same function.

Parent and child outputs in eval mode must agree within 1e-5 of the parent's output scale (float32).
With ``CI`` set, hypothesis is derandomised so CI runs the same 300 cases every time.
"""

from __future__ import annotations

import pytest

import os

import numpy as np
import torch
from _archgen import random_architecture, random_batch, random_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nni_nas_ext.core import MORPHISMS, Architecture, preservation_error, random_chain, replay

TOLERANCE = 1e-5
EXAMPLES = 300
EXACT = [cls() for cls in MORPHISMS.values()]  # every morphism, exact mode (the default)

_settings = settings(max_examples=EXAMPLES, deadline=None, derandomize=bool(os.environ.get("CI")),
                     suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@_settings
@given(arch_seed=st.integers(0, 2**32 - 1), chain_seed=st.integers(0, 2**32 - 1), length=st.integers(5, 8))
def test_random_chains_preserve_function(arch_seed: int, chain_seed: int, length: int) -> None:
    parent = random_architecture(np.random.default_rng(arch_seed))
    state = random_state(parent, arch_seed % 10_000)
    before = {k: v.clone() for k, v in state.items()}
    batch = random_batch(parent, arch_seed % 7919)

    result = random_chain(parent, EXACT, length, np.random.default_rng(chain_seed))
    child_state = result.transform(state, batch)
    error = preservation_error(parent, state, result.child, child_state, batch)

    assert error.relative <= TOLERANCE, (
        f"chain {[s.describe() for s in result.steps]} changed the function: max |diff| {error.max_abs:.3g} "
        f"at output scale {error.scale:.3g}")
    # The parent's weights are untouched, the child loads strictly, the lineage is recorded...
    assert all(torch.equal(before[k], state[k]) for k in state)
    assert result.child.lineage is not None
    assert result.child.lineage.parent == parent.id and len(result.child.lineage.steps) == length
    # ...and survives JSON: replaying it from the parent gives the same child and the same weights.
    restored = Architecture.from_json(result.child.to_json())
    assert restored == result.child
    again = replay(parent, restored.lineage.steps)
    assert again.child == result.child
    again_state = again.transform(state, batch)
    assert all(torch.equal(again_state[k], child_state[k]) for k in child_state)
