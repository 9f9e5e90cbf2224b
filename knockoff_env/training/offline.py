"""Phase (b), the offline phase: train a knockoff on the transfer set with a :class:`Recipe`,
judged as an attacker can judge it.

A fraction of the transfer set (default 10 %, seeded) is held out of training; after every
epoch the knockoff's agreement with the victim's answers on those queries is measured, and
the best epoch's weights are kept. A fit that stays near chance raises
:class:`~knockoff_env.validation.NearChanceWarning` saying what to try.

In-memory transfer sets are sliced directly; a Dataset (e.g. a folder of images at paper
scale) goes through a DataLoader with ``workers`` processes and, on CUDA, pinned memory.
``bf16`` (autocast) and ``channels_last`` apply to the knockoff's forward pass.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

from ..checks import is_integer
from .estimate import agreement, chance_agreement, is_near_chance, near_chance_advice, split_holdout, warn_near_chance
from .losses import soft_cross_entropy
from .online import batches, predict
from .recipes import Recipe, resolve_recipe


@dataclasses.dataclass
class OfflineFit:
    """What the offline phase produced and how well it fits, by the attacker's own measure.

    ``heldout_agreement``: the kept epoch's agreement with the victim on held-out queries
    (NaN when nothing was held out); ``fit_agreement``, only then, is the same measure on the
    training queries. ``history``: one dict per epoch (``epoch``, ``loss``, ``lr``, ``heldout_agreement``).
    """
    model: nn.Module
    recipe: Recipe
    epochs: int
    best_epoch: int
    heldout_agreement: float
    fit_agreement: float
    chance: float
    near_chance: bool
    heldout_size: int
    train_size: int
    seconds_per_epoch: float
    history: list[dict]
    advice: str = ""

    def summary(self) -> dict:
        """The JSON-friendly part (everything but the model and the recipe object)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("model", "recipe")}
        out["recipe"] = dataclasses.asdict(self.recipe)
        return out


def augment_batch(images: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    """Random crops (shifts of up to 1/8 of the side, zero-padded) and, for ``"crop+flip"``,
    horizontal flips of a batch of images (N, C, H, W); other shapes pass through."""
    if mode == "none" or images.ndim != 4:
        return images
    n, c, h, w = images.shape
    pad = max(1, h // 8)
    padded = F.pad(images, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, n), generator=generator)).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(c, device=images.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    if mode == "crop+flip":
        flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)
        out = torch.where(flip[:, None, None, None], out.flip(-1), out)
    return out


def fit_offline(model: nn.Module, images: torch.Tensor | Dataset, targets: torch.Tensor, *,
                device: torch.device, recipe: str | Recipe = "paper", pretrained: bool | None = None,
                holdout: float = 0.1, seed: int = 0, progress: bool = False, workers: int = 0,
                bf16: bool = False, channels_last: bool = False,
                on_epoch: Callable[[dict], None] | None = None, warn: bool = True, **overrides) -> OfflineFit:
    """Train ``model`` on (images, victim answers ``targets``) with ``recipe`` (any field overridable,
    e.g. ``epochs=30, lr=0.05``), holding ``holdout`` of the queries out to judge every epoch.

    Returns an :class:`OfflineFit` whose ``model`` holds the best epoch's weights (by held-out
    agreement; the last epoch when nothing is held out), in eval mode.
    """
    recipe = resolve_recipe(recipe, pretrained=pretrained, **overrides)
    if not is_integer(workers) or workers < 0:
        raise ValueError(f"workers={workers!r} must be a non-negative integer number of loader processes")
    targets = torch.as_tensor(targets, dtype=torch.float32)
    n = len(targets)
    if n == 0:
        raise ValueError("the transfer set is empty; there is nothing to train on")
    train_pos, held_pos = split_holdout(n, holdout, seed)
    victim_labels = targets.argmax(1).numpy()
    num_classes = targets.shape[1]
    in_memory = isinstance(images, torch.Tensor)
    if in_memory:
        train_data = (images[train_pos], targets[train_pos])
        held_data = (images[held_pos], torch.from_numpy(victim_labels[held_pos]))
        fit_data = (train_data[0], torch.from_numpy(victim_labels[train_pos]))
    else:
        train_data = Subset(_PairedTargets(images, targets), train_pos.tolist())
        held_data = Subset(images, held_pos.tolist())
        fit_data = Subset(images, train_pos.tolist())
    chance = chance_agreement(victim_labels[held_pos] if len(held_pos) else victim_labels[train_pos], num_classes)

    model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
    optimizer = recipe.optimizer_for(model)
    generator = torch.Generator().manual_seed(seed)
    batches_per_epoch = max(1, math.ceil(len(train_pos) / recipe.batch_size))
    best_state, best, best_epoch, history, train_seconds = None, -1.0, 0, [], 0.0
    epochs_bar = tqdm(range(recipe.epochs), desc=f"retrain ({recipe.name})", disable=not progress, leave=False)
    for epoch in epochs_bar:
        started = time.perf_counter()
        loader = _loader(train_data, recipe.batch_size, seed + epoch, workers, device, in_memory)
        if progress and not in_memory:
            loader = tqdm(loader, total=batches_per_epoch, desc=f"epoch {epoch + 1}/{recipe.epochs}", leave=False)
        loss, lr = _train_epoch(model, optimizer, loader, recipe, epoch, batches_per_epoch, generator,
                                device, bf16, channels_last)
        train_seconds += time.perf_counter() - started
        record = {"epoch": epoch + 1, "loss": loss, "lr": lr, "heldout_agreement": float("nan")}
        if len(held_pos):
            predictions = _predict(model, held_data, device, workers, in_memory, channels_last, bf16)
            record["heldout_agreement"] = agreement(predictions, victim_labels[held_pos])
        score = record["heldout_agreement"] if len(held_pos) else float(epoch)
        if score >= best:  # ties go to the later epoch
            best, best_epoch = score, epoch + 1
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()} if len(held_pos) else None
        history.append(record)
        epochs_bar.set_postfix(loss=f"{record['loss']:.3f}", heldout=f"{record['heldout_agreement']:.3f}")
        if on_epoch:
            on_epoch(record)
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    # without a hold-out the verdict falls back on the training queries (an optimistic measure)
    fit_agreement = float("nan") if len(held_pos) else agreement(
        _predict(model, fit_data, device, workers, in_memory, channels_last, bf16), victim_labels[train_pos])
    estimate = best if len(held_pos) else fit_agreement
    near = is_near_chance(estimate, chance, len(held_pos) or len(train_pos))
    advice = near_chance_advice("retrained", estimate, chance, _what_to_try(recipe)) if near else ""
    if near and warn:
        warn_near_chance("retrained", estimate, chance, _what_to_try(recipe))
    return OfflineFit(model=model, recipe=recipe, epochs=recipe.epochs, best_epoch=best_epoch,
                      heldout_agreement=best if len(held_pos) else float("nan"), fit_agreement=fit_agreement,
                      chance=chance, near_chance=near, heldout_size=len(held_pos), train_size=len(train_pos),
                      seconds_per_epoch=train_seconds / recipe.epochs, history=history, advice=advice)


def _train_epoch(model: nn.Module, optimizer, loader, recipe: Recipe, epoch: int, batches_per_epoch: int,
                 generator: torch.Generator, device: torch.device, bf16: bool, channels_last: bool) -> tuple:
    """One epoch of soft-label cross-entropy under the recipe's schedule: (mean loss, last lr)."""
    model.train()
    total, count, lr = torch.zeros((), device=device), 0, recipe.lr
    for i, (x, y) in enumerate(loader):
        lr = recipe.lr * recipe.lr_factor(epoch + i / batches_per_epoch, recipe.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        x = augment_batch(x.to(device, non_blocking=True), recipe.augment, generator)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = soft_cross_entropy(logits.float(), y.to(device, non_blocking=True)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + loss.detach() * len(y), count + len(y)
    return float(total) / max(count, 1), lr


def train_offline(model: nn.Module, images: torch.Tensor | Dataset, targets: torch.Tensor, *,
                  device: torch.device, recipe: str | Recipe = "paper", holdout: float = 0.0,
                  **kwargs) -> nn.Module:
    """:func:`fit_offline` on the whole transfer set (nothing held out by default); returns the model."""
    return fit_offline(model, images, targets, device=device, recipe=recipe, holdout=holdout, **kwargs).model


def _what_to_try(recipe: Recipe) -> str:
    other = "recipe='paper' if the knockoff starts from pretrained weights" if recipe.name == "scratch" else \
        "recipe='scratch' if the knockoff starts from random weights"
    return (f"{other}; a larger lr than {recipe.lr:g}; more epochs than {recipe.epochs}; a larger budget; "
            "or check that the knockoff can represent the task")


@torch.inference_mode()
def _predict(model: nn.Module, data, device: torch.device, workers: int, in_memory: bool, channels_last: bool,
             bf16: bool) -> np.ndarray:
    """Top-1 predictions over ``(images, labels)`` or a Dataset (through ``workers`` loader processes)."""
    if in_memory:
        return predict(model, data, device)
    model.eval()
    loader = DataLoader(data, batch_size=256, num_workers=workers, pin_memory=device.type == "cuda")
    out = []
    for x, *_ in loader:
        x = x.to(device, non_blocking=True)
        if channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            out.append(model(x).argmax(1).cpu())
    return torch.cat(out).numpy()


def _loader(data, batch_size: int, seed: int, workers: int, device: torch.device, in_memory: bool):
    """Shuffled mini-batches: sliced from tensors, or from a DataLoader for a Dataset."""
    if in_memory:
        return batches(data, batch_size, shuffle=True, seed=seed)
    return DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed),
                      num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False)


class _PairedTargets(Dataset):
    """A dataset's images paired with the victim's answers instead of its own labels."""

    def __init__(self, images: Dataset, targets: torch.Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.images[i][0], self.targets[i]
