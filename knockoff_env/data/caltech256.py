"""Caltech-256 (Griffin et al., 2007): a victim's data, 256 object categories.

Layout: ``<data_root>/256_ObjectCategories/NNN.name/*.jpg``; folder ``NNN`` is label
``NNN - 1``. The clutter class (257) is dropped. Split (paper): 25 test images per class,
drawn with :data:`~knockoff_env.data.common.SPLIT_SEED`; the rest is training data.
"""
from __future__ import annotations

from .common import ImageFiles, image_files, require, resolve_data_root, select_split, split_per_class
from .transforms import IMAGE_SIZE, paper_transform

NAME = "Caltech256"
FOLDER = "256_ObjectCategories"
LAYOUT = f"  {FOLDER}/001.ak47/001_0001.jpg … {FOLDER}/256.toad/…  (257.clutter is ignored)"
SOURCE = "https://data.caltech.edu/records/nyy15-4j048 (256_ObjectCategories.tar)"
CLUTTER = 257
TEST_PER_CLASS = 25


def load(split: str, data_root=None, *, image_size: int = IMAGE_SIZE, augment: bool = False) -> ImageFiles:
    """The ``"train"`` or ``"test"`` split (``"all"``: both)."""
    root = require(resolve_data_root(data_root) / FOLDER, NAME, LAYOUT, SOURCE)
    samples, classes = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        number, _, name = folder.name.partition(".")
        if not number.isdigit() or not name:
            raise ValueError(f"{NAME}: unexpected folder {folder}; class folders are named NNN.name")
        if int(number) == CLUTTER:
            continue
        if int(number) != len(classes) + 1:
            raise ValueError(f"{NAME}: expected class folder {len(classes) + 1:03d}.* but found {folder.name}; "
                             "the copy is incomplete")
        classes.append(name)
        samples += [(p, len(classes) - 1) for p in image_files(folder)]
    data = ImageFiles(samples, classes, paper_transform(image_size, augment))
    return select_split(data, split, lambda d: split_per_class(d.targets, TEST_PER_CLASS, NAME))

