"""What a dataset reader returns and how it fails: :class:`RawData`, :class:`DatasetError`, the held-out test set.

A reader (one module per file format: :mod:`.digits`, :mod:`.idx`, :mod:`.cifar10`, :mod:`.imagefolder`)
takes a :class:`~.splits.DatasetSpec` and returns the dataset as read, :class:`RawData`; missing or damaged
files raise :class:`DatasetError` built by :func:`dataset_error`, whose message names the dataset, every
path looked at and the remedy. Datasets without an official test set hold out a fixed stratified one
(:func:`stratified_holdout`, :data:`DIGITS_TEST_FRACTION`, :data:`HOLDOUT_TEST_SEED`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "DIGITS_TEST_FRACTION", "HOLDOUT_TEST_SEED", "DatasetError", "RawData", "dataset_error", "stratified_holdout",
]

#: Fraction of ``digits`` (and of a flat ``imagefolder`` directory) held out as the test set.
DIGITS_TEST_FRACTION = 0.2
#: Seed of that held-out test set; independent of ``DatasetSpec.split_seed``.
HOLDOUT_TEST_SEED = 0


class DatasetError(RuntimeError):
    """Data that is missing, unreadable or inconsistent.

    Not a :class:`ValueError`: bad *parameters* raise ``ValueError`` (from :class:`~.splits.DatasetSpec`), bad or
    missing *files* raise this.

    Parameters
    ----------
    message
        The whole message: dataset, problem, paths looked at and remedy.
    dataset
        Name of the dataset being loaded.
    looked_at
        Every path that was looked at.
    remedy
        What the user can do about it.
    """

    def __init__(
        self,
        message: str,
        *,
        dataset: str | None = None,
        looked_at: Sequence[str] = (),
        remedy: str | None = None,
    ) -> None:
        super().__init__(message)
        self.dataset = dataset
        self.looked_at = tuple(looked_at)
        self.remedy = remedy


class RawData(NamedTuple):
    """A dataset as read: images ``N x C x H x W`` with values in ``[0, scale]``, int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    scale: float


def dataset_error(name: str, problem: str, *, looked_at: Sequence[Path | str] = (),
                  remedy: str | None = None) -> DatasetError:
    """A :class:`DatasetError` whose message says the dataset, the problem, the paths looked at and the remedy."""
    paths = [str(p) for p in looked_at]
    lines = [f"{name}: {problem}"]
    if paths:
        lines.append("looked at:")
        lines.extend(f"  {p}" for p in paths)
    if remedy:
        lines.append(f"remedy: {remedy}")
    return DatasetError("\n".join(lines), dataset=name, looked_at=paths, remedy=remedy)


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (kept, held out): ``round(fraction * count)`` of each class held out."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held.append(rng.permutation(members)[: round(fraction * len(members))])
    test = np.sort(np.concatenate(held)).astype(np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), test).astype(np.int64)
    return keep, test
