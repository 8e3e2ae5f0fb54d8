"""End to end: `nnictl create` runs the FNA pipeline on a tiny budget; checked through NNI's REST API.

Every trial succeeds; the architecture adaptation reports per-epoch progress and, in its final result, a valid
derived architecture of the space; the parameter adaptation fine-tunes exactly that architecture, starting
from the seed's remapped weights (its accuracy before fine-tuning is recorded), and reports test accuracy;
the baselines run beside it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from nnictl_harness import NnictlExperiment, experiment_config

from nni_nas_ext.core.mbconv import MBConvArchitecture, mobilenet_v2
from nni_nas_ext.search_spaces.mbconv_space import SuperNetSpace

pytestmark = pytest.mark.e2e

CLASS_ARGS = yaml.safe_load((ROOT / "examples" / "fna-tiny.yml").read_text())["tuner"]["classArgs"]


def test_fna_pipeline_under_nnictl(tmp_path: Path) -> None:
    config = experiment_config(
        tmp_path, name="fna-e2e", trial_code_directory=ROOT, trial_concurrency=2, max_trial_number=10,
        tuner={"className": "nni_nas_ext.nni.fna.FnaTuner", "codeDirectory": str(ROOT), "classArgs": CLASS_ARGS},
        maxExperimentDuration="10m")
    with NnictlExperiment.create(config, tmp_path) as exp:
        assert exp.wait_for_status({"DONE", "ERROR"}, timeout=300) == "DONE", exp.diagnostics()
        trials = exp.trial_jobs()
        finals = exp.final_metrics()
        intermediates = [m for m in exp.metric_data() if m["type"] == "PERIODICAL"]

    assert len(trials) == 5 and {t["status"] for t in trials} == {"SUCCEEDED"}, trials
    by_kind = {m["kind"]: m for m in finals.values()}
    assert set(by_kind) == {"seed", "adapt", "seed_finetune", "param", "scratch"}
    assert not any("failed" in m for m in finals.values())

    adapt, param = by_kind["adapt"], by_kind["param"]
    derived = MBConvArchitecture.from_dict(adapt["architecture"])
    space = SuperNetSpace(mobilenet_v2(10, CLASS_ARGS["width_mult"], 8, 1), max_layers=CLASS_ARGS["max_layers"])
    assert space.derive(adapt["choice"]) == derived  # a valid architecture of the space, the argmax choice
    assert len(adapt["history"]) == CLASS_ARGS["epochs_adapt"] and adapt["history"][-1]["arch_updates"]
    assert sum(1 for m in intermediates if m["trialJobId"] in {t["trialJobId"] for t in trials}) >= \
        CLASS_ARGS["epochs_adapt"] + CLASS_ARGS["epochs_seed"]

    assert param["arch_id"] == derived.id and param["madds"] == derived.num_madds()
    assert param["weights"] == "remapped from the seed" and param["adapt_job"] == adapt["candidate"]
    assert 0.0 <= param["start_val_acc"] <= 1.0 and 0.0 < param["test_acc"] <= 1.0
    assert by_kind["scratch"]["arch_id"] == derived.id and by_kind["scratch"]["weights"] == "random init"
    assert by_kind["seed_finetune"]["arch_id"] == adapt["seed_arch_id"]
