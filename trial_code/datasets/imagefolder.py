"""Image folders: ``root/train/<class>/<image>`` (+ ``root/test/<class>/...``) or ``root/<class>/<image>``.

Classes are the folder names, sorted; images (any of :data:`IMAGE_EXTENSIONS`, decoded by Pillow) must all
have one size and 8-bit pixels; they are read as one channel when all are grayscale, else as RGB. Without a
``test`` folder a fixed 20 % stratified test set is held out (:func:`~.raw.stratified_holdout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .raw import DIGITS_TEST_FRACTION, HOLDOUT_TEST_SEED, DatasetError, RawData, dataset_error, stratified_holdout

if TYPE_CHECKING:
    from .splits import DatasetSpec

__all__ = ["IMAGE_EXTENSIONS", "read_imagefolder"]

#: File suffixes read as images by ``imagefolder`` (torchvision's ``IMG_EXTENSIONS``).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def read_imagefolder(spec: DatasetSpec) -> RawData:
    """Images under ``root`` by class folder, with ``train``/``test`` folders or a held-out test set."""
    name = spec.name
    assert spec.root is not None  # guaranteed by DatasetSpec
    root = Path(spec.root).expanduser()
    remedy = (
        "pass root=DIR laid out as DIR/train/<class>/<image> (and optionally DIR/test/<class>/<image>) "
        f"or DIR/<class>/<image>, with images ending in {', '.join(IMAGE_EXTENSIONS)}"
    )
    if not root.is_dir():
        raise dataset_error(name, f"{root} is not a directory", looked_at=[root], remedy=remedy)
    train_dir = root / "train" if (root / "train").is_dir() else root
    test_dir = root / "test" if train_dir != root and (root / "test").is_dir() else None

    train_files = _list_class_files(train_dir, name, remedy)
    classes = tuple(sorted(train_files))
    test_files = _list_class_files(test_dir, name, remedy) if test_dir is not None else {}
    extra = sorted(set(test_files) - set(classes))
    if extra:
        raise dataset_error(
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
        return RawData(images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], classes, 255.0)
    keep, test = stratified_holdout(labels, DIGITS_TEST_FRACTION, HOLDOUT_TEST_SEED)
    return RawData(images[keep], labels[keep], images[test], labels[test], classes, 255.0)


def _list_class_files(folder: Path, name: str, remedy: str) -> dict[str, list[Path]]:
    class_dirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        raise dataset_error(name, f"{folder} has no class folders", looked_at=[folder], remedy=remedy)
    files: dict[str, list[Path]] = {}
    for d in class_dirs:
        found = sorted(
            p for p in d.rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        )  # fmt: skip
        if not found:
            raise dataset_error(name, f"class folder {d} holds no images", looked_at=[d], remedy=remedy)
        files[d.name] = found
    return files


def _read_images(paths: Sequence[Path], name: str) -> np.ndarray:
    """Decode images into uint8 ``N x C x H x W``: one channel if all are grayscale, else RGB."""
    from PIL import Image  # noqa: PLC0415 - Pillow comes with torchvision

    def unreadable(path: Path, exc: Exception) -> DatasetError:
        return dataset_error(
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
            raise dataset_error(
                name,
                f"image {path} is {size[0]}x{size[1]} (width x height) but {first[0]} is "
                f"{first[1][0]}x{first[1][1]}; all images must have the same size",
                looked_at=[first[0], path],
                remedy="resize the images to one size before loading",
            )
        if mode.startswith(("I", "F")):  # 16/32-bit integer or float pixels: "L"/"RGB" would clip them to 255
            raise dataset_error(
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
