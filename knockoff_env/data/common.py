"""Shared pieces of the dataset loaders: where the data lives, missing-data errors, and a
map-style dataset of image files that survives unreadable images.

Unreadable images: files are only opened when indexed (listing a folder never decodes
anything). When a file cannot be decoded, :class:`ImageFiles` warns, records the path in
``unreadable`` and answers with the next readable image *of the same label*, so labels,
pools and indices stay valid and a long run never stops on one bad JPEG.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
SPLIT_SEED = 0  # every random split in this package draws from this seed: splits never change
DATA_ENV = "KNOCKOFF_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not where its loader expects it."""


def resolve_data_root(data_root: str | os.PathLike | None) -> Path:
    """``data_root`` itself, else ``$KNOCKOFF_DATA``; neither is a clear error."""
    if data_root is None:
        data_root = os.environ.get(DATA_ENV)
        if not data_root:
            raise ValueError(f"no data_root given and ${DATA_ENV} is not set; pass data_root=... "
                             f"(--data-root on the command line) or export {DATA_ENV}=/path/to/datasets")
    return Path(data_root).expanduser()


def require(path: Path, name: str, layout: str, source: str) -> Path:
    """``path`` if it exists, else a :class:`DatasetNotFoundError` naming the layout and source."""
    if not path.exists():
        raise DatasetNotFoundError(
            f"{name} not found: {path} does not exist.\nExpected layout under data_root:\n{layout}\n"
            f"{name} is published at {source}; unpack it there (data_root is the data_root "
            f"argument, --data-root, or ${DATA_ENV}).")
    return path


def image_files(folder: Path) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name (so indices never change)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def split_per_class(targets: np.ndarray, test_per_class: int, name: str,
                    seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices with ``test_per_class`` images of every class drawn for testing.

    Classes are visited in label order and each class's images (in listing order) are
    permuted by one generator seeded with ``seed``: the split depends only on the listing.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(targets):
        members = np.flatnonzero(targets == label)
        if len(members) <= test_per_class:
            raise ValueError(f"{name}: class {label} has {len(members)} images, but the split holds out "
                             f"{test_per_class} per class for testing and needs more; the copy is incomplete")
        members = members[rng.permutation(len(members))]
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


class ImageFiles(Dataset):
    """Image files with integer labels: ``(transform(image), label)`` per index.

    Attributes: ``samples`` [(path, label)], ``targets`` (int64 array, read by KnockoffEnv
    without decoding images), ``classes`` (name of each label id), ``unreadable`` (paths
    found corrupt so far, in this process).
    """

    def __init__(self, samples: Sequence[tuple[str, int]], classes: Sequence[str],
                 transform: Callable | None = None):
        self.samples = [(str(p), int(y)) for p, y in samples]
        self.targets = np.asarray([y for _, y in self.samples], dtype=np.int64)
        self.classes = list(classes)
        self.transform = transform
        self.unreadable: set[str] = set()
        self._same_label: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        label = self.samples[index][1]
        image = self._load(index)
        return (self.transform(image) if self.transform is not None else image), label

    def image(self, index: int) -> Image.Image:
        """The decoded (untransformed) RGB image at ``index`` (or the next readable one of its label)."""
        return self._load(int(index))

    def subset(self, indices: Sequence[int] | np.ndarray) -> "ImageFiles":
        """The images at ``indices`` (same classes and transform)."""
        return ImageFiles([self.samples[int(i)] for i in indices], self.classes, self.transform)

    def _load(self, index: int) -> Image.Image:
        """The image at ``index``, or the next readable one with the same label."""
        label = self.samples[index][1]
        if label not in self._same_label:
            self._same_label[label] = np.flatnonzero(self.targets == label)
        candidates = self._same_label[label]
        start = int(np.searchsorted(candidates, index))
        for i in np.roll(candidates, -start):
            path = self.samples[int(i)][0]
            if path in self.unreadable:
                continue
            try:
                with Image.open(path) as image:
                    return image.convert("RGB")
            except (OSError, ValueError, SyntaxError) as err:  # what PIL raises for broken files
                self.unreadable.add(path)
                warnings.warn(f"skipping unreadable image {path} ({err}); a readable image of the same "
                              f"label is used instead ({len(self.unreadable)} skipped so far)",
                              RuntimeWarning, stacklevel=3)
        raise RuntimeError(f"every image of label {label} ({self.classes[label]!r}) is unreadable; "
                           "the dataset copy is broken, re-extract it")


def select_split(data: ImageFiles, split: str, splitter) -> ImageFiles:
    """``data`` restricted to ``split`` by ``splitter(data) -> (train indices, test indices)``."""
    if split == "all":
        return data
    if split not in ("train", "test"):
        raise ValueError(f"split={split!r}; choose 'train', 'test' or 'all'")
    train, test = splitter(data)
    return data.subset(np.asarray(train if split == "train" else test))


def class_folders(root: Path, transform: Callable | None, names: dict[str, str] | None = None,
                  images_below: str = "") -> ImageFiles:
    """One label per sub-folder of ``root`` (sorted), its images in ``<folder>/<images_below>``."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise ValueError(f"{root} has no class folders; expected one sub-folder of images per class")
    samples = [(p, label) for label, folder in enumerate(folders)
               for p in image_files(folder / images_below)]
    classes = [(names or {}).get(f.name, f.name) for f in folders]
    return ImageFiles(samples, classes, transform)

