"""ILSVRC-2012 training images: the adversary's query set P_A = ILSVRC (1000 labels).

Layout: ``<data_root>/ILSVRC2012/train/nXXXXXXXX/*.JPEG``, one folder per WordNet id.
Labels are the folders in sorted order — the standard ILSVRC class index, the one
ImageNet-pretrained models use. Label names come from an optional ``synset_words.txt``
beside ``train/`` (lines ``n01440764 tench, Tinca tinca``), else the WordNet ids.
"""
from __future__ import annotations

from pathlib import Path

from .common import ImageFiles, class_folders, require, resolve_data_root
from .transforms import IMAGE_SIZE, paper_transform

NAME = "ILSVRC"
FOLDER = "ILSVRC2012"
LAYOUT = (f"  {FOLDER}/train/n01440764/n01440764_10026.JPEG … (one folder per class)\n"
          f"  {FOLDER}/synset_words.txt  (optional: 'n01440764 tench, Tinca tinca' per line)")
SOURCE = "https://image-net.org/download-images.php (ILSVRC2012_img_train.tar, one tar per class inside)"


def load(data_root=None, *, image_size: int = IMAGE_SIZE) -> ImageFiles:
    """Every training image of ILSVRC-2012, with its class index."""
    root = require(resolve_data_root(data_root) / FOLDER, NAME, LAYOUT, SOURCE)
    return class_folders(require(root / "train", NAME, LAYOUT, SOURCE), paper_transform(image_size),
                         _names(root / "synset_words.txt"))


def _names(path: Path) -> dict[str, str] | None:
    if not path.exists():
        return None
    rows = (line.strip().partition(" ") for line in path.read_text().splitlines() if line.strip())
    return {wnid: words.split(",")[0].strip() or wnid for wnid, _, words in rows}
