"""CUB-200-2011 (Wah et al., 2011), the paper's CUBS200: a victim's data, 200 bird species.

Layout: ``<data_root>/CUB_200_2011/`` with ``images.txt`` (``<id> <relative path>``),
``image_class_labels.txt`` (``<id> <class 1..200>``), ``train_test_split.txt``
(``<id> <1 = train, 0 = test>``), ``classes.txt`` (``<class> <NNN.name>``) and
``images/``. Split: the official one (about 30 train and 30 test images per species).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .common import ImageFiles, require, resolve_data_root, select_split
from .transforms import IMAGE_SIZE, paper_transform

NAME = "CUBS200"
FOLDER = "CUB_200_2011"
LAYOUT = (f"  {FOLDER}/images.txt, image_class_labels.txt, train_test_split.txt, classes.txt\n"
          f"  {FOLDER}/images/001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg …")
SOURCE = "https://www.vision.caltech.edu/datasets/cub_200_2011/ (CUB_200_2011.tgz)"


def _table(path: Path) -> dict[str, str]:
    """``{first field: rest of the line}`` of one of the dataset's whitespace-separated index files."""
    require(path, NAME, LAYOUT, SOURCE)
    rows = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            key, _, value = line.strip().partition(" ")
            if not value:
                raise ValueError(f"{path}:{number}: expected '<id> <value>', got {line!r}")
            rows[key] = value.strip()
    return rows


def load(split: str, data_root=None, *, image_size: int = IMAGE_SIZE, augment: bool = False) -> ImageFiles:
    """The official ``"train"`` or ``"test"`` split (``"all"``: both)."""
    root = require(resolve_data_root(data_root) / FOLDER, NAME, LAYOUT, SOURCE)
    paths, labels = _table(root / "images.txt"), _table(root / "image_class_labels.txt")
    is_train, class_rows = _table(root / "train_test_split.txt"), _table(root / "classes.txt")
    classes = [class_rows[k].partition(".")[2] or class_rows[k] for k in sorted(class_rows, key=int)]
    ids = sorted(paths, key=int)
    for table, file in ((labels, "image_class_labels.txt"), (is_train, "train_test_split.txt")):
        missing = [i for i in ids if i not in table]
        if missing:
            raise ValueError(f"{NAME}: image ids {missing[:5]} of images.txt are missing from {file}")
    samples = [(root / "images" / paths[i], int(labels[i]) - 1) for i in ids]
    bad = sorted({y for _, y in samples if not 0 <= y < len(classes)})
    if bad:
        raise ValueError(f"{NAME}: class ids {[y + 1 for y in bad]} are not in classes.txt")
    data = ImageFiles(samples, classes, paper_transform(image_size, augment))
    train = np.asarray([is_train[i] == "1" for i in ids])
    return select_split(data, split, lambda _: (np.flatnonzero(train), np.flatnonzero(~train)))
