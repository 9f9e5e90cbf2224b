"""Miniature copies of every dataset layout the worlds read, written in the real formats:
JPEG/PNG files in the published folder layouts and index files, MNIST-family idx files as
torchvision reads them from ``<Class>/raw/``, CIFAR batches in their pickled python format,
plus random-init victim checkpoints where the worlds look for them.

Import the ``data_root`` fixture into a test module to use it; it is built once per session.
"""
import pickle
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from knockoff_env.models.architectures import build_arch
from knockoff_env.victim.training import save_victim

SIDE = 12  # pixels of every miniature image
CALTECH = ["ak47", "bear", "camel"]
CUBS = ["Black_footed_Albatross", "Laysan_Albatross", "Sooty_Albatross", "Groove_billed_Ani"]
INDOOR = ["bakery", "kitchen", "library"]
WNIDS = [f"n0{i:07d}" for i in range(1, 7)]
OPENIMAGES = ["Apple", "Bicycle", "Cat", "Drum"]
TINY = ["n01443537", "n01629819", "n01641577"]
VICTIM_ARCH = {"caltech256": "resnet18", "cubs200": "resnet18", "indoor67": "resnet18", "diabetic5": "resnet18",
               "mnist": "lenet", "cifar10": "resnet18_cifar", "cifar100": "resnet18_cifar"}


def picture(path: Path, seed: int, fmt: str = "JPEG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, fmt)


def caltech256(root: Path, per_class: int = 27) -> None:
    base = root / "256_ObjectCategories"
    for c, name in enumerate(CALTECH, 1):
        for i in range(per_class):
            picture(base / f"{c:03d}.{name}" / f"{c:03d}_{i + 1:04d}.jpg", 1000 * c + i)
    for i in range(3):
        picture(base / "257.clutter" / f"257_{i + 1:04d}.jpg", i)
    (base / "003.camel" / "RENAME2").write_text("not an image")  # stray files exist in the real copy


def cubs200(root: Path, per_class: int = 4) -> None:
    base = root / "CUB_200_2011"
    images, labels, split = [], [], []
    for c, name in enumerate(CUBS, 1):
        for i in range(per_class):
            rel = f"{c:03d}.{name}/{name}_{i:04d}.jpg"
            picture(base / "images" / rel, 2000 * c + i)
            n = len(images) + 1
            images.append(f"{n} {rel}")
            labels.append(f"{n} {c}")
            split.append(f"{n} {int(i % 2 == 0)}")  # official-style: every other image is for training
    (base / "images.txt").write_text("\n".join(images) + "\n")
    (base / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (base / "train_test_split.txt").write_text("\n".join(split) + "\n")
    (base / "classes.txt").write_text("\n".join(f"{c} {c:03d}.{n}" for c, n in enumerate(CUBS, 1)) + "\n")


def indoor67(root: Path, per_class: int = 4) -> None:
    base = root / "indoor67"
    train, test = [], []
    for c, name in enumerate(INDOOR):
        for i in range(per_class):
            rel = f"{name}/{name}_{i:04d}.jpg"
            picture(base / "Images" / rel, 3000 * c + i)
            (test if i == 0 else train).append(rel)
    (base / "TrainImages.txt").write_text("\n".join(train) + "\n")
    (base / "TestImages.txt").write_text("\n".join(test) + "\n")


def diabetic5(root: Path, per_class: int = 202) -> None:
    base = root / "diabetic_retinopathy"
    rows = ["image,level"]
    for level in range(5):
        for i in range(per_class):
            name = f"{level * 1000 + i}_{'left' if i % 2 else 'right'}"
            picture(base / "train" / f"{name}.jpeg", 4000 + level * 1000 + i)
            rows.append(f"{name},{level}")
    (base / "trainLabels.csv").write_text("\n".join(rows) + "\n")


def ilsvrc(root: Path, per_class: int = 4) -> None:
    base = root / "ILSVRC2012"
    for c, wnid in enumerate(WNIDS):
        for i in range(per_class):
            picture(base / "train" / wnid / f"{wnid}_{i}.JPEG", 5000 + 100 * c + i)
    (base / "synset_words.txt").write_text("\n".join(f"{w} thing{i}, other name" for i, w in enumerate(WNIDS)) + "\n")


def openimages(root: Path, per_class: int = 4) -> None:
    for c, label in enumerate(OPENIMAGES):
        for i in range(per_class):
            picture(root / "openimages" / label / f"{c:02d}{i:014x}.jpg", 6000 + 100 * c + i)


def tiny_imagenet(root: Path, per_class: int = 4) -> None:
    base = root / "tiny-imagenet-200"
    for c, wnid in enumerate(TINY):
        for i in range(per_class):
            picture(base / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", 7000 + 100 * c + i)
    (base / "words.txt").write_text("\n".join(f"{w}\tfish{i}, other" for i, w in enumerate(TINY)) + "\n")


def idx(path: Path, array: np.ndarray) -> None:
    """An idx file (the MNIST format): magic 0x08 0x<ndim>, big-endian dims, uint8 data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def mnist_family(root: Path, n: int = 20) -> None:
    rng = np.random.default_rng(8)
    for folder in ("MNIST", "FashionMNIST", "KMNIST"):
        for part in ("train", "t10k"):
            idx(root / folder / "raw" / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
            idx(root / folder / "raw" / f"{part}-labels-idx1-ubyte", np.arange(n) % 10)
    for split, labels in (("byclass", np.arange(n) % 62), ("letters", 1 + np.arange(n) % 26)):
        for part in ("train", "test"):
            idx(root / "EMNIST" / "raw" / f"emnist-{split}-{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
            idx(root / "EMNIST" / "raw" / f"emnist-{split}-{part}-labels-idx1-ubyte", labels)


def _pickle(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(content, f)


def cifar(root: Path, n: int = 12) -> None:
    rng = np.random.default_rng(9)
    data = lambda: rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # noqa: E731
    base = root / "cifar-10-batches-py"
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        _pickle(base / name, {"data": data(), "labels": (np.arange(n) % 10).tolist()})
    _pickle(base / "batches.meta", {"label_names": [f"class{i}" for i in range(10)]})
    base = root / "cifar-100-python"
    for name in ("train", "test"):
        _pickle(base / name, {"data": data(), "fine_labels": (np.arange(n) % 100).tolist()})
    _pickle(base / "meta", {"fine_label_names": [f"fine{i}" for i in range(100)]})


def write_victim(root: Path, dataset: str, classes: list[str], seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = build_arch(VICTIM_ARCH[dataset], len(classes))
    return save_victim(root / "victims" / dataset / "checkpoint.pt", model, arch=VICTIM_ARCH[dataset],
                       num_classes=len(classes), class_names=classes, accuracy=0.5, dataset=dataset,
                       image_size=32, epoch=1)


def build(root: Path) -> Path:
    for writer in (caltech256, cubs200, indoor67, diabetic5, ilsvrc, openimages, tiny_imagenet, mnist_family, cifar):
        writer(root)
    victims = {"caltech256": CALTECH, "cubs200": CUBS, "indoor67": INDOOR,
               "diabetic5": ["no DR", "mild", "moderate", "severe", "proliferative DR"],
               "mnist": [str(i) for i in range(10)], "cifar10": [f"class{i}" for i in range(10)],
               "cifar100": [f"fine{i}" for i in range(100)]}
    for dataset, classes in victims.items():
        write_victim(root, dataset, classes)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A miniature data root with every layout and every world's victim (built once per session,
    removed at its end: the victims' weights take a few hundred MB)."""
    root = tmp_path_factory.getbasetemp() / "miniature_data"
    if not (root / "victims" / "cifar100" / "checkpoint.pt").exists():
        build(root)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def cifar_without_checksums(monkeypatch):
    """torchvision checks CIFAR files against the real archive's md5 sums; the miniature copies
    cannot match them, so only the checksum (not the existence check) is relaxed."""
    import os

    import torchvision.datasets.cifar as cifar_module
    monkeypatch.setattr(cifar_module, "check_integrity", lambda path, md5=None: os.path.isfile(path))
