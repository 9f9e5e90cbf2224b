"""A world from the data sources users already have: timm models and Hugging Face datasets.

    env = make_hub_env(victim="resnet34", victim_weights="victim.safetensors",
                       query_set="~/hf/imagenet-train", eval_set="~/hf/my-task-test",
                       knockoff="resnet34", knockoff_weights="resnet34-imagenet.pth")

Every image, query and evaluation alike, goes through the *victim's* preprocessing (its timm
``pretrained_cfg``): the adversary sends images in the format the API expects. A packed
query set (``knockoff pack``) may replace the Hugging Face one (``packed=PATH``).
"""
from __future__ import annotations

from functools import partial

from ..core.env import KnockoffEnv
from ..data.hf import HFImages
from ..data.packed import PackedImages
from ..models.timm import timm_model, timm_preprocess


def make_hub_env(*, victim: str, victim_weights, query_set=None, eval_set=None, knockoff: str | None = None,
                 knockoff_weights=None, num_classes: int | None = None, packed=None, split: str | None = "train",
                 eval_split: str | None = "test", image_column: str | None = None, label_column: str | None = None,
                 **kwargs) -> KnockoffEnv:
    """Victim and knockoff by timm name (local weights), query and eval sets from ``datasets``.

    ``knockoff`` defaults to the victim's architecture, ``knockoff_weights`` to a random init.
    ``num_classes`` defaults to the width of the victim's classifier in ``victim_weights``. Every other keyword goes to KnockoffEnv."""
    model = timm_model(victim, num_classes, victim_weights, strict=True)
    preprocess = timm_preprocess(model)
    columns = {"image_column": image_column, "label_column": label_column, "transform": preprocess}
    if (query_set is None) == (packed is None):
        raise ValueError("give the query set as query_set=<datasets source> or packed=<folder from knockoff pack>")
    if packed is not None:
        images = PackedImages(packed)
        if images.preprocess != preprocess:
            raise ValueError(f"{packed} was packed with {images.preprocess}, but the victim {victim} expects "
                             f"{preprocess}; pack it again with --timm {victim}")
    else:
        images = HFImages(query_set, split=split, **columns)
    test = None if eval_set is None else HFImages(eval_set, split=eval_split, **columns)
    classes = model.num_classes
    return KnockoffEnv(victim=model, query_set=images, eval_set=test,
                       knockoff=partial(timm_model, knockoff or victim, classes, knockoff_weights),
                       num_classes=classes, label_names=dict(enumerate(images.classes)), **kwargs)
