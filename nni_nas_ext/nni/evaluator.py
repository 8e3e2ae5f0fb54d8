"""The evaluator of a morphism search: NNI runs :func:`train_candidate` in every trial.

``FunctionalEvaluator(train_candidate, task=...)`` is what NNI pickles into each trial's parameters (with a
64 KB cap: the task holds names and paths, never tensors). In the trial NNI rebuilds the frozen
:class:`~nni_nas_ext.nni.space.MorphismModelSpace` and calls ``train_candidate(model, task)``, which hands
over to the NNI-free trial code (:func:`nni_nas_ext.trial_code.trial.run_candidate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import nni

from nni_nas_ext.console import log_to_stdout
from nni_nas_ext.results import portal_result

__all__ = ["NniReporter", "make_evaluator", "train_candidate", "trial_payload_of"]

#: the evaluator functions of our searches -> the wire payload kind a trial runs them as
_PAYLOAD_KINDS = {
    "nni_nas_ext.nni.evaluator.train_candidate": "candidate",
    "nni_nas_ext.nni.mbconv_space.train_fna_job": "fna_job",
}


class NniReporter:
    """Sends a trial's results to NNI."""

    def intermediate(self, metric: dict[str, Any]) -> None:
        nni.report_intermediate_result(metric)

    def final(self, metric: dict[str, Any]) -> None:
        """The final result, in its portal form: a few keys at the top (columns and axes of NNI's portal), the
        rest as JSON under ``details`` (:func:`nni_nas_ext.results.portal_result`; every reader flattens it)."""
        nni.report_final_result(portal_result(metric))


def train_candidate(model: Any, task: Mapping[str, Any]) -> dict[str, Any]:
    """Train the candidate that ``model`` (a frozen MorphismModelSpace) carries; report to NNI."""
    from nni_nas_ext.trial_code.trial import TaskConfig, run_candidate

    log_to_stdout()
    return run_candidate(model.candidate, TaskConfig.from_dict(task), NniReporter())


def make_evaluator(task: Mapping[str, Any]) -> Any:
    """The evaluator for a search with these task settings (see :class:`~nni_nas_ext.trial_code.trial.TaskConfig`).

    A ``nni.nas.evaluator.FunctionalEvaluator``; imported here, not at the module's import, because
    ``nni.nas.evaluator`` pulls in pytorch_lightning, which nothing else of this module needs.
    """
    from nni.nas.evaluator import FunctionalEvaluator

    from nni_nas_ext.trial_code.trial import TaskConfig

    return FunctionalEvaluator(train_candidate, task=TaskConfig.from_dict(task).to_dict())


def trial_payload_of(model: Any) -> Any:
    """The :class:`~nni_nas_ext.wire.TrialPayload` a trial needs for a frozen model of our spaces, else None.

    ``model`` is a frozen ``ExecutableModelSpace`` whose evaluator is ``FunctionalEvaluator(train_candidate,
    task=...)`` (morphism searches) or ``FunctionalEvaluator(train_fna_job, task=..., adaptation=...)`` (FNA):
    the job is the sample's ``architecture`` value, the settings are the evaluator's arguments (plain JSON).
    """
    from nni_nas_ext.wire import TrialPayload

    evaluator = getattr(model, "evaluator", None)
    function = getattr(evaluator, "function", None)
    name = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', '')}"
    kind = _PAYLOAD_KINDS.get(name)
    sample = getattr(model, "sample", None)
    if kind is None or not isinstance(sample, Mapping) or not isinstance(sample.get("architecture"), Mapping):
        return None
    arguments = getattr(evaluator, "arguments", {})
    return TrialPayload(kind=kind, job=dict(sample["architecture"]),
                        settings={name: dict(value) for name, value in arguments.items()})
