"""OpenImages (Kuznetsova et al.) as the adversary's query set P_A, one folder per label.

The paper used 2k images for each of the ~600 "boxable" categories (supplement B.3); no
fixed archive of that subset is published, so the layout is the plain one every
downloader can produce: ``<data_root>/openimages/<label name>/*.jpg``. Labels are the
folders in sorted order.
"""
from __future__ import annotations

from .common import ImageFiles, class_folders, require, resolve_data_root
from .transforms import IMAGE_SIZE, paper_transform

NAME = "OpenImages"
FOLDER = "openimages"
LAYOUT = f"  {FOLDER}/Apple/0a1b2c3d4e5f6a7b.jpg …, {FOLDER}/Zebra/… (one folder per label)"
SOURCE = ("https://storage.googleapis.com/openimages/web/index.html (images of the boxable classes, "
          "e.g. with the OIDv4 toolkit, sorted into one folder per label)")


def load(data_root=None, *, image_size: int = IMAGE_SIZE) -> ImageFiles:
    """Every image under ``openimages/``, labelled by its folder."""
    root = require(resolve_data_root(data_root) / FOLDER, NAME, LAYOUT, SOURCE)
    return class_folders(root, paper_transform(image_size))
