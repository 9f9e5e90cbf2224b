"""ActiveThief's selection rules (Pal et al., AAAI 2020): which pool images to query next.

Each round of ActiveThief scores the images not queried yet with the current knockoff and
queries the k best. Pure functions here, batched on the knockoff's device:

* **entropy** (ActiveThief's "uncertainty"): the k largest entropies H = −Σ p log p of the
  knockoff's softmax output.
* **margin**: the k smallest gaps p₍₁₎ − p₍₂₎ between its two largest probabilities (classic
  margin sampling; not one of ActiveThief's rules, offered beside them).
* **k-center** (core-set): greedily, the pool point farthest (Euclidean) from every centre
  so far, which then becomes a centre. As ActiveThief does, the points are the knockoff's
  softmax outputs and the first centres are its outputs on the images already queried (not
  the victim's answers to them). Any other features (e.g. penultimate activations) can be
  given instead.
* **DFAL**: the k smallest DeepFool perturbations on the knockoff (:mod:`.deepfool`, where
  the differences from ActiveThief's DeepFool are listed).
* **DFAL + k-center**: DFAL keeps the ``keep`` nearest-to-the-boundary images (ActiveThief:
  as many as the whole budget), k-center chooses k among them.

Ties go to the lower pool index. On pools too large to score every round (ILSVRC's 1.28 M
images), score a random subsample (:func:`pool_subsample`) of :data:`POOL_SAMPLE` images.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .deepfool import deepfool_distances, evaluating, model_device

POOL_SAMPLE = 10_000  # ActiveThief's default K for DFAL (images scored per round); see pool_subsample
BATCH = 256
DFAL_BATCH = 64  # images per DeepFool pass (its backward pass holds 10 candidate gradients per image)
DISTANCE_BLOCK = 1 << 24  # pool rows × centres per block of the distance matrix (64 MiB of float32)
RULES = ("entropy", "margin", "k-center", "dfal", "dfal-k-center")


class FetchedPool:
    """Pool images decoded on demand: ``pool[a:b]`` is ``fetch(indices[a:b])`` (the env's fetch)."""

    def __init__(self, fetch: Callable[[np.ndarray], torch.Tensor], indices: np.ndarray):
        self.fetch, self.indices = fetch, np.asarray(indices, np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, part: slice) -> torch.Tensor:
        return self.fetch(self.indices[part])


def pool_subsample(size: int, sample: int | None = POOL_SAMPLE, rng: np.random.Generator | None = None) -> np.ndarray:
    """Positions (sorted) of a uniform random subsample of ``sample`` of ``size`` pool images (all if fewer).

    The default 10,000 is ActiveThief's own default for DFAL. Scoring costs one forward pass
    per image (entropy, margin, k-center's outputs) or up to ``max_iter`` × (1 + candidates)
    passes (DFAL), plus decoding the images: ``benchmarks/strategies.py`` measures it.
    """
    if sample is None or size <= sample:
        return np.arange(size)
    if sample < 1:
        raise ValueError(f"sample={sample!r} must be a positive number of images (or None for the whole pool)")
    rng = np.random.default_rng() if rng is None else rng
    return np.sort(rng.choice(size, sample, replace=False))


@torch.no_grad()
def knockoff_outputs(model: nn.Module, images, batch_size: int = BATCH) -> torch.Tensor:
    """The knockoff's softmax outputs (N, K) on ``images`` (a tensor, or anything sliceable to
    tensors such as :class:`FetchedPool`), in eval mode, batched on its device; on that device."""
    device = model_device(model)
    with evaluating(model):
        parts = [model(images[s:s + batch_size].to(device, non_blocking=True)).float().softmax(1)
                 for s in range(0, len(images), batch_size)]
    return torch.cat(parts) if parts else torch.empty(0, 0, device=device)


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ p log p per row (0 log 0 = 0)."""
    return -(probs * probs.clamp_min(torch.finfo(probs.dtype).tiny).log()).sum(1)


def margin(probs: torch.Tensor) -> torch.Tensor:
    """p₍₁₎ − p₍₂₎ per row."""
    top2 = probs.topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def best(scores: torch.Tensor, k: int, largest: bool) -> np.ndarray:
    """Indices of the k largest (or smallest) scores; ties to the lower index."""
    _check_k(k, len(scores))
    order = torch.sort(scores.cpu(), descending=largest, stable=True).indices
    return order[:k].numpy().astype(np.int64)


def select_entropy(probs: torch.Tensor, k: int) -> np.ndarray:
    """The k most uncertain images: largest entropy of the knockoff's output."""
    return best(entropy(probs), k, largest=True)


def select_margin(probs: torch.Tensor, k: int) -> np.ndarray:
    """The k images with the smallest top-1 − top-2 gap of the knockoff's output."""
    return best(margin(probs), k, largest=False)


def k_center_greedy(points: torch.Tensor, centres: torch.Tensor | None, k: int) -> np.ndarray:
    """Greedy k-center: k times, the point farthest from its nearest centre joins the centres.

    ``points`` (N, D) and ``centres`` (M, D), on any one device (M may be 0 or None). Keeps
    each point's distance to its nearest centre and lowers it after every pick: O(N·(M + k)·D),
    the same choices as recomputing every distance (ActiveThief's way). Without centres the
    first pick is the point farthest from the points' mean. A point is never picked twice.
    """
    _check_k(k, len(points))
    points = points.float().flatten(1)
    if centres is None or len(centres) == 0:
        nearest = torch.cdist(points, points.mean(0, keepdim=True)).squeeze(1)
    else:
        centres = centres.float().flatten(1).to(points.device)
        nearest = torch.full((len(points),), float("inf"), device=points.device)
        block = max(1, DISTANCE_BLOCK // max(1, len(points)))
        for s in range(0, len(centres), block):
            nearest = torch.minimum(nearest, torch.cdist(points, centres[s:s + block]).min(1).values)
    picked = []
    for _ in range(k):
        i = int(nearest.argmax())
        picked.append(i)
        nearest = torch.minimum(nearest, torch.cdist(points, points[i:i + 1]).squeeze(1))
        nearest[i] = -1.0  # chosen: below any distance, so never chosen again
    return np.asarray(picked, np.int64)


def select_dfal(distance: torch.Tensor, changed: torch.Tensor, k: int) -> np.ndarray:
    """The k images nearest the knockoff's decision boundary: smallest DeepFool perturbation,
    every image whose prediction DeepFool changed before any it did not."""
    _check_k(k, len(distance))
    order = np.lexsort((distance.cpu().numpy(), ~changed.cpu().numpy()))
    return order[:k].astype(np.int64)


def select_dfal_k_center(distance: torch.Tensor, changed: torch.Tensor, points: torch.Tensor,
                         centres: torch.Tensor | None, k: int, keep: int) -> np.ndarray:
    """DFAL keeps the ``keep`` images nearest the boundary, k-center picks k of them."""
    kept = select_dfal(distance, changed, min(max(keep, k), len(distance)))
    return kept[k_center_greedy(points[torch.from_numpy(kept).to(points.device)], centres, k)]


def select(rule: str, model: nn.Module, images, k: int, queried=None, keep: int | None = None,
           batch_size: int = BATCH, dfal_batch_size: int = DFAL_BATCH, **deepfool) -> np.ndarray:
    """Positions in ``images`` of the k images ``rule`` queries next (see :data:`RULES`).

    ``queried``: the images already queried (k-center's first centres; a tensor or sliceable).
    ``keep``: DFAL + k-center's DFAL shortlist (required there; ActiveThief keeps as many images
    as the attack's whole budget). ``batch_size``: images per
    forward pass; ``dfal_batch_size``: images per DeepFool batch (each is copied ``candidates``
    times for the gradients). ``deepfool``: options of
    :func:`agents.active.deepfool.deepfool_batch` (``max_iter``, ``overshoot``, ``candidates``, ``on``).
    """
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose one of {RULES}")
    if rule == "dfal-k-center" and keep is None:
        raise ValueError("dfal-k-center needs keep, the size of DFAL's shortlist for k-center (ActiveThief: the "
                         "attack's whole budget)")
    if rule in ("entropy", "margin"):
        probs = knockoff_outputs(model, images, batch_size)
        return select_entropy(probs, k) if rule == "entropy" else select_margin(probs, k)
    centres = knockoff_outputs(model, queried, batch_size) if queried is not None and len(queried) else None
    if rule == "k-center":
        return k_center_greedy(knockoff_outputs(model, images, batch_size), centres, k)
    distance, changed = deepfool_distances(model, images, batch_size=dfal_batch_size, **deepfool)
    if rule == "dfal":
        return select_dfal(distance, changed, k)
    return select_dfal_k_center(distance, changed, knockoff_outputs(model, images, batch_size), centres, k, keep)


def _check_k(k: int, size: int) -> None:
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= size:
        raise ValueError(f"k={k!r} images cannot be chosen from a pool of {size}: give 1 ≤ k ≤ pool size")
