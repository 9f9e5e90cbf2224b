"""Query sets and eval sets from Hugging Face ``datasets``: any dataset with an image column
and an integer label column.

``source`` is a ``datasets.Dataset`` (or ``DatasetDict`` with ``split``), a folder written by
``save_to_disk``, or a dataset name, loaded through ``datasets.load_dataset`` and its cache
(set ``HF_HUB_OFFLINE=1`` to forbid downloads). Labels are read from the label column without
decoding any image; images are decoded only when indexed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
from torch.utils.data import Dataset

LABEL_COLUMNS = ("label", "labels", "fine_label", "target")
DISK_MARKERS = ("dataset_info.json", "state.json", "dataset_dict.json")


def load_hf(source, split: str | None = None):
    """``source`` as a ``datasets.Dataset`` (see the module doc)."""
    import datasets

    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir() and any((path / m).exists() for m in DISK_MARKERS):
            source = datasets.load_from_disk(str(path))
        elif path.exists():
            raise ValueError(f"{path} is not a dataset written by datasets' save_to_disk "
                             f"(none of {DISK_MARKERS} inside)")
        else:
            source = datasets.load_dataset(str(source), split=split)
    if isinstance(source, datasets.DatasetDict):
        if split is None or split not in source:
            raise ValueError(f"the dataset has splits {list(source)}; choose one with split=...")
        source = source[split]
    if not isinstance(source, datasets.Dataset):
        raise TypeError(f"expected a datasets.Dataset, a save_to_disk folder or a dataset name, "
                        f"got {type(source).__name__}")
    return source


class HFImages(Dataset):
    """A Hugging Face dataset as ``(transform(image), label)`` pairs, with ``targets``,
    ``classes`` and ``image(i)`` (the decoded PIL image, for ``knockoff pack``).

    Args:
        source: see :func:`load_hf`. split: the split of a DatasetDict or named dataset.
        image_column / label_column: default: the first column of type ``Image`` / the first of
            ``label``, ``labels``, ``fine_label``, ``target`` (or of type ``ClassLabel``).
        transform: PIL image → tensor (e.g. :class:`knockoff_env.decode.Preprocess`).
    """

    def __init__(self, source, *, split: str | None = None, image_column: str | None = None,
                 label_column: str | None = None, transform: Callable | None = None):
        import datasets

        self.data = load_hf(source, split)
        features = self.data.features
        image_column = image_column or next((k for k, f in features.items() if isinstance(f, datasets.Image)), None)
        label_column = label_column or next(
            (k for k in features if k in LABEL_COLUMNS or isinstance(features[k], datasets.ClassLabel)), None)
        for role, column in (("image", image_column), ("label", label_column)):
            if column is None or column not in features:
                raise ValueError(f"no {role} column {column!r} in the dataset's columns {list(features)}; "
                                 f"name it with {role}_column=...")
        self.image_column, self.label_column, self.transform = image_column, label_column, transform
        self.targets = np.asarray(self.data.with_format("numpy")[label_column], dtype=np.int64).reshape(-1)
        if len(self.targets) and self.targets.min() < 0:
            raise ValueError(f"column {label_column!r} holds negative labels; every image needs a label id ≥ 0")
        names = getattr(features[label_column], "names", None)
        self.classes = list(names) if names else [str(z) for z in range(int(self.targets.max(initial=-1)) + 1)]

    def __len__(self) -> int:
        return len(self.targets)

    def image(self, index: int):
        """The decoded RGB image at ``index``."""
        return self.data[int(index)][self.image_column].convert("RGB")

    def __getitem__(self, index: int):
        image = self.image(index)
        return (self.transform(image) if self.transform is not None else image), int(self.targets[int(index)])
