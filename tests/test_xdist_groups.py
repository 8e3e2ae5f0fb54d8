"""The worker groups of `make test`'s parallel run (tests/conftest.py): the shared NASH experiment's readers share
one worker, every other module is its own scope."""

from __future__ import annotations

import re
from pathlib import Path

from conftest import NASH_EXPERIMENT_GROUP, NASH_EXPERIMENT_MODULES, xdist_group_of

TESTS = Path(__file__).resolve().parent


def test_every_module_that_uses_the_shared_experiment_is_in_its_group() -> None:
    users = {f"tests/{p.name}" for p in TESTS.glob("test_*.py")
             if re.search(r"\bnash_experiment\b", p.read_text(encoding="utf-8")) and p.name != Path(__file__).name}
    assert users == set(NASH_EXPERIMENT_MODULES)


def test_groups_are_modules_except_the_shared_experiment_s() -> None:
    assert xdist_group_of("tests/test_report.py::test_x[a::b]") == NASH_EXPERIMENT_GROUP
    assert xdist_group_of("tests/test_nash_e2e.py::test_y") == NASH_EXPERIMENT_GROUP
    assert xdist_group_of("tests/test_wire.py::test_z[p::q]") == "tests/test_wire.py"
    assert xdist_group_of("tests/test_eas_episodes.py::TestX::test_y") == "tests/test_eas_episodes.py"
