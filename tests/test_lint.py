"""`make lint` can fail: each kind of layer contract catches a forbidden import added to a copy of the tree.

.ci/lint.py stages the sources as installed and runs import-linter with .importlinter; these tests copy the
package folders to a temporary tree, add one forbidden import, and expect the named contract to break. The
clean copy must pass, so the contracts are also checked against the current code here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LINT = REPO / ".ci" / "lint.py"
FOLDERS = ("nni_nas_ext", "search_spaces", "strategies", "trial_code")


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for folder in FOLDERS:
        shutil.copytree(REPO / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in (".importlinter", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def lint_imports(src: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LINT), "--only", "imports", "--src", str(src)],
                          text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)


def add_import(tree: Path, module: str, line: str) -> None:
    path = tree / module
    path.write_text(path.read_text() + f"\n{line}\n")


def test_the_current_tree_keeps_every_contract(tree: Path) -> None:
    done = lint_imports(tree)
    assert done.returncode == 0, done.stdout
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(("module", "line", "contract"), [
    # the core reaching up into the strategies: the layers contract
    ("nni_nas_ext/core/errors.py", "import nni_nas_ext.strategies", "Layers:"),
    # trial code reaching the strategies' sibling layer
    ("trial_code/augment.py", "import nni_nas_ext.strategies", "Layers:"),
    # a strategy touching files and the clock
    ("strategies/nash.py", "import time", "no nni, no files, no clocks"),
    ("strategies/nash.py", "from pathlib import Path", "no nni, no files, no clocks"),
    # a strategy reading the search spaces
    ("strategies/nash.py", "import nni_nas_ext.search_spaces", "Strategies import the core only"),
    # trial code importing nni
    ("trial_code/augment.py", "import nni", "Trial code never imports nni"),
    # anything outside the adapters importing nni
    ("nni_nas_ext/export.py", "import nni", "Only nni_nas_ext.nni imports nni"),
    # the wire format pulling in torch
    ("nni_nas_ext/wire.py", "import torch", "standard library only"),
    # the report reaching the adapters (and through them nni), or unpickling
    ("nni_nas_ext/report/html.py", "import nni_nas_ext.nni", "The report reads an experiment's files"),
    ("nni_nas_ext/report/experiment.py", "import pickle", "The report reads an experiment's files"),
])
def test_a_forbidden_import_breaks_its_contract(tree: Path, module: str, line: str, contract: str) -> None:
    add_import(tree, module, line)
    done = lint_imports(tree)
    assert done.returncode == 1, done.stdout
    broken = done.stdout[done.stdout.find("Broken contracts"):]
    assert contract in broken, done.stdout
