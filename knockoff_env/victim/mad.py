"""Prediction poisoning by Maximising Angular Deviation (Orekondy, Schiele, Fritz, ICLR 2020),
as the authors' code (tribhuvanesh/prediction-poisoning, ``MAD`` with ``objmax``) does it.

The attacker's training signal for an answer y is a(y) = Gᵀy, G = ∇_W(−log F(x)) (K × D)
the Jacobian of the defender's surrogate F for the weight W of its last layer. MAD answers
ỹ = (1 − α) y + α y* with a target y* of large deviation ‖â(y*) − â(y)‖² (â = a/‖a‖) and
α = min(1, ε / (‖y − y*‖₁ + 10⁻⁷)): the line search spends the L1 budget ε.

Targets (the "oracles" of the reference):

* ``mad``: the simplex vertex e_k of largest deviation.
* ``mad_argmax``: near-uniform mixtures over a subset S of classes that contains the top
  class t: y* ∝ 1_S + 10⁻⁵ e_t, so t stays on top. Every subset for K ≤ 10; above, the
  reference's greedy search (grow S from {t} by the class that scores best, keep the best
  mixture seen, stop after 1,024 candidates); the reference fails once no class is left,
  here the search ends there.
* ``mad_argmax_vertex``: this project's earlier search, kept because it deviates more on
  small budgets (measured in ``benchmarks/mad.py``): every vertex, each with the largest
  step within ε that keeps the top-1, and the one of largest deviation at that step.

The gradient for any head: when the last weighted layer is an ``nn.Linear`` whose output
is the surrogate's output (the logits), Gᵀc = −(c − (Σc) p) ⊗ h with p = F(x) and h the
layer's input, so the deviation is a cosine in K dimensions and needs only p (closed form,
no per-sample autograd). Otherwise G is taken per sample with autograd for that layer's
weight (``torch.func`` checks both in ``tests/test_mad.py``).
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import torch
from torch import nn

from ..checks import is_finite_number
from .defence_base import Defence

TOP_BONUS = 1e-5      # the reference's up-weighting of the top class in an argmax target
ALPHA_EPS = 1e-7      # the reference's guard in α = ε / (‖y − y*‖₁ + 1e-7)
GREEDY_CANDIDATES = 1024


def fresh_copy(model: nn.Module, seed: int) -> nn.Module:
    """A copy of ``model``'s architecture with freshly initialised weights (under ``seed``)."""
    surrogate = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in surrogate.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
    return surrogate.eval()


def last_layer(model: nn.Module) -> nn.Module:
    """The last submodule (in registration order) that owns a ``weight`` parameter."""
    layers = [m for m in model.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)]
    if not layers:
        raise ValueError(f"the MAD surrogate {type(model).__name__} has no layer with a weight to take gradients for")
    return layers[-1]


class Scorer:
    """Deviation ‖â(c) − â(y)‖² of candidate targets c (n, m, K) for answers y (n, K),
    through a quadratic form: â(c)·â(y) = cᵀMy / √(cᵀMc · yᵀMy), M = G Gᵀ."""

    def __init__(self, apply: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor):
        self.apply = apply
        my = apply(y[:, None])[:, 0]
        self.my, self.yy = my, (y * my).sum(1).clamp_min(1e-30)

    def __call__(self, candidates: torch.Tensor) -> torch.Tensor:
        mc = self.apply(candidates)
        cc = (candidates * mc).sum(2).clamp_min(1e-30)
        cos = (candidates * self.my[:, None]).sum(2) / (cc * self.yy[:, None]).sqrt()
        return 2 - 2 * cos


def closed_form(p: torch.Tensor):
    """M c for a linear last layer: with A c = c − (Σc) p, M = AᵀA (the ‖h‖² factor cancels)."""
    pp = (p * p).sum(1)

    def apply(c: torch.Tensor) -> torch.Tensor:  # c: (n, m, K)
        total, pc = c.sum(2, keepdim=True), (c * p[:, None]).sum(2, keepdim=True)
        return c - total * p[:, None] - pc + (pp[:, None, None] * total)
    return apply


def jacobian_gram(model: nn.Module, layer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """G Gᵀ (n, K, K) with G = ∇_W log F(x), W = ``layer.weight``, one sample at a time."""
    grams = []
    with torch.enable_grad():
        for x in images:
            log_probs = torch.log_softmax(model(x[None]).double(), 1)[0]
            k = log_probs.shape[0]
            g, = torch.autograd.grad(log_probs, layer.weight, torch.eye(k, dtype=log_probs.dtype),
                                     is_grads_batched=True)
            g = g.reshape(k, -1).double()
            grams.append(g @ g.T)
    return torch.stack(grams)


class MAD(Defence):
    """MAD with the L1 budget ``eps`` and target search ``target`` ("vertex", "argmax" or
    "argmax_vertex"; see the module). ``surrogate``: the defender's model F (an
    ``nn.Module`` returning logits) standing in for the attacker's; default: a freshly
    initialised copy of the victim's architecture (seeded by ``seed``), as the reference's
    chance-level proxy."""

    TARGETS = {"vertex": "mad", "argmax": "mad_argmax", "argmax_vertex": "mad_argmax_vertex"}

    def __init__(self, eps: float = 0.5, surrogate: nn.Module | None = None, seed: int = 0, target: str = "vertex"):
        if not is_finite_number(eps) or not 0 <= eps <= 2:
            raise ValueError(f"mad eps={eps!r} must be an L1 budget in [0, 2]")
        if surrogate is not None and not isinstance(surrogate, nn.Module):
            raise TypeError(f"mad surrogate must be an nn.Module returning logits, got {type(surrogate).__name__}")
        if target not in self.TARGETS:
            raise ValueError(f"mad target={target!r}; choose one of {sorted(self.TARGETS)}")
        self.eps, self.seed, self.target, self.surrogate = float(eps), int(seed), target, surrogate
        self.name = self.TARGETS[target]

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
        self.layer = last_layer(self.surrogate)
        self.layer.weight.requires_grad_(True)  # the only gradient MAD takes

    def scorer(self, images: torch.Tensor, y: torch.Tensor) -> Scorer:
        """The deviation of targets for these queries: closed form or per-sample autograd."""
        seen = {}
        handle = self.layer.register_forward_hook(lambda m, i, out: seen.setdefault("out", out))
        try:
            with torch.no_grad():
                logits = self.surrogate(images)
        finally:
            handle.remove()
        if logits.shape != y.shape:
            raise ValueError(f"the MAD surrogate returns shape {tuple(logits.shape)}, the victim "
                             f"{tuple(y.shape)}: it must have the victim's K outputs")
        if isinstance(self.layer, nn.Linear) and seen.get("out") is logits:
            return Scorer(closed_form(torch.softmax(logits.double(), 1)), y)
        gram = jacobian_gram(self.surrogate, self.layer, images)
        return Scorer(lambda c: c @ gram, y)

    def __call__(self, probs, images):
        if self.surrogate is None:
            raise RuntimeError("MAD was not bound to a victim; use it through BlackBox(defence=...)")
        if self.eps == 0:
            return probs
        k = probs.shape[1]
        width = 2 ** (k - 1) if self.target == "argmax" and k <= 10 else k  # candidates per answer
        rows = max(1, 2 ** 24 // (width * k))  # answers per chunk: at most 16M candidate entries
        return torch.cat([self.answer(probs[i:i + rows].double(), images[i:i + rows])
                          for i in range(0, len(probs), rows)]).to(probs.dtype)

    def answer(self, y: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """ỹ for answers y (float64) to these queries."""
        if self.target == "argmax_vertex":
            return argmax_vertex(y, self.scorer(images, y), self.eps)
        if self.target == "vertex":
            n, k = y.shape
            target = self.pick(self.scorer(images, y), torch.eye(k, dtype=y.dtype, device=y.device).expand(n, k, k))
        elif y.shape[1] <= 10:
            target = self.pick(self.scorer(images, y), subset_targets(y))
        else:
            smoothed = (y + 1e-8) / (y + 1e-8).sum(1, keepdim=True)  # as the reference's greedy search
            target = greedy_target(self.scorer(images, smoothed), y)
        return line_search(y, target, self.eps)

    @staticmethod
    def pick(score: Scorer, candidates: torch.Tensor) -> torch.Tensor:
        """The candidate of largest deviation (the first of equals, as the reference)."""
        best = score(candidates).argmax(1)
        return candidates[torch.arange(len(best), device=best.device), best]


def line_search(y: torch.Tensor, target: torch.Tensor, eps: float) -> torch.Tensor:
    """ỹ = (1 − α) y + α y*, α = ε / (‖y − y*‖₁ + 1e-7) clipped to [0, 1]."""
    alpha = (eps / ((y - target).abs().sum(1, keepdim=True) + ALPHA_EPS)).clamp(0, 1)
    return (1 - alpha) * y + alpha * target


_SUBSETS: dict[int, torch.Tensor] = {}


def subset_targets(y: torch.Tensor) -> torch.Tensor:
    """Every mixture 1_S + 10⁻⁵ e_t over subsets S ∋ t (t the top class), normalised, in the
    reference's order (binary counting, first class most significant): (n, 2^(K−1), K)."""
    n, k = y.shape
    if k not in _SUBSETS:
        _SUBSETS[k] = torch.tensor(list(itertools.product([0.0, 1.0], repeat=k)), dtype=torch.float64)
    table = _SUBSETS[k].to(y.device)
    top = y.argmax(1)
    keep = table[:, top].T.bool()  # (n, 2^K): subsets that contain each row's top class
    candidates = table.expand(n, -1, -1)[keep].reshape(n, -1, k).clone()
    candidates[torch.arange(n, device=y.device), :, top] += TOP_BONUS
    return candidates / candidates.sum(2, keepdim=True)


def greedy_target(score: Scorer, y: torch.Tensor, budget: int = GREEDY_CANDIDATES) -> torch.Tensor:
    """The reference's greedy subset search for K > 10, batched over the answers."""
    n, k = y.shape
    rows = torch.arange(n, device=y.device)
    top = y.argmax(1)
    chosen = torch.zeros(n, k, dtype=y.dtype, device=y.device)
    chosen[rows, top] = 1
    best, best_value, tried = None, torch.full((n,), -1.0, dtype=y.dtype, device=y.device), 0
    while tried < budget and (chosen == 0).any():
        free = (chosen == 0).nonzero()[:, 1].reshape(n, -1)  # (n, m), ascending as the reference's k_list
        m = free.shape[1]
        candidates = chosen[:, None].repeat(1, m, 1)
        candidates.scatter_(2, free[..., None], 1.0)
        candidates[rows, :, top] += TOP_BONUS
        candidates = candidates / candidates.sum(2, keepdim=True)
        values = score(candidates)
        value, index = values.max(1)
        better = value > best_value
        pick = candidates[rows, index]
        best = pick if best is None else torch.where(better[:, None], pick, best)
        best_value = torch.where(better, value, best_value)
        chosen[rows, free[rows, index]] = 1
        tried += m
    return best


def argmax_vertex(y: torch.Tensor, score: Scorer, eps: float) -> torch.Tensor:
    """Every vertex e_k with the largest step that keeps the top-1 (α < d/(1 + d),
    d = y_top − y_k) and stays within ε; the one of largest deviation at its step."""
    n, k = y.shape
    vertices = torch.eye(k, dtype=y.dtype, device=y.device).expand(n, k, k)
    step = (eps / (vertices - y[:, None]).abs().sum(2).clamp_min(1e-12)).clamp(max=1.0)
    top = y.argmax(1, keepdim=True)
    gap = y.gather(1, top) - y  # ≥ 0; a class tied with the top one cannot move at all
    keep = torch.where(torch.arange(k, device=y.device) == top, torch.ones_like(gap), gap / (1 + gap) * (1 - 1e-3))
    step = torch.minimum(step, keep)
    candidates = y[:, None] + step[..., None] * (vertices - y[:, None])
    best = score(candidates).argmax(1)
    return candidates[torch.arange(n, device=y.device), best]
