"""The knockoff F_A: one online SGD step per env step, and prediction.

Online (paper phase a): SGD on the step's images with the victim's soft labels (the paper:
momentum 0.5, lr 0.0005; the step size follows the env's recipe, see :mod:`.recipes`).
Offline retraining (phase b) is :mod:`.offline`.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..checks import is_finite_number
from .losses import soft_cross_entropy


def build_model(knockoff: nn.Module | Callable[[], nn.Module]) -> nn.Module:
    """A fresh module from a zero-argument factory, or the module itself."""
    model = knockoff if isinstance(knockoff, nn.Module) else knockoff()
    if not isinstance(model, nn.Module):
        raise TypeError(f"knockoff must be an nn.Module or a factory returning one, got {type(model).__name__}")
    return model


MAX_LR = 10.0  # far above any useful step size; larger ones only overflow the weights


class OnlineKnockoff:
    """F_A trained online: each step scores the batch with the current weights, then learns it.

    ``bf16`` runs the forward pass under bfloat16 autocast (the loss and the weights stay
    float32); ``channels_last`` converts the model and 4-d batches to that memory format.
    """

    def __init__(self, model: nn.Module, device: torch.device, lr: float = 5e-4, momentum: float = 0.5,
                 bf16: bool = False, channels_last: bool = False):
        if not is_finite_number(lr) or not 0 <= lr <= MAX_LR:
            raise ValueError(f"knockoff_lr={lr!r} must be a number in [0, {MAX_LR}] (paper: 0.0005)")
        if not is_finite_number(momentum) or not 0 <= momentum < 1:
            raise ValueError(f"knockoff_momentum={momentum!r} must be a number in [0, 1) (paper: 0.5)")
        self.device, self.lr, self.momentum = device, lr, momentum
        self.bf16, self.channels_last = bool(bf16), bool(channels_last)
        self.model = model.to(device, memory_format=torch.channels_last) if channels_last else model.to(device)
        self.initial_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum)
        self.agreed, self.scored = torch.zeros((), dtype=torch.int64, device=device), 0

    def reset(self) -> None:
        """Back to the initial weights with a fresh optimiser (its momentum dropped). The tensors
        are overwritten in place: a third of ``load_state_dict``'s time, paid every episode."""
        with torch.no_grad():
            for name, tensor in self.model.state_dict(keep_vars=True).items():
                tensor.copy_(self.initial_state[name])
        self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            group.update(lr=self.lr, momentum=self.momentum)
        self.agreed.zero_()
        self.scored = 0

    def heldout_agreement(self) -> tuple[float, int]:
        """(agreement with the victim's top-1, images) over the images scored since the last call,
        each by the weights *before* they learnt it (held-out, as an attacker measures it; NaN if none)."""
        value, scored = (float(self.agreed) / self.scored if self.scored else float("nan")), self.scored
        self.agreed.zero_()
        self.scored = 0
        return value, scored

    def step(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One SGD step on soft labels; returns the per-image loss of the weights *before* it."""
        if not self.model.training:
            self.model.train()
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            logits = self.model(images)
        loss = soft_cross_entropy(logits, targets)
        self.agreed += (logits.detach().argmax(1) == targets.argmax(1)).sum()
        self.scored += len(targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.mean().backward()
        self.optimizer.step()
        return loss.detach()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Weights (``model.*``) and SGD momentum buffers (``momentum.<param index>``), tensors only."""
        state = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for i, p in enumerate(self.optimizer.param_groups[0]["params"]):
            buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
            if buffer is not None:
                state[f"momentum.{i}"] = buffer
        return state

    def load_state_dict(self, state) -> None:
        """Restore what :meth:`state_dict` saved (the optimiser's hyperparameters come from the env)."""
        self.model.load_state_dict({k[6:]: v for k, v in state.items() if k.startswith("model.")})
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=self.momentum)
        for i, p in enumerate(self.optimizer.param_groups[0]["params"]):
            if f"momentum.{i}" in state:
                self.optimizer.state[p]["momentum_buffer"] = torch.as_tensor(state[f"momentum.{i}"]).to(p).clone()


def batches(data: Any, batch_size: int, shuffle: bool = False, seed: int = 0):
    """Mini-batches of ``(images, labels/targets)`` tensors or of a Dataset. In-memory tensors are
    sliced directly (a DataLoader would index and re-collate them one item at a time)."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(data, (tuple, list)):
        tensors = [d if isinstance(d, torch.Tensor) else torch.as_tensor(np.asarray(d)) for d in data]
        n = len(tensors[0])
        order = torch.randperm(n, generator=generator) if shuffle else None
        for start in range(0, n, batch_size):
            rows = slice(start, start + batch_size) if order is None else order[start:start + batch_size]
            yield [t[rows] for t in tensors]
        return
    yield from DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)


@torch.inference_mode()
def predict(model: nn.Module | Callable, data: tuple | Dataset, device: torch.device,
            batch_size: int = 256) -> np.ndarray:
    """Top-1 predictions of ``model`` over ``(images, labels)`` or a Dataset."""
    was_training = getattr(model, "training", False)
    if isinstance(model, nn.Module):
        model.eval()
    out = [model(x.to(device)).argmax(1).cpu() for x, *_ in batches(data, batch_size)]
    if isinstance(model, nn.Module):
        model.train(was_training)
    return torch.cat(out).numpy()
