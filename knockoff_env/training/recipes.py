"""Recipes for training the knockoff: the offline phase (b) and the matching online step size.

The paper's recipe (offline SGD lr 0.01, momentum 0.5, ×0.1 every 60 epochs, 100 epochs;
online lr 0.0005) fine-tunes knockoffs initialised from ImageNet weights. A randomly
initialised network trained with it barely leaves chance in 30 epochs, and its online
knockoff never does, so worlds whose knockoff starts from scratch get ``"scratch"``:
SGD with Nesterov momentum 0.9, lr 0.1 after a one-epoch linear warm-up, cosine decay to 0,
weight decay 5e-4, and online lr 0.01 (chosen by measurement: ``benchmarks/offline.py``).

``resolve_recipe("auto", pretrained=...)`` picks between them; every field can be overridden
by name (``resolve_recipe("scratch", lr=0.05)``).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
from torch import nn

from ..checks import is_finite_number, is_integer

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "constant")
AUGMENTATIONS = ("none", "crop", "crop+flip")


def _choice(field: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"recipe {field}={value!r}; choose one of {allowed}")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How the knockoff is trained: offline (every field but ``online_*``) and online (``online_*``).

    ``schedule``: ``"step"`` multiplies the lr by ``gamma`` every ``step_size`` epochs (the
    paper), ``"cosine"`` decays it to 0 over the epochs; either starts with ``warmup_epochs``
    of linear warm-up. ``augment``: random crops (shifts by up to 1/8 of the side) and, with
    ``"crop+flip"``, horizontal flips of the transfer images; the victim's answers are reused.
    """
    name: str = "custom"
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.5
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "step"
    step_size: int = 60
    gamma: float = 0.1
    warmup_epochs: float = 0.0
    epochs: int = 100
    batch_size: int = 64
    augment: str = "none"
    online_lr: float = 5e-4
    online_momentum: float = 0.5

    def __post_init__(self):
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("augment", self.augment, AUGMENTATIONS)
        for field in ("lr", "weight_decay", "gamma", "warmup_epochs", "online_lr"):
            value = getattr(self, field)
            if not is_finite_number(value) or value < 0:
                raise ValueError(f"recipe {field}={value!r} must be a finite number ≥ 0")
        for field in ("momentum", "online_momentum"):
            value = getattr(self, field)
            if not is_finite_number(value) or not 0 <= value < 1:
                raise ValueError(f"recipe {field}={value!r} must be a number in [0, 1)")
        for field in ("epochs", "batch_size", "step_size"):
            value = getattr(self, field)
            if not is_integer(value) or value < 1:
                raise ValueError(f"recipe {field}={value!r} must be a positive integer")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov=True needs optimizer='sgd' with momentum > 0")

    def replace(self, **overrides) -> "Recipe":
        """This recipe with some fields changed; unknown field names are refused."""
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(self)})
        if unknown:
            raise ValueError(f"unknown recipe field(s) {unknown}; the fields are "
                             f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **overrides) if overrides else self

    def optimizer_for(self, model: nn.Module) -> torch.optim.Optimizer:
        """The offline optimiser over ``model``'s parameters."""
        if self.optimizer == "adamw":
            return torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        return torch.optim.SGD(model.parameters(), lr=self.lr, momentum=self.momentum, nesterov=self.nesterov,
                               weight_decay=self.weight_decay)

    def lr_factor(self, epoch: float, epochs: int | None = None) -> float:
        """Multiplier of ``lr`` at (fractional) ``epoch`` of a run of ``epochs`` (default: the recipe's)."""
        epochs = epochs or self.epochs
        if self.warmup_epochs and epoch < self.warmup_epochs:
            return (epoch + 1e-3) / self.warmup_epochs
        if self.schedule == "step":
            return self.gamma ** int(epoch // self.step_size)
        if self.schedule == "cosine":
            span = max(epochs - self.warmup_epochs, 1e-9)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (epoch - self.warmup_epochs) / span)))
        return 1.0


RECIPES: dict[str, Recipe] = {
    "paper": Recipe(name="paper"),
    "scratch": Recipe(name="scratch", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine",
                      warmup_epochs=1.0, epochs=30, batch_size=32, online_lr=0.01, online_momentum=0.5),
}


def resolve_recipe(recipe: str | Recipe | Mapping = "auto", *, pretrained: bool | None = None,
                   **overrides) -> Recipe:
    """The :class:`Recipe` that ``recipe`` names, with ``overrides`` applied.

    ``"auto"``: ``"paper"`` for a knockoff initialised from pretrained weights
    (``pretrained=True``), else ``"scratch"`` (``False`` or unknown: a randomly initialised
    network is what a custom world's factory usually builds). A mapping is
    ``{"base": name, **fields}``.
    """
    if isinstance(recipe, Mapping):
        fields = dict(recipe)
        return resolve_recipe(fields.pop("base", "auto"), pretrained=pretrained, **{**fields, **overrides})
    if isinstance(recipe, Recipe):
        return recipe.replace(**overrides)
    if recipe == "auto":
        recipe = "paper" if pretrained else "scratch"
    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r}; choose 'auto', one of {tuple(RECIPES)}, a Recipe, or "
                         "{'base': name, field: value, ...}")
    return RECIPES[recipe].replace(**overrides)
