"""NASH hill climbing from Python (a notebook, a script) with NNI's ``NasExperiment``.

Run:  .venv/bin/python examples/nash_python_api.py [--sequential]

With ``--sequential`` every trial runs in this process, one after the other (NNI's sequential engine: no
web portal); without it, NNI's local training service runs each trial as its own process and the web
portal shows them at http://127.0.0.1:8081. The settings are the same keys as ``classArgs`` in
config.yml (see README, "Settings").
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from typing import Any

from nni.nas.experiment import NasExperiment, NasExperimentConfig
from nni.nas.experiment.config import SequentialEngineConfig

from nni_nas_ext.nni.search import build_nash

SETTINGS: dict[str, Any] = {
    "dataset": "digits",
    "seed_widths": [8, 16, 16],      # a deliberately small seed network
    "n_steps": 2, "n_neighbours": 3, "n_morphisms": 3,
    "epochs_seed": 4, "epochs_neighbour": 2, "epochs_final": 3,
    "seed": 0,
}


def run(settings: dict[str, Any], *, sequential: bool = True, port: int = 8081) -> tuple[NasExperiment, dict[str, Any]]:
    """Run a NASH search; return the experiment and the search's summary (seed, winner, lineage...)."""
    space, evaluator, strategy = build_nash(settings)
    if sequential:
        config = NasExperimentConfig("sequential", "simplified", "local")
        config.execution_engine = SequentialEngineConfig(continue_on_failure=True)  # a failed child is not fatal
    else:
        config = NasExperimentConfig("ts", "simplified", "local")
        config.trial_concurrency = 2
    experiment = NasExperiment(space, evaluator, strategy, config)
    experiment.run(port=port, wait_completion=True)
    return experiment, strategy.search.summary()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sequential", action="store_true", help="run the trials in this process")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = {**SETTINGS, "checkpoint_dir": tempfile.mkdtemp(prefix="nash-checkpoints-")}
    experiment, summary = run(settings, sequential=args.sequential)
    print(json.dumps({k: summary[k] for k in ("status", "seed", "winner")}, indent=1))
    best = experiment.export_top_models(top_k=1, formatter="dict")[0]
    print("best candidate:", best["architecture"]["id"], "role", best["architecture"]["role"])


if __name__ == "__main__":
    main()
