"""Datasets of the supplement's small-scale worlds (D.1), read by torchvision, plus TinyImageNet200.

MNIST-family (28×28 grey, MNIST's mean/std): MNIST, EMNIST (``byclass``: 0–9, A–Z, a–z),
EMNISTLetters (EMNIST ``letters``), FashionMNIST, KMNIST — torchvision's layout
``<data_root>/<Class>/raw/*-idx?-ubyte``. CIFAR-family (32×32 RGB, CIFAR-10's mean/std):
CIFAR10 (``<data_root>/cifar-10-batches-py/``), CIFAR100 (``<data_root>/cifar-100-python/``),
TinyImageNet200 (``<data_root>/tiny-imagenet-200/train/<wnid>/images/*.JPEG``, resized to
32 px). Splits are the datasets' own train/test parts. ``download=True`` lets torchvision
fetch what it can (everything but TinyImageNet); it is off unless the user asks.
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset
from torchvision import datasets
from torchvision import transforms as T

from .common import DATA_ENV, DatasetNotFoundError, class_folders, require, resolve_data_root

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

# name: (torchvision class, extra arguments, family, where torchvision looks under data_root)
TORCHVISION = {
    "mnist": (datasets.MNIST, {}, "mnist", "MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "emnist": (datasets.EMNIST, {"split": "byclass"}, "mnist",
               "EMNIST/raw/emnist-byclass-{train,test}-{images-idx3,labels-idx1}-ubyte"),
    "emnistletters": (datasets.EMNIST, {"split": "letters"}, "mnist",
                      "EMNIST/raw/emnist-letters-{train,test}-{images-idx3,labels-idx1}-ubyte"),
    "fashionmnist": (datasets.FashionMNIST, {}, "mnist",
                     "FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "kmnist": (datasets.KMNIST, {}, "mnist", "KMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte"),
    "cifar10": (datasets.CIFAR10, {}, "cifar", "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"),
    "cifar100": (datasets.CIFAR100, {}, "cifar", "cifar-100-python/{train,test,meta}"),
}
TINY_IMAGENET = "tinyimagenet200"
TINY_LAYOUT = "  tiny-imagenet-200/train/n01443537/images/n01443537_0.JPEG …  (words.txt optional)"
TINY_SOURCE = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
NAMES = (*TORCHVISION, TINY_IMAGENET)
FAMILY = {**{name: spec[2] for name, spec in TORCHVISION.items()}, TINY_IMAGENET: "cifar"}


def family_transform(family: str, augment: bool = False) -> T.Compose:
    """The inputs a victim of ``family`` expects; ``augment`` adds CIFAR's padded crops and flips."""
    if family == "mnist":
        return T.Compose([T.ToTensor(), T.Normalize(MNIST_MEAN, MNIST_STD)])
    steps = [T.Resize((32, 32))] + ([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()] if augment else [])
    return T.Compose(steps + [T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)])


def load(name: str, split: str = "train", data_root=None, *, family: str | None = None,
         augment: bool = False, download: bool = False) -> Dataset:
    """Dataset ``name`` (see :data:`NAMES`), transformed for a victim of ``family``
    (default: the dataset's own family)."""
    if name not in NAMES:
        raise ValueError(f"unknown small-scale dataset {name!r}; choose one of {NAMES}")
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; choose 'train' or 'test'")
    root = resolve_data_root(data_root)
    transform = family_transform(family or FAMILY[name], augment)
    if name == TINY_IMAGENET:
        if split != "train":
            raise ValueError("TinyImageNet200 is used as a query set only: its train split")
        folder = require(root / "tiny-imagenet-200" / "train", "TinyImageNet200", TINY_LAYOUT, TINY_SOURCE)
        return class_folders(folder, transform, _words(root / "tiny-imagenet-200" / "words.txt"), "images")
    cls, extra, _, expected = TORCHVISION[name]
    try:
        return cls(str(root), train=split == "train", transform=transform, download=download, **extra)
    except RuntimeError as err:
        raise DatasetNotFoundError(
            f"{name} not found (or it failed torchvision's integrity check) under {root}: {err}.\n"
            f"Expected torchvision's layout: {root / expected}.\nPass download=True (--download) to let "
            f"torchvision fetch it, or unpack it there (data_root is the data_root argument, "
            f"--data-root, or ${DATA_ENV}).") from err


def _words(path: Path) -> dict[str, str] | None:
    if not path.exists():
        return None
    rows = (line.partition("\t") for line in path.read_text().splitlines() if line.strip())
    return {wnid.strip(): words.split(",")[0].strip() or wnid for wnid, _, words in rows}
