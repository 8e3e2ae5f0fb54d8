"""The project environment is the locked one, and its torch/torchvision pair really works.

Guards against the known traps of this stack: a CPU-only torch 2.13 from /opt/wheels with which
``import torchvision`` fails, an unpinned torch upgrade, setuptools>=81 (no pkg_resources for nnictl),
and a missing pytorch-lightning (needed by ``nni.nas.evaluator``).
"""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "lock.txt"


def locked_version(name: str) -> str:
    pattern = re.compile(rf"^{re.escape(name)}==(\S+)\s*$", re.IGNORECASE)
    for line in LOCK.read_text().splitlines():
        m = pattern.match(line.strip())
        if m:
            return m.group(1)
    raise AssertionError(f"{name} is not pinned in {LOCK}")


def major_minor(version: str) -> tuple[int, int]:
    major, minor = re.match(r"(\d+)\.(\d+)", version).groups()
    return int(major), int(minor)


def test_lock_is_fully_pinned():
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!_-]+", line), f"not an exact pin: {line!r}"
    assert major_minor(locked_version("setuptools")) < (81, 0)
    assert locked_version("nni") == "3.0"


@pytest.mark.parametrize("name", ["torch", "torchvision"])
def test_torch_pair_matches_lock(name):
    module = importlib.import_module(name)
    assert major_minor(module.__version__) == major_minor(locked_version(name)), (module.__version__, name)


def test_torchvision_op_runs():
    import torch
    import torchvision
    from torchvision.transforms import v2

    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    keep = torchvision.ops.nms(boxes, scores, iou_threshold=0.5)
    assert keep.tolist() == [0, 2]

    image = torch.arange(6, dtype=torch.uint8).reshape(1, 2, 3)
    flipped = v2.functional.horizontal_flip(image)
    assert flipped.tolist() == [[[2, 1, 0], [5, 4, 3]]]


def test_nni_version():
    import nni

    assert nni.__version__ == "3.0"


def test_setuptools_keeps_pkg_resources():
    import setuptools

    assert major_minor(setuptools.__version__) < (81, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources warns that it is deprecated
        import pkg_resources  # noqa: F401  (nnictl imports it)


def test_nni_nas_evaluator_imports():
    """`import nni.nas.evaluator` needs pytorch_lightning installed."""
    import nni.nas.evaluator  # noqa: F401
    import pytorch_lightning  # noqa: F401

