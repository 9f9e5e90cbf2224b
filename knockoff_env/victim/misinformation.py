"""Adaptive misinformation (Kariyappa & Qureshi, "Defending Against Model Stealing Attacks
with Adaptive Misinformation", CVPR 2020), after the authors' code
(sanjaykariyappa/adaptive_misinformation).

Queries that look out of distribution (the victim's top-1 confidence y_max below τ) get
answers blended towards a misinformation model f̂: ỹ = (1 − α) y + α f̂(x), with
α = σ(ν (τ − y_max)), a switch of steepness ν (the reference's 10,000).

f̂ is a model of the victim's architecture trained to be wrong: loss −log(1 − f̂_y(x)) on
the owner's images with their labels and on outliers labelled with the victim's top-1, as
the reference trains it. Here the outliers are made from the owner's images (each
image's pixels permuted, and uniform noise over the images' range) where the reference
takes an outlier data set, and the recipe is small (Adam, 10 epochs; the reference trains
f̂ alongside the victim). The OOD score is the victim's own confidence (the reference's
victim is trained with outlier exposure, which sharpens it).

Where its data comes from: a defence that needs the owner's data says so (``needs_data``)
and gets it through :meth:`fit`; :class:`~knockoff_env.core.env.KnockoffEnv` calls it with its
eval set (the victim's held-out images, which its owner has), so ``defence=
"adaptive_misinformation"`` works on every world and on any custom env with an eval set.
A trained f̂ is kept in memory per (victim weights, data, recipe), so envs that share a
victim train it once. ``misinformation=<nn.Module>`` skips training.

``misinformation="reversed"`` is the earlier default, softmax(−log y): it is exactly
invertible (normalise(1/ỹ) gives y back where the switch is on), kept only to measure
what a defence-aware attacker gains against it (``benchmarks/defences.py``).
"""
from __future__ import annotations

import zlib
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..checks import is_finite_number, is_integer
from .defence_base import Defence
from .mad import fresh_copy

_TRAINED: dict[tuple, dict[str, torch.Tensor]] = {}


def fingerprint(*tensors: torch.Tensor) -> int:
    """A CRC-32 of the tensors' bytes (which victim, which data)."""
    crc = 0
    for t in tensors:
        crc = zlib.crc32(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes(), crc)
    return crc


def outliers(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """As many outliers as images: the first half with each image's pixels permuted, the
    rest uniform noise over the batch's value range."""
    n, half = len(images), len(images) // 2
    flat = images.flatten(1)
    order = torch.rand(flat.shape, generator=generator).argsort(1).to(images.device)
    permuted = flat.gather(1, order)[:half]
    low, high = float(images.min()), float(images.max())
    noise = low + (high - low) * torch.rand((n - half, flat.shape[1]), generator=generator)
    return torch.cat([permuted, noise.to(images.device, images.dtype)]).reshape(images.shape)


def shuffled_batches(data: Any, batch_size: int, seed: int):
    """Shuffled ``(images, labels)`` mini-batches of tensors or of a Dataset of pairs."""
    generator = torch.Generator().manual_seed(seed)
    if isinstance(data, (tuple, list)):
        images, labels = data
        for rows in torch.randperm(len(labels), generator=generator).split(batch_size):
            yield images[rows], labels[rows]
        return
    yield from DataLoader(data, batch_size=batch_size, shuffle=True, generator=generator)


def misinformation_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean of −log(1 − f̂_y(x) + 1e-7): small when f̂ gives the label y no mass."""
    true = torch.softmax(logits, 1).gather(1, labels[:, None])[:, 0]
    return -torch.log(1 - true + 1e-7).mean()


def train_misinformation(model: nn.Module, victim, data: Any, device: torch.device, epochs: int = 10,
                         lr: float = 1e-3, batch_size: int = 64, seed: int = 0) -> nn.Module:
    """f̂ trained with −log(1 − f̂_y(x) + 1e-7): y the image's label, or the victim's top-1
    for an outlier."""
    generator = torch.Generator().manual_seed(seed)
    model.to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)  # a copy of the victim, whose weights the black box froze
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.enable_grad():
        for epoch in range(epochs):
            for x, labels, *_ in shuffled_batches(data, batch_size, seed + epoch):
                x, labels = x.to(device), torch.as_tensor(labels).to(device)
                odd = outliers(x, generator)
                with torch.no_grad():
                    odd_labels = victim(odd).argmax(1)
                loss = misinformation_loss(model(torch.cat([x, odd])), torch.cat([labels, odd_labels]))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return model.eval()


class AdaptiveMisinformation(Defence):
    """ỹ = (1 − α) y + α f̂(x), α = σ(ν (τ − y_max)). ``misinformation``: ``"model"`` (f̂
    trained on the owner's data, see :meth:`fit`), an ``nn.Module`` returning logits, or
    ``"reversed"`` (softmax(−log y), invertible); ``epochs``, ``seed``: f̂'s training."""

    name = "adaptive_misinformation"

    def __init__(self, tau: float = 0.9, nu: float = 10000.0, misinformation: nn.Module | str = "model",
                 epochs: int = 10, seed: int = 0):
        if not is_finite_number(tau) or not 0 <= tau <= 1:
            raise ValueError(f"adaptive_misinformation tau={tau!r} must be a confidence in [0, 1]")
        if not is_finite_number(nu) or nu <= 0:
            raise ValueError(f"adaptive_misinformation nu={nu!r} must be a positive steepness")
        if not isinstance(misinformation, nn.Module) and misinformation not in ("model", "reversed"):
            raise ValueError(f"adaptive_misinformation misinformation={misinformation!r}: give 'model' (trained on "
                             "the owner's data), 'reversed' (softmax(−log y)) or an nn.Module returning logits")
        if not is_integer(epochs) or epochs < 1:
            raise ValueError(f"adaptive_misinformation epochs={epochs!r} must be a positive integer")
        self.tau, self.nu, self.epochs, self.seed = float(tau), float(nu), int(epochs), int(seed)
        self.kind = "model" if isinstance(misinformation, nn.Module) else misinformation
        self.model = misinformation if isinstance(misinformation, nn.Module) else None
        self.victim, self.device = None, torch.device("cpu")

    def _params(self):
        if self.kind == "reversed":
            return {"tau": self.tau, "nu": self.nu, "misinformation": "reversed"}
        return {"tau": self.tau, "nu": self.nu, "epochs": self.epochs, "seed": self.seed}

    @property
    def needs_data(self) -> bool:
        return self.kind == "model" and self.model is None

    def bind(self, victim, device) -> None:
        self.victim, self.device = victim, device
        if self.model is not None:
            self.model.to(device).eval()

    def fit(self, data: Any) -> None:
        """Train f̂ on the owner's ``data`` (``(images, labels)``, a Dataset of pairs, or
        ``(Dataset, labels)``), unless it is given or already trained."""
        if not self.needs_data:
            return
        if self.victim is None:
            raise RuntimeError("adaptive_misinformation was not bound to a victim; "
                               "use it through BlackBox(defence=...)")
        if not isinstance(self.victim, nn.Module):
            raise ValueError("adaptive_misinformation trains its misinformation model as a copy of the victim's "
                             "architecture, but the victim is not an nn.Module: pass "
                             "AdaptiveMisinformation(misinformation=<nn.Module>) or misinformation='reversed'")
        model = fresh_copy(self.victim, self.seed)
        key = None
        if isinstance(data, (tuple, list)) and isinstance(data[0], torch.Tensor):
            data = (data[0], torch.as_tensor(data[1]))
            key = (fingerprint(*self.victim.state_dict().values()), fingerprint(*data), self.epochs, self.seed)
        elif isinstance(data, (tuple, list)):
            data = data[0]  # a Dataset of (image, label) pairs, its labels alongside (as an env's eval set)
        if key in _TRAINED:
            model.load_state_dict(_TRAINED[key])
        else:
            train_misinformation(model, self.victim, data, self.device, self.epochs, seed=self.seed)
            if key is not None:
                _TRAINED[key] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model.to(self.device).eval()

    def misinformation(self, probs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """f̂'s answer to each query."""
        if self.kind == "reversed":
            return torch.softmax(-torch.log(probs.clamp_min(1e-12)), dim=1)
        if self.model is None:
            raise RuntimeError("adaptive_misinformation has no misinformation model yet: it is trained on the "
                               "owner's data, which KnockoffEnv passes from its eval_set; with a BlackBox of your "
                               "own call box.defence.fit((images, labels)) first, or pass misinformation=<model>")
        with torch.no_grad():
            return torch.softmax(self.model(images).float(), dim=1).to(probs.dtype)

    def __call__(self, probs, images):
        alpha = torch.sigmoid(self.nu * (self.tau - probs.max(1, keepdim=True).values))
        return (1 - alpha) * probs + alpha * self.misinformation(probs, images)
