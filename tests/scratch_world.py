"""A custom world as a new user builds it, for the offline-phase tests and benchmark.

Victim: a small CNN *without* batch norm trained on scikit-learn's 8×8 digits; knockoff:
the same CNN, randomly initialised. Query set: the victim's training digits hidden among the
digits world's distractor families (letters, shapes, textures: about three quarters of it).
Nothing here is tuned for the library's defaults; that is the point.
"""
from __future__ import annotations

import torch
from torch import nn

from knockoff_env import KnockoffEnv
from knockoff_env.training.online import predict
from knockoff_env.worlds.digits import digits_query_set, digits_split


class PlainCNN(nn.Module):
    """Two convolutions and two dense layers, no normalisation of any kind, raw [0, 1] pixels."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


_CACHE: dict = {}


def plain_victim(epochs: int = 60, seed: int = 0) -> tuple[PlainCNN, float]:
    """The victim, trained once per process (Adam, batches of 32) and its test accuracy."""
    if "victim" not in _CACHE:
        (x, y), test = digits_split()
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = PlainCNN()
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(epochs):
            for batch in torch.randperm(len(y), generator=g).split(32):
                loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        accuracy = float((predict(model.eval(), test, torch.device("cpu")) == test[1].numpy()).mean())
        _CACHE["victim"] = (model, accuracy)
        _CACHE["query_set"] = digits_query_set()
    return _CACHE["victim"]


def make_scratch_env(budget: int = 800, **kwargs) -> KnockoffEnv:
    """The no-batch-norm closed world; every KnockoffEnv option left at its default unless given."""
    victim, _ = plain_victim()
    images, labels, hierarchy, names = _CACHE["query_set"]
    kwargs.setdefault("device", "cpu")
    return KnockoffEnv(victim=victim, query_set=(images, labels), hierarchy=hierarchy, eval_set=digits_split()[1],
                       knockoff=PlainCNN, label_names=names, budget=budget, **kwargs)
