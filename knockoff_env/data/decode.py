"""From image files to model inputs in batches, on the CPU or on the GPU.

:class:`Preprocess` is a model's evaluation preprocessing as data: resize, centre crop,
normalise (the paper's: resize to 256×256, crop 224, ImageNet mean/std; a timm model's: its
``pretrained_cfg``). It splits into ``pixels`` (uint8, the query resolution — what
``knockoff pack`` stores) and ``normalise`` (cheap, done where the batch is used), and
``pixels`` then ``normalise`` on a PIL image equals the torchvision transform bit for bit.

:class:`DecodedImageFiles` serves an :class:`~knockoff_env.data.common.ImageFiles` query set
a batch at a time: the files' bytes are read on the CPU, and decoded, resized, cropped and
normalised with ``torchvision.io`` — on the GPU with ``device="cuda"`` (nvJPEG, the whole
batch in one call), else on the CPU (the fallback, and the path the tests cover). Its pixels
differ slightly from Pillow's (another JPEG decoder and resampler), so pick one decoder per
study.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg, read_file
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms.v2 import functional as F2

from ..devices import resolve_device
from .transforms import IMAGE_SIZE, IMAGENET_MEAN, IMAGENET_STD, resize_for

INTERPOLATIONS = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
                  "nearest": InterpolationMode.NEAREST}


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing: resize, centre crop ``crop`` (h, w), normalise.

    ``resize``: an int resizes the shorter side to it (aspect kept, timm's default); a pair
    (h, w) resizes to exactly that (the paper's 256×256). ``interpolation``: a name in
    :data:`INTERPOLATIONS`.
    """
    resize: int | tuple[int, int]
    crop: tuple[int, int]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation={self.interpolation!r}; choose one of {tuple(INTERPOLATIONS)}")

    @classmethod
    def paper(cls, image_size: int = IMAGE_SIZE) -> "Preprocess":
        """The paper's query transform: resize to (256, 256)·s, centre crop 224·s, ImageNet mean/std."""
        side = resize_for(image_size)
        return cls((side, side), (int(image_size), int(image_size)))

    @property
    def _size(self) -> list[int]:
        return [self.resize] if isinstance(self.resize, int) else list(self.resize)

    def pixels(self, image) -> torch.Tensor:
        """A PIL image → (3, h, w) uint8 at the query resolution (resized with Pillow, as torchvision)."""
        image = TF.resize(image.convert("RGB"), self._size, INTERPOLATIONS[self.interpolation])
        return TF.pil_to_tensor(TF.center_crop(image, list(self.crop)))

    def pixels_from_tensor(self, image: torch.Tensor) -> torch.Tensor:
        """A decoded (3, H, W) uint8 tensor, on any device → (3, h, w) uint8 (antialiased resize)."""
        image = F2.resize(image, self._size, INTERPOLATIONS[self.interpolation], antialias=True)
        return F2.center_crop(image, list(self.crop))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """uint8 pixels (…, 3, h, w) → float32 model input, on the pixels' device."""
        mean = torch.as_tensor(self.mean, dtype=torch.float32, device=pixels.device).view(-1, 1, 1)
        std = torch.as_tensor(self.std, dtype=torch.float32, device=pixels.device).view(-1, 1, 1)
        return pixels.to(torch.float32).div(255).sub_(mean).div_(std)

    def __call__(self, image) -> torch.Tensor:
        """As a per-image transform: PIL image → normalised float tensor."""
        return self.normalise(self.pixels(image))

    def to_json(self) -> dict:
        return {"resize": self.resize, "crop": list(self.crop), "mean": list(self.mean), "std": list(self.std),
                "interpolation": self.interpolation}

    @classmethod
    def from_json(cls, data: dict) -> "Preprocess":
        resize = data["resize"] if isinstance(data["resize"], int) else tuple(data["resize"])
        return cls(resize, tuple(data["crop"]), tuple(data["mean"]), tuple(data["std"]), data["interpolation"])


def is_jpeg(data: torch.Tensor) -> bool:
    return data.numel() > 2 and int(data[0]) == 0xFF and int(data[1]) == 0xD8


def decode_batch(datas: list[torch.Tensor], preprocess: Preprocess, device: torch.device) -> torch.Tensor:
    """Encoded files (uint8 byte tensors on the CPU) → (n, 3, h, w) uint8 pixels on ``device``.

    On CUDA the JPEGs are decoded in one batched nvJPEG call; other formats (PNG…) are decoded
    on the CPU and moved. Raises RuntimeError for a file that cannot be decoded."""
    images: list[torch.Tensor | None] = [None] * len(datas)
    if device.type == "cuda":
        jpegs = [i for i, d in enumerate(datas) if is_jpeg(d)]
        if jpegs:
            decoded = decode_jpeg([datas[i] for i in jpegs], mode=ImageReadMode.RGB, device=device)
            for i, image in zip(jpegs, decoded):
                images[i] = image
    for i, data in enumerate(datas):
        if images[i] is None:
            images[i] = decode_image(data, mode=ImageReadMode.RGB).to(device, non_blocking=True)
    return torch.stack([preprocess.pixels_from_tensor(image) for image in images])


class DecodedImageFiles(Dataset):
    """An ImageFiles query set decoded with ``torchvision.io`` in batches (see the module doc).

    ``load_batch(index)`` (what the env's fetcher calls) returns normalised images on
    ``device``; ``__getitem__`` the same for one image, on the CPU. A file that cannot be
    decoded is served by the ImageFiles' own path (the next readable image of its label).
    """

    def __init__(self, files, preprocess: Preprocess | None = None, device: str | torch.device = "auto"):
        if not hasattr(files, "samples") or not hasattr(files, "image"):
            raise TypeError(f"DecodedImageFiles reads image files (an ImageFiles), not {type(files).__name__}")
        self.files, self.preprocess = files, preprocess or Preprocess.paper()
        self.device = resolve_device(device)
        self.samples, self.targets, self.classes = files.samples, files.targets, files.classes

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        return self._batch([int(index)], torch.device("cpu"))[0], self.samples[int(index)][1]

    def load_batch(self, index) -> torch.Tensor:
        """The images at ``index``, decoded and normalised on ``self.device``."""
        return self._batch([int(i) for i in index], self.device)

    def _batch(self, index: list[int], device: torch.device) -> torch.Tensor:
        datas = [read_file(self.samples[i][0]) for i in index]
        try:
            return self.preprocess.normalise(decode_batch(datas, self.preprocess, device))
        except RuntimeError:  # one file is broken: decode one by one, the broken ones by the files' path
            return torch.stack([self._one(i, data, device) for i, data in zip(index, datas)])

    def _one(self, i: int, data: torch.Tensor, device: torch.device) -> torch.Tensor:
        try:
            return self.preprocess.normalise(decode_batch([data], self.preprocess, device))[0]
        except RuntimeError as err:
            warnings.warn(f"torchvision cannot decode {self.samples[i][0]} ({err}); reading it with Pillow",
                          RuntimeWarning, stacklevel=4)
            return self.preprocess(self.files.image(i)).to(device)

    def subset(self, indices) -> "DecodedImageFiles":
        return DecodedImageFiles(self.files.subset(np.asarray(indices)), self.preprocess, self.device)
