"""A second custom world, of another image family than the digits: coloured glyphs.

Six classes of 3×16×16 glyphs (disc, ring, frame, triangle, two bars, cross), each drawn
with its own random centre, size, foreground and background colour and pixel noise (numpy
only, seeded). Victim: a small CNN of its own, trained once per process. Query set: the
victim's training glyphs among as many images of two distractor families (uniform noise
and coloured stripes). Used to try the defences and PRADA off the digits world.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from knockoff_env import KnockoffEnv
from knockoff_env.training.online import predict

SIDE, CLASSES = 16, 6
GLYPHS = ("disc", "ring", "frame", "triangle", "bars", "cross")


def _mask(kind: str, cy: float, cx: float, r: float) -> np.ndarray:
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    dy, dx = y - cy, x - cx
    dist = np.hypot(dy, dx)
    if kind == "disc":
        return dist <= r
    if kind == "ring":
        return (dist <= r) & (dist >= r - 1.6)
    if kind == "frame":
        box = np.maximum(np.abs(dy), np.abs(dx))
        return (box <= r) & (box >= r - 1.4)
    if kind == "triangle":
        return (dy <= r * 0.8) & (dy >= -r) & (np.abs(dx) <= (dy + r) * 0.6)
    if kind == "bars":
        return (np.abs(dx) <= r) & ((np.abs(dy - r / 2) <= 0.8) | (np.abs(dy + r / 2) <= 0.8))
    return ((np.abs(dy - dx) <= 1.0) | (np.abs(dy + dx) <= 1.0)) & (np.maximum(np.abs(dy), np.abs(dx)) <= r)


def glyphs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` glyph images (classes cycling 0…5 in order) and their labels."""
    rng = np.random.default_rng(seed)
    images = np.empty((n, 3, SIDE, SIDE), np.float32)
    labels = np.arange(n) % CLASSES
    for i, label in enumerate(labels):
        mask = _mask(GLYPHS[label], *rng.uniform(5.5, 9.5, 2), rng.uniform(3.5, 6.5))
        fg, bg = rng.uniform(0.3, 1.0, 3), rng.uniform(0.0, 0.5, 3)
        image = np.where(mask[None], fg[:, None, None], bg[:, None, None])
        images[i] = np.clip(image + rng.normal(0, 0.2, image.shape), 0, 1)
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))


def distractors(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform noise (label 6) and coloured stripes of random period and phase (label 7)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 1, (n // 2, 3, SIDE, SIDE)).astype(np.float32)
    x = np.arange(SIDE, dtype=np.float32)
    period = rng.uniform(2, 6, (n - n // 2, 1, 1, 1))
    phase = rng.uniform(0, 6.3, (n - n // 2, 1, 1, 1))
    colour = rng.uniform(0, 1, (n - n // 2, 3, 1, 1))
    stripes = (0.5 + 0.5 * np.sin(2 * np.pi * x[None, None, None] / period + phase)) * colour
    stripes = np.broadcast_to(stripes, (n - n // 2, 3, SIDE, SIDE)).astype(np.float32)
    labels = np.r_[np.full(n // 2, 6), np.full(n - n // 2, 7)]
    return torch.from_numpy(np.concatenate([noise, stripes])), torch.from_numpy(labels)


class GlyphNet(nn.Module):
    """Two convolutions with pooling and one dense layer for 3×16×16 inputs."""

    def __init__(self, num_classes: int = CLASSES):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4 * 4, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


_CACHE: dict = {}


def glyph_data() -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The victim's train (1,200) and test (600) glyphs, fixed."""
    if "data" not in _CACHE:
        _CACHE["data"] = {"train": glyphs(1200, seed=1), "test": glyphs(600, seed=2)}
    return _CACHE["data"]


def glyph_victim(epochs: int = 12, seed: int = 0) -> tuple[GlyphNet, float]:
    """The victim, trained once per process (Adam, batches of 32), and its test accuracy."""
    if "victim" not in _CACHE:
        (x, y), test = glyph_data()["train"], glyph_data()["test"]
        torch.manual_seed(seed)
        g = torch.Generator().manual_seed(seed)
        model = GlyphNet()
        optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
        with torch.enable_grad():
            for _ in range(epochs):
                for batch in torch.randperm(len(y), generator=g).split(32):
                    loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
        accuracy = float((predict(model.eval(), test, torch.device("cpu")) == test[1].numpy()).mean())
        _CACHE["victim"] = (model, accuracy)
    return _CACHE["victim"]


def make_glyph_env(budget: int = 600, **kwargs) -> KnockoffEnv:
    """The glyph world as a KnockoffEnv: the victim's training glyphs among 1,200 distractors."""
    victim, _ = glyph_victim()
    x, y = glyph_data()["train"]
    dx, dy = distractors(1200, seed=3)
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("knockoff", GlyphNet)
    kwargs.setdefault("eval_set", glyph_data()["test"])
    kwargs.setdefault("victim_domain", ("glyphs",))
    return KnockoffEnv(victim=victim, query_set=(torch.cat([x, dx]), torch.cat([y, dy])),
                       hierarchy={"glyphs": list(range(CLASSES)), "distractors": [6, 7]}, budget=budget, **kwargs)
