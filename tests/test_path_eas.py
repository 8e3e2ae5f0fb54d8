"""Path-level EAS (issue 19): the tree controller's shapes and masks, the decisions and the child they build,
learning, state, settings, and a whole search through NNI's sequential engine on digits."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch

from nni_nas_ext.core import replay
from nni_nas_ext.core.cells import cell_names, cell_tree, edit_cells, leaves, render
from nni_nas_ext.core.config import ConfigError
from nni_nas_ext.search_spaces import cell_cnn, nash_seed
from nni_nas_ext.strategies.path_eas import (
    Decision, PathEasConfig, PathLevelEAS, PathLevelRandom, TreeController, TreeTrajectory, apply_decisions,
    leaf_options,
)
from nni_nas_ext.strategies.path_eas.controller import TOKENS
from nni_nas_ext.strategies.path_eas.decisions import expand_choices, insert_choices

SEED = cell_cnn((1, 8, 8), 10, widths=(4, 8), cells_per_stage=1, stem_width=4)


def _grown():
    """A seed whose cells are trees with three leaves: add(conv3x3, seq(conv3x3, sepconv3x3))."""
    arch = edit_cells(SEED, "replicate_add", (), {"branches": 2}).child
    return edit_cells(arch, "insert_layer", (1,), {"primitive": "sepconv3x3"}).child


def test_the_tree_encoder_gives_one_feature_per_leaf() -> None:
    config = PathEasConfig(controller_hidden_size=7, controller_embedding_dim=5)
    controller = TreeController(config)
    arch = _grown()
    tree = cell_tree(arch, "cell0").signature()
    features = controller.network.leaf_features(tree)
    assert len(features) == len(leaves(cell_tree(arch, "cell0"))) == 3
    assert all(f.shape == (14,) for f in features)  # [h_up, h_down]
    # the same leaf token in another context gets another feature (the top-down pass sees the context)
    assert not torch.allclose(features[0], features[1])
    assert set(TOKENS) >= {"add", "concat", "seq", *insert_choices(config)[1:]}
    with pytest.raises(ValueError, match="not a cell tree signature"):
        controller.network.leaf_features({"add": []})


def test_masks_say_what_applies_in_every_cell() -> None:
    config = PathEasConfig(branches=(2, 3), primitives=("conv1x1", "sepconv3x3", "gconv3x3", "maxpool3x3"))
    arch = edit_cells(SEED, "insert_layer", (), {"primitive": "maxpool3x3"}).child  # cells: seq(conv3x3, maxpool)
    options = leaf_options(arch, config)
    conv, pool = options
    assert expand_choices(config) == ("none", "add2", "add3", "concat2", "concat3")
    # 4 channels in cell0: split into 2 branches of 2 fits, into 3 does not (each branch keeps 2)
    assert conv.expand == (True, True, True, True, False)
    assert pool.expand == (True, False, False, False, False)  # a pooling is no layer to replicate or split
    # gconv needs groups >= 2 below the channels in every cell (4 and 8): groups 2
    assert conv.insert == (True, True, True, True, True) and conv.groups == 2


def test_decisions_respect_masks_and_max_edits() -> None:
    config = PathEasConfig(max_edits=2, seed=3)
    controller = TreeController(config)
    arch = _grown()
    options = leaf_options(arch, config)
    tree = cell_tree(arch, "cell0").signature()
    gen = torch.Generator().manual_seed(0)
    random = PathLevelRandom(SEED, config)._policy
    rng = np.random.default_rng(0)
    for _ in range(50):
        for trajectory in (controller.decide(tree, options, gen), random.decide(tree, options, rng)):
            assert sum(d.choice != 0 for d in trajectory.decisions) <= 2
            for d in trajectory.decisions:
                allowed = (options[d.leaf].insert if d.kind == "insert" else options[d.leaf].expand)
                assert d.mask == allowed and allowed[d.choice]
            again = TreeTrajectory.from_dict(json.loads(json.dumps(trajectory.to_dict())))
            assert again == trajectory
    with pytest.raises(ValueError, match="choice 1 is not allowed by its mask"):
        Decision(0, "expand", 1, (True, False))


def test_a_child_applies_its_decisions_to_every_cell_and_replays() -> None:
    config = PathEasConfig()
    arch = _grown()
    options = leaf_options(arch, config)
    inserts, expands = insert_choices(config), expand_choices(config)
    decisions = [Decision(2, "insert", inserts.index("conv1x1"), options[2].insert),
                 Decision(0, "expand", expands.index("concat2"), options[0].expand),
                 Decision(2, "expand", expands.index("add2"), options[2].expand)]
    child, done = apply_decisions(arch, decisions, options, config, np.random.default_rng(0))
    assert done == ["conv1x1 at leaf 2", "concat2 at leaf 0", "add2 at leaf 2"]
    trees = {render(cell_tree(child, c)) for c in cell_names(child)}
    assert trees == {"add(concat(conv3x3, conv3x3), seq(conv3x3, add(sepconv3x3, sepconv3x3), conv1x1))"}
    assert replay(arch, child.lineage.steps).child == child


def test_the_controller_learns_to_prefer_a_rewarded_choice() -> None:
    config = PathEasConfig(max_edits=1, controller_lr=0.05, seed=0)
    controller = TreeController(config)
    options = leaf_options(SEED, config)
    tree = cell_tree(SEED, "cell0").signature()
    target = insert_choices(config).index("sepconv5x5")

    def p_target() -> float:
        with torch.no_grad():
            feat = controller.network.leaf_features(tree)[0]
            return float(torch.softmax(controller.network.insert_head(feat), 0)[target])

    before = p_target()
    gen = torch.Generator().manual_seed(1)
    for _ in range(15):
        batch = [controller.decide(tree, options, gen) for _ in range(6)]
        rewards = [0.9 if t.decisions and t.decisions[0].choice == target else 0.5 for t in batch]
        stats = controller.update(batch, rewards)
    assert p_target() > before + 0.2, (before, p_target())
    assert stats["updates"] == 15.0


def test_controller_state_round_trips_exactly() -> None:
    config = PathEasConfig(seed=5)
    controller = TreeController(config)
    tree = cell_tree(SEED, "cell0").signature()
    options = leaf_options(SEED, config)
    controller.update([controller.decide(tree, options, torch.Generator().manual_seed(0))], [0.7])
    state = json.loads(json.dumps(controller.state_dict()))
    other = TreeController(config)
    other.load_state_dict(state)
    a = controller.decide(tree, options, torch.Generator().manual_seed(9))
    b = other.decide(tree, options, torch.Generator().manual_seed(9))
    assert a == b
    with pytest.raises(ValueError, match="another configuration .*seed"):
        TreeController(PathEasConfig(seed=6)).load_state_dict(state)
    with pytest.raises(ValueError, match="not a path-level EAS controller state"):
        other.load_state_dict({"format": "x"})



_SEARCH = {"episodes": 2, "children_per_episode": 3, "epochs": 1, "epochs_start": 2, "epochs_final": 1, "seed": 3,
           "controller_hidden_size": 8, "controller_embedding_dim": 4}


@pytest.mark.parametrize("cls", [PathLevelEAS, PathLevelRandom])
def test_a_search_stopped_mid_episode_resumes_exactly_from_its_json_state(cls) -> None:
    from _eas_helpers import drive, fake_result, trace

    reference = cls(SEED, _SEARCH)
    full = drive(reference)
    assert [c.role for c in full][-2:] == ["final", "seed_final"]
    first = cls(SEED, _SEARCH)
    part = drive(first, stop_after=5)  # the seed, episode 1 and part of episode 2
    assert set(first.pending), "the stop must leave trials in flight"
    restored = cls.from_state_dict(json.loads(json.dumps(first.state_dict())))
    for c in part:  # the trials that were running at the stop report to the restored search
        if c.id in set(first.pending):
            assert restored.tell(c.id, fake_result(c)) is True
    rest = drive(restored)
    assert trace(part + rest) == trace(full)
    assert [c.architecture.id for c in part + rest] == [c.architecture.id for c in full]
    assert restored.summary() == reference.summary()
    if cls is PathLevelEAS:  # the controller's weights and optimiser went on where they were
        assert restored.controller.state_dict() == reference.controller.state_dict()


def test_settings_choose_the_cells_seed_and_refuse_another() -> None:
    from nni_nas_ext.nni.search import split_settings

    search, _, seed = split_settings({"episodes": 1, "dataset": "digits"}, "path_eas")
    assert seed.seed_network == "cells" and isinstance(search, PathEasConfig)
    with pytest.raises(ConfigError, match="'seed_network' must be 'cells'.*but got 'nash'"):
        split_settings({"seed_network": "nash"}, "path_eas_random")
    with pytest.raises(ConfigError, match="primitives"):
        split_settings({"primitives": ["conv9x9"]}, "path_eas")
    with pytest.raises(ValueError, match="needs a seed network with cells"):
        PathLevelEAS(nash_seed((1, 8, 8), 10, (4, 8, 8)))


@pytest.mark.slow
def test_a_search_runs_through_the_sequential_engine(tmp_path) -> None:
    from nni_nas_ext.nni.search import run_in_process

    settings: dict[str, Any] = {
        "dataset": "digits", "episodes": 2, "children_per_episode": 2, "epochs": 1, "epochs_start": 2,
        "epochs_final": 1, "seed_widths": [8, 16], "seed_cells_per_stage": 1, "batch_size": 64, "seed": 0,
        "checkpoint_dir": str(tmp_path / "store"), "controller_hidden_size": 8, "controller_embedding_dim": 4}
    summary, strategy = run_in_process("path_eas", settings)
    assert summary["status"] == "finished", summary.get("reason")
    assert len(summary["history"]) == 2
    children = [c for e in summary["history"] for c in e["children"]]
    assert len(children) == 4 and all(e["controller"] is not None for e in summary["history"])
    assert 0.0 < summary["winner"]["test_acc"] <= 1.0
    assert summary["winner"]["cell"]  # the winner's cell tree, as text
    trained = [c for c in children if c["candidate"] is not None]
    assert trained and all(c["val_acc"] is not None for c in trained)
