"""Fashion-MNIST from its IDX files (gzipped or not), as Debian's ``dataset-fashion-mnist`` installs them.

Xiao, Rasul, Vollgraf, *Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms*,
arXiv 1708.07747: 60,000 training and 10,000 test images of 28x28 grey pixels, ten classes. The files are
looked for in ``root`` (default :data:`FASHION_MNIST_DEFAULT_ROOT`) and in torchvision's layout
``root/FashionMNIST/raw``; nothing is downloaded. :func:`read_idx` parses one IDX file, checking its magic
number and size.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .raw import DatasetError, RawData, dataset_error

if TYPE_CHECKING:
    from .splits import DatasetSpec

__all__ = ["FASHION_MNIST_CLASSES", "FASHION_MNIST_DEFAULT_ROOT", "read_fashion_mnist", "read_idx"]

FASHION_MNIST_DEFAULT_ROOT = "/usr/share/datasets/fashion-mnist"

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

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


def read_fashion_mnist(spec: DatasetSpec) -> RawData:
    """Fashion-MNIST's four IDX files from ``root`` (or its ``FashionMNIST/raw``), checked for consistency."""
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
        raise dataset_error(name, f"could not find the IDX files ({where})", looked_at=missed, remedy=_FASHION_REMEDY)
    train_x = read_idx(found["train_images"], _IDX_IMAGES_MAGIC, name)
    train_y = read_idx(found["train_labels"], _IDX_LABELS_MAGIC, name)
    test_x = read_idx(found["test_images"], _IDX_IMAGES_MAGIC, name)
    test_y = read_idx(found["test_labels"], _IDX_LABELS_MAGIC, name)
    for images, labels, img_path, lbl_path in (
        (train_x, train_y, found["train_images"], found["train_labels"]),
        (test_x, test_y, found["test_images"], found["test_labels"]),
    ):
        if len(images) != len(labels):
            raise dataset_error(
                name,
                f"{img_path} holds {len(images)} images but {lbl_path} holds {len(labels)} labels",
                looked_at=[img_path, lbl_path],
                remedy=_corrupt_remedy(),
            )
        if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise dataset_error(
                name,
                f"{lbl_path} has label {int(labels.max())}, but Fashion-MNIST has labels 0..9",
                looked_at=[lbl_path],
                remedy=_corrupt_remedy(),
            )
    if train_x.shape[1:] != test_x.shape[1:]:
        raise dataset_error(
            name,
            f"training images are {train_x.shape[1]}x{train_x.shape[2]} but test images are "
            f"{test_x.shape[1]}x{test_x.shape[2]}",
            looked_at=[found["train_images"], found["test_images"]],
            remedy=_corrupt_remedy(),
        )
    return RawData(
        train_x[:, None], train_y.astype(np.int64), test_x[:, None], test_y.astype(np.int64),
        FASHION_MNIST_CLASSES, 255.0,
    )  # fmt: skip


def _corrupt_remedy() -> str:
    return (
        "the file is damaged or not Fashion-MNIST: reinstall it "
        "(`sudo apt-get install --reinstall dataset-fashion-mnist`) or replace it with a good copy"
    )


def read_idx(path: Path, magic: int, name: str) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (gzipped or not), checking its magic number and size.

    The format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a big-endian int32 magic number
    ``0x0000TTDD`` (type ``TT`` = 0x08 for unsigned bytes, ``DD`` dimensions), ``DD`` big-endian int32
    sizes, then the data, row-major.
    """

    def corrupt(problem: str) -> DatasetError:
        return dataset_error(name, f"{path} is not a valid IDX file: {problem}", looked_at=[path],
                             remedy=_corrupt_remedy())

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise dataset_error(name, f"cannot read {path}: {exc}", looked_at=[path], remedy=_corrupt_remedy()) from exc
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
