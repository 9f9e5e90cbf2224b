"""MIT Indoor-67 (Quattoni & Torralba, 2009): a victim's data, 67 indoor scene types.

Layout: ``<data_root>/indoor67/Images/<class>/<file>.jpg`` (from ``indoorCVPR_09.tar``)
with the official split files ``TrainImages.txt`` and ``TestImages.txt`` beside
``Images/`` (lines ``<class>/<file>.jpg``; 80 train and 20 test images per class). Labels
are the class folders in sorted order.
"""
from __future__ import annotations

from pathlib import Path

from .common import ImageFiles, require, resolve_data_root
from .transforms import IMAGE_SIZE, paper_transform

NAME = "Indoor67"
FOLDER = "indoor67"
LAYOUT = (f"  {FOLDER}/Images/airport_inside/airport_inside_0001.jpg …\n"
          f"  {FOLDER}/TrainImages.txt, {FOLDER}/TestImages.txt  (lines like 'kitchen/int474.jpg')")
SOURCE = "https://web.mit.edu/torralba/www/indoor.html (indoorCVPR_09.tar, TrainImages.txt, TestImages.txt)"
SPLIT_FILES = {"train": "TrainImages.txt", "test": "TestImages.txt"}


def load(split: str, data_root=None, *, image_size: int = IMAGE_SIZE, augment: bool = False) -> ImageFiles:
    """The official ``"train"`` or ``"test"`` split (``"all"``: both)."""
    if split not in (*SPLIT_FILES, "all"):
        raise ValueError(f"split={split!r}; choose 'train', 'test' or 'all'")
    root = require(resolve_data_root(data_root) / FOLDER, NAME, LAYOUT, SOURCE)
    images = require(root / "Images", NAME, LAYOUT, SOURCE)
    classes = sorted(p.name for p in images.iterdir() if p.is_dir())
    label = {name: i for i, name in enumerate(classes)}
    samples = []
    for part in (("train", "test") if split == "all" else (split,)):
        samples += _listed(root / SPLIT_FILES[part], images, label)
    return ImageFiles(samples, classes, paper_transform(image_size, augment))


def _listed(split_file: Path, images: Path, label: dict[str, int]) -> list[tuple[Path, int]]:
    require(split_file, NAME, LAYOUT, SOURCE)
    samples = []
    for number, line in enumerate(split_file.read_text().splitlines(), 1):
        entry = line.strip()
        if not entry:
            continue
        name = entry.split("/")[0]
        if name not in label or "/" not in entry:
            raise ValueError(f"{split_file}:{number}: {entry!r} is not '<class>/<file>' of a class in {images}")
        samples.append((images / entry, label[name]))
    return samples
