"""Kaggle Diabetic Retinopathy Detection, the paper's Diabetic5: a victim's data, 5 grades.

Layout: ``<data_root>/diabetic_retinopathy/train/<image>.jpeg`` and
``trainLabels.csv`` (columns ``image,level``; level 0–4). Only Kaggle's labelled train part
is used. Split (paper): 200 test images per grade, drawn with
:data:`~knockoff_env.data.common.SPLIT_SEED`; the rest is training data.
"""
from __future__ import annotations

import csv

from .common import ImageFiles, require, resolve_data_root, select_split, split_per_class
from .transforms import IMAGE_SIZE, paper_transform

NAME = "Diabetic5"
FOLDER = "diabetic_retinopathy"
LAYOUT = (f"  {FOLDER}/trainLabels.csv  (header 'image,level', rows like '10_left,0')\n"
          f"  {FOLDER}/train/10_left.jpeg …")
SOURCE = "https://www.kaggle.com/c/diabetic-retinopathy-detection/data (train.zip.*, trainLabels.csv.zip)"
CLASSES = ["no DR", "mild", "moderate", "severe", "proliferative DR"]
TEST_PER_CLASS = 200


def load(split: str, data_root=None, *, image_size: int = IMAGE_SIZE, augment: bool = False) -> ImageFiles:
    """The ``"train"`` or ``"test"`` split (``"all"``: both)."""
    root = require(resolve_data_root(data_root) / FOLDER, NAME, LAYOUT, SOURCE)
    table = require(root / "trainLabels.csv", NAME, LAYOUT, SOURCE)
    images = require(root / "train", NAME, LAYOUT, SOURCE)
    samples = []
    with open(table, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image", "level"} <= set(reader.fieldnames):
            raise ValueError(f"{table}: expected the columns 'image,level', got {reader.fieldnames}")
        for number, row in enumerate(reader, 2):
            level = row["level"].strip()
            if level not in {"0", "1", "2", "3", "4"}:
                raise ValueError(f"{table}:{number}: level {level!r} is not a grade 0–4")
            samples.append((images / f"{row['image'].strip()}.jpeg", int(level)))
    data = ImageFiles(samples, CLASSES, paper_transform(image_size, augment))
    return select_split(data, split, lambda d: split_per_class(d.targets, TEST_PER_CLASS, NAME))
