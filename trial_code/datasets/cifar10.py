"""CIFAR-10 in torchvision's python format: ``cifar-10-batches-py/`` with ``data_batch_1..5`` and ``test_batch``.

Krizhevsky, *Learning Multiple Layers of Features from Tiny Images*, 2009: 50,000 training and 10,000 test
colour images of 32x32 pixels, ten classes (names from ``batches.meta`` when present). ``root`` is that
folder or the one holding it; nothing is downloaded. The batches are pickles, read with
:func:`~.safe_pickle.load_pickle` (numpy arrays only).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .raw import RawData, dataset_error
from .safe_pickle import load_pickle

if TYPE_CHECKING:
    from .splits import DatasetSpec

__all__ = ["CIFAR10_CLASSES", "CIFAR10_FOLDER", "read_cifar10"]

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR10_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"


def read_cifar10(spec: DatasetSpec) -> RawData:
    """CIFAR-10's five training batches and its test batch, class names from ``batches.meta`` if present."""
    name = spec.name
    assert spec.root is not None  # guaranteed by DatasetSpec
    root = Path(spec.root).expanduser()
    folder = root if root.name == CIFAR10_FOLDER else root / CIFAR10_FOLDER
    files = [folder / b for b in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH)]
    missing = [f for f in files if not f.is_file()]
    remedy = (
        f"put the python version of CIFAR-10 ({CIFAR10_FOLDER}/ with {', '.join(_CIFAR_TRAIN_BATCHES)}, "
        f"{_CIFAR_TEST_BATCH}) under {root}; nothing is downloaded"
    )
    if missing:
        where = f"{folder} does not exist" if not folder.exists() else f"{len(missing)} batch file(s) are missing"
        raise dataset_error(name, f"could not find the CIFAR-10 batches ({where})", looked_at=missing, remedy=remedy)
    damaged = "the file is damaged or not a CIFAR-10 python batch: replace it with a good copy"
    batches = [_read_cifar_batch(f, name, damaged) for f in files]
    train_x = np.concatenate([b[0] for b in batches[:-1]])
    train_y = np.concatenate([b[1] for b in batches[:-1]])
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        content = load_pickle(meta, encoding="bytes", dataset=name, remedy=damaged)
        names = content.get(b"label_names") if isinstance(content, dict) else None
        if names is not None:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    for labels, path in ((train_y, folder), (batches[-1][1], files[-1])):
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise dataset_error(
                name, f"labels in {path} lie outside 0..{len(classes) - 1}", looked_at=[path], remedy=damaged
            )
    return RawData(train_x, train_y, batches[-1][0], batches[-1][1], classes, 255.0)


def _read_cifar_batch(path: Path, name: str, remedy: str) -> tuple[np.ndarray, np.ndarray]:
    batch = load_pickle(path, encoding="bytes", dataset=name, remedy=remedy)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise dataset_error(name, f"{path} is not a dict with b'data' and b'labels'", looked_at=[path], remedy=remedy)
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise dataset_error(
            name,
            f"{path} holds data of dtype {data.dtype} and shape {data.shape} with {labels.size} labels; "
            "expected uint8 N x 3072 with N labels",
            looked_at=[path],
            remedy=remedy,
        )
    return data.reshape(-1, 3, 32, 32), labels
