"""Pickled arrays read without running code: an unpickler that resolves only the numpy names arrays need.

CIFAR-10's python batches and ``mnist.pkl.gz`` are pickles. :func:`load_pickle` reads one (gzipped or not)
with :class:`NumpyOnlyUnpickler`, which refuses every global but numpy's array reconstruction (and
``_codecs.encode``, for bytes in a protocol-2 pickle written by Python 3), so a crafted pickle cannot run
code; any failure is a :class:`~.raw.DatasetError` naming the file and the remedy.
"""

from __future__ import annotations

import codecs
import gzip
import pickle
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .raw import dataset_error

__all__ = ["NumpyOnlyUnpickler", "load_pickle"]


def _numpy_pickle_globals() -> dict[tuple[str, str], Any]:
    try:
        from numpy._core import multiarray  # numpy >= 2  # noqa: PLC0415
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray  # noqa: PLC0415
    try:
        from numpy._core.numeric import _frombuffer  # noqa: PLC0415
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.numeric import _frombuffer  # noqa: PLC0415
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = _frombuffer  # arrays pickled with protocol 5
    allowed[("_codecs", "encode")] = codecs.encode  # bytes in a protocol-2 pickle written by Python 3
    return allowed


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy names used by pickled arrays; anything else is refused."""

    def __init__(self, file: Any, *, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are expected") from None


def load_pickle(path: Path, *, encoding: str, dataset: str, remedy: str) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return NumpyOnlyUnpickler(f, encoding=encoding).load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise dataset_error(
            dataset, f"cannot read {path}: {type(exc).__name__}: {exc}", looked_at=[path], remedy=remedy
        ) from exc
