"""The image options of data-backed worlds: a packed copy of the query set, or batched decoding."""
from __future__ import annotations

import numpy as np

from ..data.decode import DecodedImageFiles, Preprocess
from ..data.packed import PackedImages
from ..data.query_set import dataset_labels

DECODERS = ("pil", "cpu", "cuda", "auto")


def fast_query_set(images, packed, decode: str, image_size: int, device):
    """``images`` (an ImageFiles query set) as the world serves it.

    ``packed``: the folder ``knockoff pack`` wrote from this query set; it must hold the same
    labels in the same order at ``image_size``. ``decode``: ``"pil"`` keeps Pillow decoding per
    image; ``"cpu"``/``"cuda"``/``"auto"`` decode batches with torchvision.io on that device."""
    if decode not in DECODERS:
        raise ValueError(f"decode={decode!r}; choose one of {DECODERS}")
    if packed is not None:
        if decode != "pil":
            raise ValueError("packed query sets need no decoding; drop decode=... or packed=...")
        pack = PackedImages(packed, device)
        if not np.array_equal(pack.targets, dataset_labels(images)):
            raise ValueError(f"{packed} does not hold this query set's images ({len(pack)} packed, "
                             f"{len(images)} in the query set, or other labels); pack it with knockoff pack")
        if pack.preprocess != Preprocess.paper(image_size):
            raise ValueError(f"{packed} was packed as {pack.preprocess}, not the paper's preprocessing at "
                             f"{image_size} px; pack it again with --image-size {image_size}")
        pack.classes = list(images.classes)
        return pack
    if decode == "pil":
        return images
    return DecodedImageFiles(images, Preprocess.paper(image_size), device if decode == "auto" else decode)
