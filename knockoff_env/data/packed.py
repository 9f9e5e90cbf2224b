"""Pre-decoded query sets: a query set stored once as uint8 pixels at the query resolution.

A sweep that attacks with one P_A many times decodes every JPEG again in every attack.
``knockoff pack`` decodes them once and writes:

* ``shard-00000.npy`` …: ``(n, 3, h, w)`` uint8 arrays (NumPy's own format, memory-mapped
  when read, so only the pages of the drawn images are ever read);
* ``labels.npy``: the int64 label of every image, in the source's order;
* ``index.json``: ``{"format": "knockoff-packed", "version": 1, "count", "shard_size",
  "shards": [file names], "classes", "preprocess": {resize, crop, mean, std, interpolation},
  "source"}``.

:class:`PackedImages` reads them back as a query set with zero decoding: a batch is one
gather from the memory map, and normalising (on the GPU when ``device`` is CUDA) is all that
is left. Image ``i`` of the pack is image ``i`` of its source with the same label, and its
pixels are what the source's transform computes before normalising, so with Pillow
preprocessing (the paper worlds' default) a packed query set gives the same transfer set,
answers included, as the folder it came from.
"""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..devices import resolve_device
from .decode import Preprocess
from .query_set import dataset_labels

FORMAT, VERSION, INDEX = "knockoff-packed", 1, "index.json"


def pack(source, out: str | os.PathLike, preprocess: Preprocess, *, shard_size: int = 4096, workers: int = 2,
         progress: bool = True, description: str = "") -> Path:
    """Write ``source`` (a dataset with ``image(i)`` → PIL image, ``targets``, ``classes``) to
    ``out`` as a packed query set; returns ``out``. Refuses a folder that already holds one."""
    out = Path(out)
    if (out / INDEX).exists():
        raise ValueError(f"{out} already holds a packed query set; remove it or choose another folder")
    if not callable(getattr(source, "image", None)):
        raise TypeError(f"cannot pack a {type(source).__name__}: it needs image(i) returning the decoded image")
    if isinstance(shard_size, bool) or int(shard_size) != shard_size or shard_size < 1:
        raise ValueError(f"shard_size={shard_size!r} must be a positive integer")
    out.mkdir(parents=True, exist_ok=True)
    labels = dataset_labels(source)
    count, (h, w) = len(labels), preprocess.crop
    shards = []
    with ThreadPoolExecutor(max(1, int(workers))) as pool, \
            tqdm(total=count, unit="image", disable=not progress, desc="pack") as bar:
        for number, start in enumerate(range(0, count, shard_size)):
            stop = min(start + shard_size, count)
            name = f"shard-{number:05d}.npy"
            shard = np.lib.format.open_memmap(out / (name + ".tmp"), "w+", np.uint8, (stop - start, 3, h, w))
            for row, pixels in enumerate(pool.map(lambda i: preprocess.pixels(source.image(i)).numpy(),
                                                  range(start, stop))):
                shard[row] = pixels
                bar.update(1)
            shard.flush()
            del shard
            os.replace(out / (name + ".tmp"), out / name)
            shards.append(name)
    np.save(out / "labels.npy", labels)
    index = {"format": FORMAT, "version": VERSION, "count": count, "shard_size": int(shard_size),
             "shards": shards, "classes": [str(c) for c in getattr(source, "classes", [])],
             "preprocess": preprocess.to_json(), "source": description}
    (out / (INDEX + ".tmp")).write_text(json.dumps(index, indent=1))
    os.replace(out / (INDEX + ".tmp"), out / INDEX)  # written last: a pack without it is unfinished
    return out


class PackedImages(Dataset):
    """A packed query set (see the module doc): ``(normalised image, label)`` per index, and
    ``load_batch(index)`` normalised on ``device`` (the uint8 pixels travel, 4× less than floats)."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu"):
        self.path = Path(path).expanduser()
        index_path = self.path / INDEX
        if not index_path.exists():
            raise FileNotFoundError(f"{index_path} not found: {self.path} is not a packed query set "
                                    "(or its packing did not finish); write one with `knockoff pack`")
        index = json.loads(index_path.read_text())
        if index.get("format") != FORMAT or index.get("version") != VERSION:
            raise ValueError(f"{index_path} is not a {FORMAT} v{VERSION} index")
        self.preprocess = Preprocess.from_json(index["preprocess"])
        self.shard_size, self.classes, self.source = int(index["shard_size"]), index["classes"], index["source"]
        self.shards = [np.load(self.path / name, mmap_mode="r") for name in index["shards"]]
        self.targets = np.load(self.path / "labels.npy")
        if sum(len(s) for s in self.shards) != index["count"] or len(self.targets) != index["count"]:
            raise ValueError(f"{self.path}: the shards or labels do not hold the {index['count']} images "
                             "its index promises; the pack is damaged, write it again")
        self.device = resolve_device(device)

    @property
    def image_size(self) -> int:
        return int(self.preprocess.crop[0])

    def __len__(self) -> int:
        return len(self.targets)

    def pixels(self, index) -> torch.Tensor:
        """uint8 pixels ``(n, 3, h, w)`` of the images at ``index`` (one gather per shard)."""
        index = np.asarray(index, np.int64)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"image index out of range for a packed query set of {len(self)} images")
        shard, row = np.divmod(index, self.shard_size)
        out = np.empty((len(index), *self.shards[0].shape[1:]), np.uint8)
        for s in np.unique(shard):
            mine = shard == s
            out[mine] = self.shards[s][np.sort(row[mine])][np.argsort(np.argsort(row[mine]))]
        return torch.from_numpy(out)

    def __getitem__(self, i: int):
        return self.preprocess.normalise(self.pixels([int(i)])[0]), int(self.targets[int(i)])

    def load_batch(self, index) -> torch.Tensor:
        """The images at ``index``, normalised on ``self.device``."""
        return self.preprocess.normalise(self.pixels(index).to(self.device, non_blocking=True))
