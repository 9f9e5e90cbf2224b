"""Input transforms of the paper (supplement B.4), with the image size configurable.

Victim training: random ``image_size`` crops of the image resized to ``resize`` (256 for
224), horizontal flips, ImageNet mean/std. Queries, knockoff training and evaluation: resize
to ``resize``×``resize``, centre crop ``image_size``, ImageNet mean/std. ``resize`` keeps the
paper's 256:224 ratio at any size, so tests can run at 32 px.
"""
from __future__ import annotations

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224


def resize_for(image_size: int) -> int:
    """The side images are resized to before cropping ``image_size`` (256 for 224)."""
    if isinstance(image_size, bool) or int(image_size) != image_size or image_size < 8:
        raise ValueError(f"image_size={image_size!r} must be an integer ≥ 8 (paper: 224)")
    return round(int(image_size) * 256 / 224)


def victim_training_transform(image_size: int = IMAGE_SIZE) -> T.Compose:
    """Random crops + horizontal flips, for training the victim."""
    side = resize_for(image_size)
    return T.Compose([T.Resize((side, side)), T.RandomCrop(image_size), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def query_transform(image_size: int = IMAGE_SIZE) -> T.Compose:
    """Resize, centre crop, normalise: every image the victim or the knockoff sees outside victim training."""
    side = resize_for(image_size)
    return T.Compose([T.Resize((side, side)), T.CenterCrop(image_size),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def paper_transform(image_size: int = IMAGE_SIZE, augment: bool = False) -> T.Compose:
    return victim_training_transform(image_size) if augment else query_transform(image_size)
