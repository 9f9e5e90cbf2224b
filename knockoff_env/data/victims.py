"""The victims' datasets by name: :func:`victim_data` is the one entry point for a victim's
train/test split (the paper's four datasets and the small-scale ones of supplement D.1)."""
from __future__ import annotations

from torch.utils.data import Dataset

from . import caltech256, cubs200, diabetic5, indoor67, small_scale
from .transforms import IMAGE_SIZE

PAPER_VICTIMS = {"caltech256": caltech256, "cubs200": cubs200, "indoor67": indoor67, "diabetic5": diabetic5}
SMALL_SCALE_VICTIMS = ("mnist", "cifar10", "cifar100")
VICTIM_DATASETS = (*PAPER_VICTIMS, *SMALL_SCALE_VICTIMS)


def victim_data(name: str, split: str, data_root=None, *, image_size: int | None = None,
                augment: bool = False, download: bool = False) -> Dataset:
    """The ``split`` (``"train"``/``"test"``) of victim dataset ``name`` (see :data:`VICTIM_DATASETS`).

    ``image_size`` applies to the paper's datasets (default 224); the small-scale ones keep
    their native 28/32 px. ``download`` applies to the torchvision ones.
    """
    if name in PAPER_VICTIMS:
        return PAPER_VICTIMS[name].load(split, data_root, image_size=image_size or IMAGE_SIZE, augment=augment)
    if name in SMALL_SCALE_VICTIMS:
        return small_scale.load(name, split, data_root, augment=augment, download=download)
    raise ValueError(f"unknown victim dataset {name!r}; choose one of {VICTIM_DATASETS}")
