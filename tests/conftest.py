"""Test-wide settings."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None):
        # a process that runs tests (not pytest-xdist's controller, which only hands them out and so need not
        # import torch: 1.4 CPU-seconds). The tests run tiny networks on a 2-core machine. With torch's default of
        # one thread per core, any other load on the machine makes its thread pool thrash (measured here: 6x
        # slower property tests).
        import torch

        torch.set_num_threads(1)
    # the two harmless warnings of `import nni.nas` on the locked torch (nni_nas_ext.console), for the test modules
    # that import nni.nas before our adapter package filters them
    from nni_nas_ext.console import torch_alias_filters

    for action, message, category in torch_alias_filters():
        config.addinivalue_line("filterwarnings", f"{action}:{message}:{category.__name__}")


# --------------------------------------------------------------------------------------------------
# One real `nnictl create` NASH experiment, shared by the end-to-end tests that read it (REST, browser)
# --------------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]

#: A tiny NASH budget: 1 seed + 2 steps x 3 + 2 finals = 9 trials, two at a time.
E2E_CLASS_ARGS = {
    "n_steps": 2, "n_neighbours": 3, "n_morphisms": 3,
    "epochs_seed": 4, "epochs_neighbour": 2, "epochs_final": 2,
    "morphisms": ["deepen", "widen", "add_skip", "concat_skip"], "morphism_mode": "exact",
    "dataset": "digits", "seed_widths": [4, 8, 8], "threads": 1, "seed": 1,
}


@pytest.fixture(scope="session")
def nash_experiment(tmp_path_factory: pytest.TempPathFactory):
    """A finished NASH experiment started by `nnictl create` with trialConcurrency 2, left running for reading.

    Yields the harness's NnictlExperiment (REST API, logs); it is stopped at the end of the session.
    """
    from nnictl_harness import NnictlExperiment, experiment_config

    root = tmp_path_factory.mktemp("nash-e2e")
    config = experiment_config(
        root, name="nash-e2e", trial_code_directory=ROOT, trial_concurrency=2, max_trial_number=30,
        tuner={"className": "nni_nas_ext.nni.tuners.NashTuner", "codeDirectory": str(ROOT),
               "classArgs": E2E_CLASS_ARGS},
        maxExperimentDuration="15m")
    with contextlib.ExitStack() as stack:
        exp = stack.enter_context(NnictlExperiment.create(config, root))
        status = exp.wait_for_status({"DONE", "ERROR", "STOPPED"}, timeout=600)
        assert status == "DONE", exp.diagnostics()
        yield exp


# --------------------------------------------------------------------------------------------------
# Parallel runs (`make test`: pytest-xdist, `-n 3 --dist loadscope`): which tests share a worker
# --------------------------------------------------------------------------------------------------

#: the test modules that read the session's shared NASH experiment (fixture ``nash_experiment``): one worker runs
#: them all, so that the experiment is started once, not once per worker (tests/test_xdist_groups.py checks the list)
NASH_EXPERIMENT_MODULES = ("tests/test_nash_e2e.py", "tests/test_portal_browser.py", "tests/test_report.py")
NASH_EXPERIMENT_GROUP = "nash_experiment"


def xdist_group_of(nodeid: str) -> str:
    """The worker group of a test: its module (a module's fixtures are built once, in one worker), or
    :data:`NASH_EXPERIMENT_GROUP` for the modules of :data:`NASH_EXPERIMENT_MODULES`."""
    module = nodeid.split("::", 1)[0]
    return NASH_EXPERIMENT_GROUP if module in NASH_EXPERIMENT_MODULES else module


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """With ``--dist loadscope``, xdist's scheduling by module with the NASH experiment's modules as one scope.

    (xdist's own ``loadgroup`` marks cannot do it here: with pytest 9 its renaming of node ids has no effect.)
    """
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModuleScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid)

    return ModuleScheduling(config, log)
