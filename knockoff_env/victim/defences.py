"""Defences: transformations of the victim's answers applied inside the black box.

A :class:`Defence` maps a batch of true probability vectors ``y`` (n, K), on the victim's
device, to the answers the API returns. Defences compose left to right as a
:class:`Chain`. The paper's output truncations (top-k, rounding, label only) are defences
like any other; ``BlackBox(output=...)`` is the shorthand that appends one.

Specs select defences by name: ``"reverse_sigmoid:beta=0.7,gamma=0.2"``, chains joined
with ``+`` (``"mad:eps=0.5+top_k:k=1"``), or a list of specs / :class:`Defence` objects.

* ``reverse_sigmoid`` (Lee et al., 2019): ỹ ∝ max(0, y − β(σ(γ σ⁻¹(y)) − ½)), exact.
* ``noise``: ỹ ∝ max(0, y + σ·z), z ~ N(0, 1) drawn from a generator seeded by the seed and
  the image's bytes: the same query always gets the same answer (averaging repeats gains
  nothing), and seeded, resumed or batched attacks are reproducible.
* ``mad`` / ``mad_argmax`` / ``mad_argmax_vertex`` (Orekondy, Schiele, Fritz, ICLR 2020):
  see :mod:`.mad`.
* ``adaptive_misinformation`` (Kariyappa & Qureshi, CVPR 2020): see :mod:`.misinformation`.

Defaults are operating points an owner could deploy: on the embedded digits world each
keeps the victim's own top-1 accuracy within 2 points (``benchmarks/defences.py``).
* ``top_k`` (k), ``rounded`` (decimals), ``label``: the truncations of the Knockoff paper.
"""
from __future__ import annotations

import ast
import inspect
import zlib
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from ..checks import is_finite_number, is_integer
from .defence_base import Defence
from .mad import MAD
from .misinformation import AdaptiveMisinformation

MAX_DECIMALS = 30  # 10^30 × a probability stays finite in float32


def normalise(values: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Rows divided by their sums; a row whose mass is all gone becomes ``fallback``'s row."""
    sums = values.sum(1, keepdim=True)
    empty = (sums <= 0).squeeze(1)
    if empty.any():
        values = values.clone()
        values[empty], sums = fallback[empty], torch.where(sums <= 0, fallback.sum(1, keepdim=True), sums)
    return values / sums


def one_hot_top(probs: torch.Tensor) -> torch.Tensor:
    return nn.functional.one_hot(probs.argmax(1), probs.shape[1]).to(probs.dtype)


class Chain(Defence):
    """Defences applied one after another (an empty chain answers the true probabilities)."""

    def __init__(self, defences: Sequence[Defence] = ()):
        self.defences = list(defences)

    def bind(self, victim, device) -> None:
        for d in self.defences:
            d.bind(victim, device)

    @property
    def needs_data(self) -> bool:
        return any(d.needs_data for d in self.defences)

    def fit(self, data) -> None:
        """Fit the defences that need their owner's images; ``data`` is ``(images, labels)``, a
        Dataset, or None (an env without an eval set: refused when one needs data)."""
        if self.needs_data and data is None:
            raise ValueError(f"the defence {self.spec()!r} is fitted on the owner's images, which the env takes "
                             "from its eval_set: pass eval_set=(images, labels) or a Dataset")
        for d in self.defences:
            if d.needs_data:
                d.fit(data)

    def __call__(self, probs, images):
        for d in self.defences:
            probs = d(probs, images)
        return probs

    def __bool__(self) -> bool:
        return bool(self.defences)

    def spec(self) -> str:
        return "+".join(d.spec() for d in self.defences)


class TopK(Defence):
    """The k largest probabilities kept, the rest zeroed, renormalised."""

    name = "top_k"

    def __init__(self, k: int = 1):
        if not is_integer(k) or k < 1:
            raise ValueError(f"top_k={k!r} must be a positive integer")
        self.k = int(k)

    def _params(self):
        return {"k": self.k}

    def __call__(self, probs, images):
        values, index = probs.topk(min(self.k, probs.shape[1]), dim=1)
        kept = torch.zeros_like(probs).scatter_(1, index, values)
        return kept / kept.sum(1, keepdim=True)


class Rounded(Defence):
    """Probabilities rounded to ``decimals`` places, renormalised (all zero: the top label)."""

    name = "rounded"

    def __init__(self, decimals: int = 2):
        if not is_integer(decimals) or not 0 <= decimals <= MAX_DECIMALS:
            raise ValueError(f"decimals={decimals!r} must be an integer from 0 to {MAX_DECIMALS} "
                             "(float32 answers scaled by 10^decimals must not overflow)")
        self.decimals = int(decimals)

    def _params(self):
        return {"decimals": self.decimals}

    def __call__(self, probs, images):
        return normalise(torch.round(probs, decimals=self.decimals), one_hot_top(probs))


class Label(Defence):
    """Only the top-1 label, as a one-hot vector."""

    name = "label"

    def __call__(self, probs, images):
        return one_hot_top(probs)


class ReverseSigmoid(Defence):
    """Lee et al. (2019): ỹ = α·(y − β(σ(γ σ⁻¹(y)) − ½)), α renormalising.

    β scales the perturbation, γ its steepness. The logit σ⁻¹(y) = log y − log(1 − y) is
    taken in float64 with no clamp, so the small entries of a confident answer (most of a
    trained victim's, often below 1e-7) get the formula exactly; an entry of 0 or 1 gets
    its limit (σ = 0 or 1). For β ≤ 1 every entry stays in [0, 1] and this is the formula
    (and the prediction-poisoning code) exactly; for β > 1 entries are clipped to [0, 1]
    before renormalising, as IBM ART's ``ReverseSigmoid`` does (ART also clamps y to
    [1e-9, 1 − 1e-9] inside the logit, which this does not)."""

    name = "reverse_sigmoid"

    def __init__(self, beta: float = 1.0, gamma: float = 0.1):
        if not is_finite_number(beta) or beta < 0:
            raise ValueError(f"reverse_sigmoid beta={beta!r} must be a number ≥ 0")
        if not is_finite_number(gamma) or gamma <= 0:
            raise ValueError(f"reverse_sigmoid gamma={gamma!r} must be a number > 0")
        self.beta, self.gamma = float(beta), float(gamma)

    def _params(self):
        return {"beta": self.beta, "gamma": self.gamma}

    def __call__(self, probs, images):
        y = probs.double()
        logit = torch.log(y) - torch.log1p(-y)
        perturbed = (y - self.beta * (torch.sigmoid(self.gamma * logit) - 0.5)).clamp(0, 1)
        return normalise(perturbed, y).to(probs.dtype)


class Noise(Defence):
    """Gaussian noise of standard deviation ``sigma`` added to each answer, negative entries
    clipped, renormalised. Each image's noise comes from a generator seeded with the seed
    and a CRC-32 of the image's bytes, so it depends on the query alone."""

    name = "noise"

    def __init__(self, sigma: float = 0.1, seed: int = 0):
        if not is_finite_number(sigma) or sigma < 0:
            raise ValueError(f"noise sigma={sigma!r} must be a number ≥ 0")
        if not is_integer(seed) or seed < 0:
            raise ValueError(f"noise seed={seed!r} must be a non-negative integer")
        self.sigma, self.seed = float(sigma), int(seed)

    def _params(self):
        return {"sigma": self.sigma, "seed": self.seed}

    def draw(self, images: torch.Tensor, k: int) -> torch.Tensor:
        """Standard normal noise, one row of ``k`` per image, a function of (seed, image)."""
        host = images.detach().to("cpu", torch.float32).contiguous().numpy()
        start = zlib.crc32(self.seed.to_bytes(8, "little"))  # torch seeds its CPU generator from 32 bits
        rows = [torch.randn(k, generator=torch.Generator().manual_seed(zlib.crc32(image.tobytes(), start)))
                for image in host]
        return torch.stack(rows).to(images.device)

    def perturb(self, probs: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The deterministic part: y + σ·noise, clipped at 0, renormalised (all-zero: y kept)."""
        return normalise((probs + self.sigma * noise).clamp_min(0), probs)

    def __call__(self, probs, images):
        return self.perturb(probs, self.draw(images, probs.shape[1]).to(probs.device))


DEFENCES: dict[str, Callable[..., Defence]] = {
    "reverse_sigmoid": ReverseSigmoid, "noise": Noise, "mad": MAD,
    "mad_argmax": lambda eps=1.0, seed=0: MAD(eps, seed=seed, target="argmax"),
    "mad_argmax_vertex": lambda eps=1.0, seed=0: MAD(eps, seed=seed, target="argmax_vertex"),
    "adaptive_misinformation": AdaptiveMisinformation,
    "top_k": TopK, "rounded": Rounded, "label": Label,
}
NOT_IN_SPECS = ("surrogate", "target")  # objects, or what the name already says


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_one(spec: str) -> Defence:
    """``"name"`` or ``"name:key=value,key=value"`` → a Defence."""
    name, _, args = spec.strip().partition(":")
    name = name.strip()
    if name not in DEFENCES:
        raise ValueError(f"unknown defence {name!r} in {spec!r}; choose from {sorted(DEFENCES)} "
                         "(e.g. 'reverse_sigmoid:beta=0.7,gamma=0.2', chains joined with '+')")
    allowed = tuple(p for p in inspect.signature(DEFENCES[name]).parameters if p not in NOT_IN_SPECS)
    kwargs = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq or key.strip() not in allowed:
            raise ValueError(f"defence {name!r}: bad parameter {item!r} in {spec!r}; it takes "
                             f"{', '.join(allowed) or 'no parameters'} as key=value")
        kwargs[key.strip()] = _value(value.strip())
    return DEFENCES[name](**kwargs)


def parse_defence(spec: None | str | Defence | Sequence[str | Defence]) -> Chain:
    """A spec string (``+``-joined chain), a Defence, a list of either, or None → a Chain."""
    if spec is None or spec == "" or spec == "none":
        return Chain()
    if isinstance(spec, Chain):
        return spec
    if isinstance(spec, Defence):
        return Chain([spec])
    if isinstance(spec, str):
        return Chain([parse_one(s) for s in spec.split("+")])
    if isinstance(spec, Sequence):
        return Chain([d for s in spec for d in parse_defence(s).defences])
    raise TypeError(f"defence={spec!r}: give a spec string such as 'mad:eps=0.5', a Defence, or a list of them")

