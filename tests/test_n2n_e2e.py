"""N2N learning end to end, without nnictl: NNI's sequential engine runs every trial in-process on digits.

The teacher is trained first; the students are built from its checkpoint by the compression morphisms and
distilled from it; the policy learns once per episode; the best student is trained on train+val and tested, the
teacher tested as it is. A second search takes the first one's teacher checkpoint as a given teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow  # a whole N2N search through the sequential engine (issue 13: not in the fast suite)

SETTINGS = {"dataset": "digits", "seed_network": "plain", "seed_depth": 4, "seed_width": 16, "epochs_teacher": 8,
            "episodes": 2, "students_per_episode": 2, "epochs_student": 1, "epochs_final": 1,
            "policy_hidden_size": 8, "policy_embedding_dim": 4, "batch_size": 64, "seed": 0}


def _run(name: str, settings: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    from nni_nas_ext.nni.search import run_in_process

    return run_in_process(name, settings)


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any, Path]:
    store = tmp_path_factory.mktemp("n2n")
    summary, strategy = _run("n2n", {**SETTINGS, "checkpoint_dir": str(store)})
    return summary, strategy, store


def test_the_search_ends_with_a_distilled_student_smaller_than_its_teacher(first) -> None:
    summary, strategy, _ = first
    assert summary["status"] == "finished", summary.get("reason")
    results = strategy.results
    teacher = summary["seed"]
    students = [r for r in results.values() if r["role"] == "child"]
    assert students and all(r["distilled"] and r["parent"] == teacher["candidate"] for r in students)
    assert all(r["params"] < teacher["params"] for r in students)
    assert all(set(m.split("(")[0] for m in r["morphisms"]) <= {"remove_layer", "shrink"} for r in students)
    assert 0.0 < summary["winner"]["test_acc"] <= 1.0 and 0.0 < teacher["test_acc"] <= 1.0
    assert summary["winner"]["params"] < teacher["params"]
    assert teacher["val_acc"] > 0.8  # a teacher worth compressing
    # each student's trial reports its compression and reward against the teacher, as the strategy computes it
    for episode in summary["history"]:
        for s in episode["students"]:
            if s["candidate"] is not None:
                r = results[s["candidate"]]
                assert r["compression"] == pytest.approx(teacher["params"] / s["params"], rel=1e-3)
                assert r["n2n_reward"] == pytest.approx(s["reward"], abs=1e-5)
    assert len(summary["mean_rewards"]) == 2
    state = strategy.search.state_dict()
    while "inner" in state:  # under the middleware (deduplication, failure handling)
        state = state["inner"]
    assert state["policy"]["updates"] == 2  # one REINFORCE update per episode


def test_a_given_teacher_checkpoint_is_measured_and_compressed(first, tmp_path: Path) -> None:
    summary, _, store = first
    teacher_file = store / f"{summary['seed']['candidate']}.pt"
    settings = {**SETTINGS, "episodes": 1, "checkpoint_dir": str(tmp_path), "teacher": str(teacher_file)}
    again, strategy = _run("n2n_random", settings)
    assert again["status"] == "finished", again.get("reason")
    assert again["seed"]["arch_id"] == summary["seed"]["arch_id"]
    # measured as it is (0 epochs): the validation accuracy the first search's teacher ended with (up to the
    # layout and precision of training-time validation: a prediction or two)
    assert again["teacher_val_acc"] == pytest.approx(summary["teacher_val_acc"], abs=0.01)
    assert any(r["distilled"] for r in strategy.results.values() if r["role"] == "child")


def test_the_export_holds_the_student_with_its_teacher_and_compression(first, tmp_path: Path) -> None:
    """What ``python -m nni_nas_ext export`` (``make demo``) reads and writes, from the trials' own results."""
    import io
    import json

    from nni_nas_ext.cli import _EXPORT_NOTE, export_checkpoint, summarize
    from nni_nas_ext.export import METADATA_FILE, load_exported
    from nni_nas_ext.results import SearchResults

    summary, strategy, _ = first
    records = [{"type": "FINAL", "data": json.dumps(r), "trialJobId": f"t{i}"}
               for i, r in enumerate(strategy.results.values())]
    results = SearchResults.from_metric_data(records)
    printed = summarize(results, out=io.StringIO())
    assert printed["winner"]["candidate"] == summary["winner"]["candidate"]
    assert printed["seed"]["candidate"] == summary["seed"]["candidate"]  # the teacher
    assert printed["winner"]["lineage"] and all(step.startswith(("remove_layer(", "shrink("))
                                                for step in printed["winner"]["lineage"])
    out = export_checkpoint(Path(printed["winner"]["checkpoint"]), tmp_path / "export",
                            metadata={"summary": printed, "note": _EXPORT_NOTE})
    meta = json.loads((out / METADATA_FILE).read_text())
    assert meta["parameters"] == summary["winner"]["params"] < meta["summary"]["seed"]["params"]
    assert meta["summary"]["winner"]["lineage"] == printed["winner"]["lineage"]
    load_exported(out)
