"""The experiment's budget as NNI's manager keeps it: what is left of its time and of its trials.

A budget-aware search (``MorphismStrategy.budget_source``) asks the bridge for it before each proposal; the
budget is advice, so a manager that cannot answer gives None rather than stopping the search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nni.experiment import Experiment

    from nni_nas_ext.strategies.base import Budget

__all__ = ["duration_seconds", "read_budget"]

_log = logging.getLogger(__name__)


def read_budget(binding: Experiment | None, trial_jobs: Callable[[], list[Any]], recorded: int) -> Budget | None:
    """What is left of ``maxExperimentDuration`` (NNI's ``execDuration`` counts running time only, so a
    stopped and resumed experiment keeps its budget) and of ``maxTrialNumber``; None where unlimited or
    unknown.

    ``trial_jobs`` lists NNI's trials (the REST API's ``/trial-jobs``); ``recorded`` is the number of models
    the search has sent (the bridge's records): the larger of the two counts as used.
    """
    from nni_nas_ext.strategies.base import Budget

    try:
        profile = binding.get_experiment_profile() if binding is not None else {}
        params = profile.get("params") or {}
        seconds_left = None
        limit = duration_seconds(params.get("maxExperimentDuration"))
        if limit is not None:
            seconds_left = max(0.0, limit - float(profile.get("execDuration") or 0.0))
        trials_left = None
        if params.get("maxTrialNumber") is not None:
            used = max(len(trial_jobs()), recorded)
            trials_left = max(0, int(params["maxTrialNumber"]) - used)
    except Exception:  # noqa: BLE001 - the budget is advice; never stop the search for want of it
        _log.warning("Could not read the experiment's budget from NNI", exc_info=True)
        return None
    return Budget(seconds_left=seconds_left, trials_left=trials_left)


def duration_seconds(value: Any) -> float | None:
    """Seconds of an NNI duration (``maxExperimentDuration``): ``"30m"``, ``"1.5h"``, ``"2d"``, ``"90s"`` or a
    number of seconds; None when absent or unreadable."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text and text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        return None
