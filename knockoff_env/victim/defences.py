"""Defences: transformations of the victim's answers applied inside the black box.

A :class:`Defence` maps a batch of true probability vectors ``y`` (n, K), on the victim's
device, to the answers the API returns. Defences compose left to right as a
:class:`Chain`. The paper's output truncations (top-k, rounding, label only) are defences
like any other; ``BlackBox(output=...)`` is the shorthand that appends one.

Specs select defences by name: ``"reverse_sigmoid:beta=0.7,gamma=0.2"``, chains joined
with ``+`` (``"mad:eps=0.5+top_k:k=1"``), or a list of specs / :class:`Defence` objects.

* ``reverse_sigmoid`` (Lee et al., 2019): ỹ ∝ max(0, y − β(σ(γ σ⁻¹(y)) − ½)).
* ``noise``: ỹ ∝ max(0, y + σ·z), z ~ N(0, 1) drawn from a generator seeded by the seed and
  the image's bytes: the same query always gets the same answer (averaging repeats gains
  nothing), and seeded, resumed or batched attacks are reproducible.
* ``mad`` / ``mad_argmax`` (Orekondy, Schiele, Fritz, ICLR 2020): see :class:`MAD`.
* ``adaptive_misinformation`` (Kariyappa & Qureshi, CVPR 2020): see
  :class:`AdaptiveMisinformation`.
* ``top_k`` (k), ``rounded`` (decimals), ``label``: the truncations of the Knockoff paper.
"""
from __future__ import annotations

import ast
import copy
import inspect
import zlib
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from ..checks import is_finite_number, is_integer

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


class Defence:
    """A batched transformation of the victim's answers (subclasses set ``name``).

    ``__call__(probs, images)``: ``probs`` (n, K) true answers, ``images`` the queried batch
    (on the victim's device); returns the (n, K) answers. A defence keeps no state that
    changes with the queries, so answering is a pure function of the query."""

    name = ""

    def bind(self, victim: Callable, device: torch.device) -> None:
        """Called once by the black box: the victim model and its device."""

    def __call__(self, probs: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def spec(self) -> str:
        """The spec string that rebuilds this defence (for configs and logs)."""
        params = ",".join(f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in self._params().items())
        return f"{self.name}:{params}" if params else self.name

    def _params(self) -> dict[str, Any]:
        return {}


class Chain(Defence):
    """Defences applied one after another (an empty chain answers the true probabilities)."""

    def __init__(self, defences: Sequence[Defence] = ()):
        self.defences = list(defences)

    def bind(self, victim, device) -> None:
        for d in self.defences:
            d.bind(victim, device)

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
    """Lee et al. (2019): ỹ = α·max(0, y − β(σ(γ σ⁻¹(y)) − ½)), α renormalising.

    β scales the perturbation, γ its steepness; the logit σ⁻¹ is taken of y clamped to
    [1e-7, 1 − 1e-7], and entries pushed below zero are clipped before renormalising."""

    name = "reverse_sigmoid"
    CLAMP = 1e-7

    def __init__(self, beta: float = 1.0, gamma: float = 0.1):
        if not is_finite_number(beta) or beta < 0:
            raise ValueError(f"reverse_sigmoid beta={beta!r} must be a number ≥ 0")
        if not is_finite_number(gamma) or gamma <= 0:
            raise ValueError(f"reverse_sigmoid gamma={gamma!r} must be a number > 0")
        self.beta, self.gamma = float(beta), float(gamma)

    def _params(self):
        return {"beta": self.beta, "gamma": self.gamma}

    def __call__(self, probs, images):
        logit = torch.logit(probs.clamp(self.CLAMP, 1 - self.CLAMP))
        perturbed = (probs - self.beta * (torch.sigmoid(self.gamma * logit) - 0.5)).clamp_min(0)
        return normalise(perturbed, probs)


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


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model``'s architecture with freshly initialised weights (under ``seed``)."""
    surrogate = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in surrogate.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return surrogate.eval()


class MAD(Defence):
    """Prediction poisoning by Maximising Angular Deviation (Orekondy, Schiele, Fritz, ICLR 2020).

    The attacker's training signal for answer y is the gradient a(y) = Gᵀy of
    Σₖ yₖ log F_k(x; w), with G = ∇_w log F(x; w) the Jacobian of the defender's surrogate F
    (last layer, as in the paper). MAD answers ỹ maximising ‖â(ỹ) − â(y)‖² (â = a/‖a‖)
    subject to ỹ on the simplex and ‖ỹ − y‖₁ ≤ ε, with the paper's heuristic: the target y*
    is the simplex vertex eₖ of largest deviation, then a line search from y towards y*
    takes the largest step within the budget: ỹ = y + α(y* − y), α = min(1, ε/‖y* − y‖₁).

    For a linear last layer (logits = W h + b) the gradient has a closed form: for any y on
    the simplex, a(y) = (y − p) ⊗ [h; 1], p = F(x; w). So â(ỹ)·â(y) is the cosine between
    ỹ − p and y − p: the whole batch is scored with (n, K) tensor operations, no per-sample
    autograd (``tests/test_defences.py`` checks it against ``torch.func.jacrev``).

    ``argmax=True`` (MAD-argmax) adds the paper's constraint that the top-1 label is kept:
    every vertex is tried with the largest step that keeps it (α < d/(1 + d),
    d = y_top − y_k) and within ε, and the one of largest deviation wins.

    ``surrogate``: the defender's model F, an ``nn.Module`` returning logits, standing in for
    the attacker's model, whose weights the defender cannot know. Default: a freshly
    initialised copy of the victim's architecture (seeded by ``seed``); a callable victim
    that is not an ``nn.Module`` needs one given. Only F's output p enters the closed form.
    """

    name = "mad"

    def __init__(self, eps: float = 1.0, surrogate: nn.Module | None = None, seed: int = 0, argmax: bool = False):
        if not is_finite_number(eps) or not 0 <= eps <= 2:
            raise ValueError(f"mad eps={eps!r} must be an L1 budget in [0, 2]")
        if surrogate is not None and not isinstance(surrogate, nn.Module):
            raise TypeError(f"mad surrogate must be an nn.Module returning logits, got {type(surrogate).__name__}")
        self.eps, self.seed, self.argmax = float(eps), int(seed), bool(argmax)
        self.surrogate = surrogate
        if argmax:
            self.name = "mad_argmax"

    def _params(self):
        return {"eps": self.eps, "seed": self.seed}

    def bind(self, victim, device) -> None:
        if self.surrogate is None:
            if not isinstance(victim, nn.Module):
                raise ValueError("MAD needs a surrogate model: the victim is not an nn.Module, so its "
                                 "architecture cannot be copied; pass MAD(eps, surrogate=<nn.Module>)")
            self.surrogate = fresh_copy(victim, self.seed)
        self.surrogate.to(device).eval()
        for p in self.surrogate.parameters():
            p.requires_grad_(False)

    @staticmethod
    def deviation(candidates: torch.Tensor, probs: torch.Tensor, surrogate_probs: torch.Tensor) -> torch.Tensor:
        """‖â(ỹ) − â(y)‖² for candidates ỹ of shape (n, m, K): (n, m)."""
        base = probs - surrogate_probs
        base = base / base.norm(dim=1, keepdim=True).clamp_min(1e-12)
        moved = candidates - surrogate_probs[:, None]
        moved = moved / moved.norm(dim=2, keepdim=True).clamp_min(1e-12)
        return (moved - base[:, None]).pow(2).sum(2)

    def __call__(self, probs, images):
        if self.surrogate is None:
            raise RuntimeError("MAD was not bound to a victim; use it through BlackBox(defence=...)")
        with torch.no_grad():
            surrogate_probs = torch.softmax(self.surrogate(images).float(), dim=1)
        if surrogate_probs.shape != probs.shape:
            raise ValueError(f"the MAD surrogate returns shape {tuple(surrogate_probs.shape)}, the victim "
                             f"{tuple(probs.shape)}: it must have the victim's K outputs")
        n, k = probs.shape
        vertices = torch.eye(k, device=probs.device, dtype=probs.dtype).expand(n, k, k)
        distance = (vertices - probs[:, None]).abs().sum(2)  # ‖e_k − y‖₁ = 2(1 − y_k)
        step = (self.eps / distance.clamp_min(1e-12)).clamp(max=1.0)
        if self.argmax:
            top = probs.argmax(1, keepdim=True)
            gap = probs.gather(1, top) - probs  # ≥ 0; a class tied with the top one cannot move at all
            is_top = torch.arange(k, device=probs.device) == top
            keep = torch.where(is_top, torch.ones_like(gap), gap / (1 + gap) * (1 - 1e-3))
            step = torch.minimum(step, keep)
            candidates = probs[:, None] + step[..., None] * (vertices - probs[:, None])
            best = self.deviation(candidates, probs, surrogate_probs).argmax(1)
        else:
            best = self.deviation(vertices, probs, surrogate_probs).argmax(1)
        rows = torch.arange(n, device=probs.device)
        alpha = step[rows, best][:, None]
        return probs + alpha * (vertices[rows, best] - probs)


class AdaptiveMisinformation(Defence):
    """Adaptive misinformation (Kariyappa & Qureshi, CVPR 2020).

    Queries that look out of distribution (low top-1 confidence ``y_max``) get answers
    blended towards a misinformation output ŷ: ỹ = (1 − α) y + α ŷ with
    α = σ(ν (τ − y_max)), a smooth switch at threshold τ of steepness ν.

    The OOD score is the victim's own top-1 confidence (the paper uses a victim trained
    with outlier exposure, which makes that score sharper). ``misinformation``: a model
    returning logits that is trained to be wrong, the paper's ŷ; default: the victim's
    answer with its log-probabilities reversed, softmax(−log y), which is confidently
    wrong (it puts most mass on the victim's least likely class)."""

    name = "adaptive_misinformation"

    def __init__(self, tau: float = 0.9, nu: float = 1000.0, misinformation: nn.Module | None = None):
        if not is_finite_number(tau) or not 0 <= tau <= 1:
            raise ValueError(f"adaptive_misinformation tau={tau!r} must be a confidence in [0, 1]")
        if not is_finite_number(nu) or nu <= 0:
            raise ValueError(f"adaptive_misinformation nu={nu!r} must be a positive steepness")
        self.tau, self.nu, self.misinformation = float(tau), float(nu), misinformation

    def _params(self):
        return {"tau": self.tau, "nu": self.nu}

    def bind(self, victim, device) -> None:
        if self.misinformation is not None:
            self.misinformation.to(device).eval()

    def __call__(self, probs, images):
        if self.misinformation is None:
            wrong = torch.softmax(-torch.log(probs.clamp_min(1e-12)), dim=1)
        else:
            with torch.no_grad():
                wrong = torch.softmax(self.misinformation(images).float(), dim=1)
        alpha = torch.sigmoid(self.nu * (self.tau - probs.max(1, keepdim=True).values))
        return (1 - alpha) * probs + alpha * wrong


DEFENCES: dict[str, Callable[..., Defence]] = {
    "reverse_sigmoid": ReverseSigmoid, "noise": Noise, "mad": MAD,
    "mad_argmax": lambda **kw: MAD(**kw, argmax=True),
    "adaptive_misinformation": AdaptiveMisinformation,
    "top_k": TopK, "rounded": Rounded, "label": Label,
}
_PARAMS = {"mad_argmax": ("eps", "seed")}  # names whose constructor is a lambda


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
    allowed = _PARAMS.get(name) or tuple(p for p in inspect.signature(DEFENCES[name]).parameters)
    allowed = tuple(p for p in allowed if p not in ("surrogate", "misinformation", "argmax"))
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
