"""Package discovery for the folder mapping in pyproject.toml.

All metadata lives in pyproject.toml. This file only computes ``packages``: every entry of
``[tool.setuptools.package-dir]`` plus every sub-package (a folder with ``__init__.py``) found under its
folder, named under the mapped package. pyproject's ``packages.find`` cannot do this: it names packages
after folders, so ``strategies/`` would become a top-level ``strategies`` package.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup
from setuptools.config.pyprojecttoml import read_configuration

ROOT = Path(__file__).resolve().parent


def mapped_packages() -> list[str]:
    config = read_configuration(ROOT / "pyproject.toml", expand=False)
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    packages: list[str] = []
    for name, folder in package_dir.items():
        if not (ROOT / folder / "__init__.py").is_file():
            raise SystemExit(f"package-dir maps {name!r} to {folder!r}, which has no __init__.py")
        packages.append(name)
        packages.extend(f"{name}.{sub}" for sub in find_packages(where=str(ROOT / folder)))
    return sorted(packages)


setup(packages=mapped_packages())
