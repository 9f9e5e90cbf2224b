"""The embedded default world, ``Knockoff-Digits-v0``: no download, seconds on a laptop CPU.

Victim: a small CNN trained at first use on scikit-learn's bundled 8×8 digits and cached.
Query set (a closed world, like the paper's D²): the victim's own training digits plus
three procedurally drawn distractor families — letters rendered with Pillow, geometric
shapes, and textures — each a coarse node of ten labels. Distractors are about three
quarters of the images, so an agent that finds the ``digits`` node steals faster.
Eval set: the held-out digits.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from sklearn.datasets import load_digits
from torch import nn

from ..core.env import KnockoffEnv
from ..durability.checkpoint import load_tensors
from ..training.online import predict

SIDE = 8            # image side, as scikit-learn's digits
DRAW_SIDE = 32      # distractors are drawn at this size, then box-filtered down to 8×8
PER_LABEL = 140     # images per distractor label
SPLIT_SEED = 0      # fixed: the victim's train/test split and the distractors never change
LETTERS = "ABCDEFHKPX"
SHAPES = ("disc", "ring", "square", "frame", "triangle", "cross", "plus", "hbar", "vbar", "diagonal")
TEXTURES = ("hstripes", "vstripes", "dstripes", "checker", "dots", "noise", "blobs",
            "hgradient", "vgradient", "radial")
FAMILIES = {"letters": LETTERS, "shapes": SHAPES, "textures": TEXTURES}


class DigitsNet(nn.Module):
    """A small batch-normalised CNN for 1×8×8 inputs in [0, 1]: the victim and the default knockoff."""

    MEAN, STD = 0.3, 0.4  # of the digits' pixels; centring lets plain SGD learn from batches of 4

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - self.MEAN) / self.STD)


def digits_split() -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """The victim's (train, test) split of the 1,797 bundled digits, 70/30, scaled to [0, 1]."""
    digits = load_digits()
    images = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    labels = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    cut = int(0.7 * len(labels))
    train, test = order[:cut], order[cut:]
    return (images[train], labels[train]), (images[test], labels[test])


def cache_dir() -> Path:
    """Where the trained victim is kept: ``$KNOCKOFF_CACHE`` or ``~/.cache/knockoff_env``."""
    return Path(os.environ.get("KNOCKOFF_CACHE", Path.home() / ".cache" / "knockoff_env")).expanduser()


def train_digits_victim(epochs: int = 40, seed: int = 0) -> tuple[DigitsNet, float]:
    """Train the victim on the train split (Adam, minibatches of 64); returns it and its test accuracy."""
    (x, y), test = digits_split()
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for batch in torch.randperm(len(y), generator=g).split(64):
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    accuracy = float((predict(model, test, torch.device("cpu")) == test[1].numpy()).mean())
    return model.eval(), accuracy


def load_digits_victim(path: str | Path | None = None) -> tuple[DigitsNet, float]:
    """The cached victim (trained and saved on first use) and its test accuracy."""
    path = Path(path) if path is not None else cache_dir() / "digits_victim.pt"
    model = DigitsNet()
    if path.exists():
        remedy = "delete it and it will be retrained"
        checkpoint = load_tensors(path, "the cached digits victim", remedy)
        try:
            model.load_state_dict(checkpoint["state_dict"])
            return model.eval(), float(checkpoint["accuracy"])
        except Exception as err:  # noqa: BLE001 - a readable file of the wrong content is refused too
            raise ValueError(f"{path} is not the cached digits victim ({type(err).__name__}: {err}) — {remedy}") from err
    model, accuracy = train_digits_victim()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": model.state_dict(), "accuracy": accuracy}, tmp)
    tmp.replace(path)
    return model, accuracy


# --- distractors ---------------------------------------------------------------------
def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("L", (DRAW_SIDE, DRAW_SIDE), 0)
    return image, ImageDraw.Draw(image)


def _letter(char: str, rng: np.random.Generator) -> Image.Image:
    image, draw = _canvas()
    font = ImageFont.load_default(size=int(rng.integers(18, 28)))
    draw.text((16 + rng.integers(-3, 4), 16 + rng.integers(-3, 4)), char, fill=255, font=font, anchor="mm")
    return image.rotate(float(rng.uniform(-15, 15)), resample=Image.BILINEAR)


def _shape(kind: str, rng: np.random.Generator) -> Image.Image:
    image, draw = _canvas()
    r = int(rng.integers(8, 14))
    cx, cy = 16 + rng.integers(-3, 4, size=2)
    box = [cx - r, cy - r, cx + r, cy + r]
    w = int(rng.integers(3, 6))
    if kind == "disc":
        draw.ellipse(box, fill=255)
    elif kind == "ring":
        draw.ellipse(box, outline=255, width=w)
    elif kind == "square":
        draw.rectangle(box, fill=255)
    elif kind == "frame":
        draw.rectangle(box, outline=255, width=w)
    elif kind == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=255)
    elif kind == "cross":
        draw.line([box[0], box[1], box[2], box[3]], fill=255, width=w)
        draw.line([box[0], box[3], box[2], box[1]], fill=255, width=w)
    elif kind == "plus":
        draw.line([cx - r, cy, cx + r, cy], fill=255, width=w)
        draw.line([cx, cy - r, cx, cy + r], fill=255, width=w)
    elif kind == "hbar":
        draw.line([cx - r, cy, cx + r, cy], fill=255, width=w + 2)
    elif kind == "vbar":
        draw.line([cx, cy - r, cx, cy + r], fill=255, width=w + 2)
    else:  # diagonal
        draw.line([box[0], box[3], box[2], box[1]], fill=255, width=w + 2)
    return image


def _texture(kind: str, rng: np.random.Generator) -> np.ndarray:
    u, v = np.meshgrid(np.linspace(0, 1, SIDE), np.linspace(0, 1, SIDE))
    f, phase = rng.uniform(1.5, 3.5), rng.uniform(0, 2 * np.pi)
    if kind == "hstripes":
        t = np.sin(2 * np.pi * f * v + phase)
    elif kind == "vstripes":
        t = np.sin(2 * np.pi * f * u + phase)
    elif kind == "dstripes":
        t = np.sin(2 * np.pi * f * (u + v) / 1.4 + phase)
    elif kind == "checker":
        t = np.sign(np.sin(2 * np.pi * f * u + phase) * np.sin(2 * np.pi * f * v + phase))
    elif kind == "dots":
        t = (rng.random((SIDE, SIDE)) < 0.15) * 2.0 - 1
    elif kind == "noise":
        t = rng.uniform(-1, 1, (SIDE, SIDE))
    elif kind == "blobs":
        t = sum(np.exp(-((u - a) ** 2 + (v - b) ** 2) / 0.02) for a, b in rng.random((3, 2))) * 2 - 1
    elif kind == "hgradient":
        t = (2 * u - 1) * rng.choice([-1, 1])
    elif kind == "vgradient":
        t = (2 * v - 1) * rng.choice([-1, 1])
    else:  # radial
        t = 1 - 4 * ((u - rng.uniform(0.3, 0.7)) ** 2 + (v - rng.uniform(0.3, 0.7)) ** 2)
    return np.clip((t + 1) / 2 * rng.uniform(0.6, 1.0), 0, 1)


@functools.lru_cache(maxsize=2)  # drawn once per process: a sweep makes this world once per trial
def distractors(per_label: int = PER_LABEL, seed: int = SPLIT_SEED) -> dict[str, list[np.ndarray]]:
    """``{label name: [8×8 float images in [0, 1]]}`` for every distractor label (cached: read, don't modify)."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {}
    for name in LETTERS:
        out[f"letter {name}"] = [_downsample(_letter(name, rng)) for _ in range(per_label)]
    for name in SHAPES:
        out[name] = [_downsample(_shape(name, rng)) for _ in range(per_label)]
    for name in TEXTURES:
        out[name] = [_texture(name, rng) for _ in range(per_label)]
    return out


def _downsample(image: Image.Image) -> np.ndarray:
    return np.asarray(image.resize((SIDE, SIDE), Image.BOX), dtype=np.float32) / 255.0


def digits_query_set(per_label: int = PER_LABEL) -> tuple[torch.Tensor, torch.Tensor, dict, dict]:
    """(images, labels, hierarchy, label names): the victim's training digits plus distractors.

    Labels 0–9 are the digits; each distractor family takes the next ten ids.
    """
    (digit_images, digit_labels), _ = digits_split()
    drawn = distractors(per_label)
    names = {d: f"digit {d}" for d in range(10)}
    hierarchy = {"digits": list(range(10))}
    images, labels = [digit_images], [digit_labels]
    for family, members in FAMILIES.items():
        ids = []
        for name in members:
            key = f"letter {name}" if family == "letters" else name
            z = len(names)
            names[z], ids = key, ids + [z]
            images.append(torch.tensor(np.stack(drawn[key]), dtype=torch.float32).unsqueeze(1))
            labels.append(torch.full((per_label,), z, dtype=torch.int64))
        hierarchy[family] = ids
    return torch.cat(images), torch.cat(labels), hierarchy, names


def make_digits_env(budget: int = 1000, victim_path: str | Path | None = None, **kwargs) -> KnockoffEnv:
    """``Knockoff-Digits-v0``. Defaults differ from the paper's ImageNet-scale ones where the
    tiny scratch-initialised knockoff needs it: budget 1,000, and the ``"scratch"`` recipe
    (``recipe="auto"``; online lr 0.01); every other ``KnockoffEnv`` option can be passed
    through (``victim=`` a shared BlackBox, say)."""
    victim = kwargs.pop("victim", None) or load_digits_victim(victim_path)[0]
    images, labels, hierarchy, names = digits_query_set()
    _, test = digits_split()
    kwargs.setdefault("knockoff", DigitsNet)
    kwargs.setdefault("knockoff_pretrained", False)
    kwargs.setdefault("victim_domain", ("digits",))
    return KnockoffEnv(victim=victim, query_set=(images, labels), hierarchy=hierarchy, eval_set=test,
                       label_names=names, budget=budget, **kwargs)
