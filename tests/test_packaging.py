"""The wheel ships exactly the packages on disk, under ``nni_nas_ext`` and nowhere else.

The expected content is computed from the file system and from ``[tool.setuptools.package-dir]`` in
pyproject.toml, so a new sub-package (a folder with ``__init__.py``) is covered without editing this file.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN_TOP_LEVEL = ("strategies", "search_spaces", "trial_code", "tests", "benchmarks")
SKIP_DIRS = {"__pycache__"}


def package_dir() -> dict[str, str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["tool"]["setuptools"]["package-dir"]


def source_folders(folder: Path):
    """Every folder under ``folder`` (itself included), caches left out."""
    for dirpath, dirnames, _ in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        yield Path(dirpath)


def expected_packages() -> set[str]:
    packages = set()
    for name, folder in package_dir().items():
        base = ROOT / folder
        for d in source_folders(base):
            if (d / "__init__.py").is_file():
                rel = d.relative_to(base).parts
                packages.add(".".join((name, *rel)))
    return packages


def expected_modules() -> set[str]:
    """Paths inside the wheel of every .py file that lives in a package folder."""
    files = set()
    for name, folder in package_dir().items():
        base = ROOT / folder
        for d in source_folders(base):
            if not (d / "__init__.py").is_file():
                continue
            prefix = "/".join((*name.split("."), *d.relative_to(base).parts))
            files.update(f"{prefix}/{p.name}" for p in d.glob("*.py"))
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """Build the wheel from a copy of the sources (an in-tree build/ could hold stale files)."""
    src = tmp_path_factory.mktemp("src")
    for entry in ROOT.iterdir():
        if entry.is_file():
            shutil.copy2(entry, src / entry.name)
    for folder in package_dir().values():
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    out = tmp_path_factory.mktemp("wheel")
    env = dict(os.environ, PIP_FIND_LINKS=" ", PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(src)],
        capture_output=True,
        text=True,
        env=env,
        cwd=src,
    )
    assert proc.returncode == 0, f"pip wheel failed:\n{proc.stdout}\n{proc.stderr}"
    wheels = list(out.glob("nni_nas_ext-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        yield zf


def wheel_packages(zf: zipfile.ZipFile) -> set[str]:
    return {n[: -len("/__init__.py")].replace("/", ".") for n in zf.namelist() if n.endswith("/__init__.py")}


def test_package_dir_maps_the_fixed_layout():
    assert package_dir() == {
        "nni_nas_ext": "nni_nas_ext",
        "nni_nas_ext.search_spaces": "search_spaces",
        "nni_nas_ext.strategies": "strategies",
        "nni_nas_ext.trial_code": "trial_code",
    }


def test_no_folder_of_python_files_lacks_init():
    """A folder with .py files but no __init__.py would be a namespace package that the wheel skips."""
    missing = []
    for folder in package_dir().values():
        for d in source_folders(ROOT / folder):
            if any(d.glob("*.py")) and not (d / "__init__.py").is_file():
                missing.append(str(d.relative_to(ROOT)))
    assert not missing, f"folders with Python files but no __init__.py: {missing}"


def test_wheel_ships_every_package_on_disk(wheel):
    expected = expected_packages()
    assert {"nni_nas_ext", "nni_nas_ext.search_spaces", "nni_nas_ext.strategies", "nni_nas_ext.trial_code"} <= expected
    assert wheel_packages(wheel) == expected


def test_wheel_ships_every_module(wheel):
    names = set(wheel.namelist())
    missing = expected_modules() - names
    assert not missing, f"modules missing from the wheel: {sorted(missing)}"


def test_wheel_ships_py_typed(wheel):
    assert "nni_nas_ext/py.typed" in wheel.namelist()


def test_wheel_has_no_other_top_level(wheel):
    top = {n.split("/", 1)[0] for n in wheel.namelist()}
    dist_info = {t for t in top if t.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"nni_nas_ext"}
    for name in FORBIDDEN_TOP_LEVEL:
        assert not any(n.startswith(f"{name}/") for n in wheel.namelist()), name
    (info,) = dist_info
    top_level = wheel.read(f"{info}/top_level.txt").decode().split()
    assert top_level == ["nni_nas_ext"]


@pytest.mark.slow
def test_installed_package_maps_folders(tmp_path):
    """The installed package (editable in .venv) resolves the mapped folders, also outside the repo, and
    none of the top-level folders is importable as a module of its own."""
    code = (
        "import importlib, importlib.util, json\n"
        f"names = {sorted(expected_packages())!r}\n"
        f"forbidden = {list(FORBIDDEN_TOP_LEVEL)!r}\n"
        "found = {n: importlib.import_module(n).__file__ for n in names}\n"
        "stray = {n: getattr(importlib.util.find_spec(n), 'origin', None) for n in forbidden}\n"
        "print(json.dumps({'found': found, 'stray': stray}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for name, file in result["found"].items():
        suffix = (*name.split("."), "__init__.py")
        path = Path(file).resolve()
        # editable install: the file in the repo folder; regular install: <site-packages>/nni_nas_ext/...
        assert path.parts[-len(suffix) :] == suffix or _source_init(name) == path, (name, file)
    for name, origin in result["stray"].items():
        assert origin is None or not Path(origin).resolve().is_relative_to(ROOT), (name, origin)


def _source_init(name: str) -> Path | None:
    """The repo file that package ``name`` comes from, by the package-dir mapping."""
    mapping = package_dir()
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        head = ".".join(parts[:i])
        if head in mapping:
            return (ROOT / mapping[head]).joinpath(*parts[i:], "__init__.py").resolve()
    return None
