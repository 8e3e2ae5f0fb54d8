#!/usr/bin/env python3
"""`make lint`: the layers (import-linter), the style (ruff) and the types (mypy) of nni-nas-ext.

Why a staged copy. The top-level folders ``search_spaces/``, ``strategies/`` and ``trial_code/`` are installed
*inside* the package (``nni_nas_ext.strategies`` ...; pyproject's ``package-dir``). import-linter (grimp) and
mypy discover a package by walking its folder, where those sub-packages are not. So the checks run on a copy
laid out as the wheel lays it out (``nni_nas_ext/`` with the three folders inside), built in a temporary
folder from the sources (``--src``, the repository by default). Module names in every message are the
installed ones, e.g. ``nni_nas_ext.strategies.nash``; the file is the same name under the repository's folder.

Usage::

    python .ci/lint.py                    # all three checks on the repository
    python .ci/lint.py --only imports     # one check (imports, ruff, types); repeatable
    python .ci/lint.py --src /some/copy   # check another tree of the same shape (the test of the contracts)

Exit status 0 when every selected check passes, 1 otherwise (each check's own output is shown).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# installed name -> folder in the repository (pyproject.toml [tool.setuptools.package-dir])
PACKAGE_DIRS = {
    "nni_nas_ext": "nni_nas_ext",
    "nni_nas_ext/search_spaces": "search_spaces",
    "nni_nas_ext/strategies": "strategies",
    "nni_nas_ext/trial_code": "trial_code",
}
# mypy checks the pure layers: the core, the search spaces and the strategies
TYPED = ("nni_nas_ext/core", "nni_nas_ext/search_spaces", "nni_nas_ext/strategies")
CHECKS = ("imports", "ruff", "types")


def stage(src: Path, dest: Path) -> None:
    """Copy the package's sources from ``src`` into ``dest`` as installed (no caches)."""
    for installed, folder in PACKAGE_DIRS.items():
        origin = src / folder
        if not origin.is_dir():
            raise SystemExit(f"lint: {origin} is missing: --src must be a checkout of nni-nas-ext")
        shutil.copytree(origin, dest / installed, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def tool(name: str) -> str:
    """The console script ``name`` of the interpreter running this file (the project's .venv)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"lint: {path} is missing: run `make venv` (the lock installs ruff, import-linter, mypy)")
    return str(path)


def run(title: str, argv: list[str], cwd: Path) -> bool:
    started = time.monotonic()
    print(f">> {title}", flush=True)
    # import-linter prints through rich, which wraps at 80 columns when not on a terminal: wide lines instead
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run(argv, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out = done.stdout
    if title.startswith("imports"):  # import-linter's banner is ASCII art: keep only the report
        out = out[out.find("Contracts"):] if "Contracts" in out else out
    print(out.rstrip())
    verdict = "ok" if done.returncode == 0 else f"FAILED (exit {done.returncode})"
    print(f">> {title}: {verdict} in {time.monotonic() - started:.1f} s", flush=True)
    return done.returncode == 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=REPO, help="the tree to check (default: this repository)")
    p.add_argument("--only", action="append", choices=CHECKS, help="run only this check (repeatable)")
    args = p.parse_args(argv)
    src = args.src.resolve()
    only = args.only or list(CHECKS)
    ok = True
    with tempfile.TemporaryDirectory(prefix="nni-nas-ext-lint-") as tmp:
        staged = Path(tmp)
        stage(src, staged)
        if "imports" in only:
            ok &= run("imports: the layers (import-linter, contracts in .importlinter)",
                      [tool("lint-imports"), "--config", str(src / ".importlinter"), "--no-cache"], staged)
        if "ruff" in only:
            ok &= run("ruff: style and errors (pyproject.toml [tool.ruff])",
                      [tool("ruff"), "check", "--no-cache", "--config", str(src / "pyproject.toml"), "."], src)
        if "types" in only:
            ok &= run("types: mypy on " + ", ".join(t.replace("/", ".") for t in TYPED),
                      [tool("mypy"), "--config-file", str(src / "pyproject.toml"), "--no-incremental",
                       *TYPED], staged)
    print(">> lint: " + ("all checks passed" if ok else "FAILED (see above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
