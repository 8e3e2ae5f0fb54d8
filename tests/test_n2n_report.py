"""N2N learning in the experiment report (``python -m nni_nas_ext report``): the teacher is the seed of the lineage
tree, the winner's path runs from the teacher to the best student, and the figures and settings are there; an
experiment folder laid out as a real run writes it (``_report_helpers``), from a driven N2N search."""

from __future__ import annotations

from pathlib import Path

from _report_helpers import FakeTrial, candidate_result, nash_config, write_experiment_folder
from test_nash import drive, fake_accuracy

from nni_nas_ext.core import Candidate
from nni_nas_ext.report import write_report
from nni_nas_ext.report.experiment import load_experiment
from nni_nas_ext.report.graphs import winner_path
from nni_nas_ext.search_spaces import plain_cnn
from nni_nas_ext.strategies.n2n import N2NSearch

TEACHER = plain_cnn(depth=5, input_shape=(1, 8, 8), num_classes=10, width=8, stages=1)
CONFIG = {"episodes": 2, "students_per_episode": 3, "epochs_teacher": 2, "epochs_student": 1, "epochs_final": 1,
          "policy_hidden_size": 8, "policy_embedding_dim": 4, "seed": 0}


def test_the_report_shows_the_teacher_and_the_path_to_the_best_student(tmp_path: Path) -> None:
    search = N2NSearch(TEACHER, CONFIG)
    results: dict[str, dict] = {}

    def train(c: Candidate) -> dict:
        acc = fake_accuracy(c)
        results[c.id] = candidate_result(c, acc, test_acc=acc - 0.01 if c.evaluate_test else None)
        return results[c.id]

    candidates = [c for r in drive(search, train) for c in r]
    trials = [FakeTrial(f"T{n:04d}", c.to_dict(), results[c.id]) for n, c in enumerate(candidates)]
    config = nash_config("n2n-report")
    config["tuner"] = {"className": "nni_nas_ext.nni.tuners.N2NTuner", "codeDirectory": "/repo",
                       "classArgs": {**CONFIG, "dataset": "digits", "seed_network": "plain"}}
    folder = write_experiment_folder(tmp_path, "n2nrep01", trials, config=config, search_state=search.state_dict())
    summary = search.summary()
    teacher, winner = summary["seed"]["candidate"], summary["winner"]["candidate"]
    assert winner_path(load_experiment(folder)) == [teacher, winner]
    index = write_report(folder, tmp_path / "report")
    page = index.read_text()
    assert teacher in page and winner in page and "N2NTuner" in page
    assert (index.parent / "lineage-tree.svg").is_file() and (index.parent / "accuracy-params.svg").is_file()
