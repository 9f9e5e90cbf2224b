"""The paper's rewards: certainty, diversity (over a window of Δ queries) and the knockoff's loss.

Each is computed per image and averaged over the step's images. ``reward="all"`` (or any
weighted subset) first puts every component on [0, 1] with a running min-max normaliser,
then takes their weighted mean; a single component is returned raw, as in the paper's
ablation. All three components, raw and normalised, are always reported.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..checks import is_finite_number, is_integer

COMPONENTS = ("certainty", "diversity", "loss")
PART_NAMES = [key for name in COMPONENTS for key in (name, f"{name}_normalised")]  # info["rewards"]'s order
PART_ORDER = [i for c in range(len(COMPONENTS)) for i in (c, c + len(COMPONENTS))]


def certainty(y: torch.Tensor) -> torch.Tensor:
    """R_cert per image: margin y_(1) − y_(2) between the two largest probabilities."""
    top2 = y.topk(2, dim=1).values
    return top2[:, 0] - top2[:, 1]


def diversity(y: torch.Tensor, window_mean: torch.Tensor) -> torch.Tensor:
    """R_div per image: Σ_k max(0, y_k − ȳ_k), ȳ the mean victim output over the window."""
    return (y - window_mean).clamp_min(0).sum(1)


def parse_reward(reward: str | Sequence[str] | Mapping[str, float]) -> dict[str, float]:
    """``"all"``, one component name, a list of names, or ``{name: weight}`` → weights."""
    if isinstance(reward, str):
        weights = dict.fromkeys(COMPONENTS, 1.0) if reward == "all" else {reward: 1.0}
    elif isinstance(reward, Mapping):
        weights = {str(k): v for k, v in reward.items()}
    elif isinstance(reward, Sequence):
        weights = dict.fromkeys(map(str, reward), 1.0)
    else:
        raise TypeError(f"reward must be 'all', a component name, a list or a dict, got {reward!r}")
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise ValueError(f"unknown reward component(s) {unknown}; choose from 'all' or {COMPONENTS}")
    for name, w in weights.items():
        if not is_finite_number(w) or w < 0:
            raise ValueError(f"reward weight for {name!r} must be a finite number ≥ 0, got {w!r}")
    weights = {k: float(w) for k, w in weights.items() if w > 0}
    if not weights:
        raise ValueError("reward needs at least one component with a positive weight")
    return weights


class RewardFunction:
    """Computes the step reward from the victim's answers and the knockoff's loss.

    Args:
        weights: component → weight (see :func:`parse_reward`).
        num_classes: K, the width of the victim's answers.
        window: Δ, the number of most recent queries (images, the current step's included)
            whose mean output ȳ the diversity reward compares against (paper: 25).
        device: where the window lives (the victim's device).
        max_queries: the most queries an episode makes (the budget); a longer window holds
            every query either way, so it is shortened to this and no memory is wasted.
    """

    def __init__(self, weights: Mapping[str, float], num_classes: int, window: int = 25,
                 device: torch.device | str = "cpu", max_queries: int | None = None):
        if not is_integer(window) or window < 1:
            raise ValueError(f"diversity window Δ={window!r} must be a positive integer")
        if num_classes < 2:
            raise ValueError(f"the victim needs at least 2 classes for the certainty margin, got {num_classes}")
        self.weights = dict(weights)
        self._total = sum(self.weights.values())
        self.window = int(window) if max_queries is None else min(int(window), max_queries)
        self.buffer = torch.zeros(self.window, num_classes, device=device)
        self.reset()

    def reweight(self, weights: Mapping[str, float]) -> None:
        """New component weights (before an episode: the online knockoff was switched on or off)."""
        self.weights = dict(weights)
        self._total = sum(self.weights.values())

    def reset(self) -> None:
        self.buffer.zero_()
        self.filled = 0
        self.head = 0
        self.low = np.full(len(COMPONENTS), np.inf)
        self.high = np.full(len(COMPONENTS), -np.inf)

    def _remember(self, y: torch.Tensor) -> torch.Tensor:
        """Push the step's answers into the window (at most two slice copies); return ȳ."""
        y = y[-self.window:]
        n = len(y)
        first = min(n, self.window - self.head)
        self.buffer[self.head:self.head + first] = y[:first]
        if first < n:
            self.buffer[:n - first] = y[first:]
        self.head = (self.head + n) % self.window
        self.filled = min(self.filled + n, self.window)
        return self.buffer.sum(0) / self.filled  # rows not yet filled are zero

    def measure(self, y: torch.Tensor, loss_per_image: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw components ``(certainty, diversity, loss)`` and the window mean ȳ, both left on
        the answers' device so the caller can bring them to the host in one copy. Without a
        loss (no online knockoff) that component is NaN: not measured."""
        window_mean = self._remember(y)
        loss = y.new_tensor(float("nan")) if loss_per_image is None else loss_per_image.mean().to(y.device, y.dtype)
        raw = torch.stack([certainty(y).mean(), diversity(y, window_mean).mean(), loss])
        return raw, window_mean

    def measure_many(self, y: np.ndarray, sizes: Sequence[int],
                     losses: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`measure` for consecutive steps at once, on the host: ``y`` (float32) holds their
        answers in query order, ``sizes`` the images of each, ``losses`` each step's mean loss
        (None: not measured). Returns the (steps, 3) raw components and the window mean after the
        last step. Each step's ȳ covers the Δ queries up to its end, as step by step (summed in
        another order, so equal to float rounding); the window is left as step-by-step pushes
        leave it."""
        n, w, k = len(y), self.window, y.shape[1]
        sizes = np.asarray(sizes)
        window = self.buffer.cpu().numpy()  # a view on the CPU
        history = np.concatenate([window[(self.head - self.filled + np.arange(self.filled)) % w], y]) \
            if self.filled else y
        sums = np.zeros((len(history) + 1, k))
        np.cumsum(history, 0, dtype=np.float64, out=sums[1:])
        ends = sizes.cumsum() + self.filled
        starts = np.maximum(ends - w, 0)
        means = ((sums[ends] - sums[starts]) / (ends - starts)[:, None]).astype(y.dtype)  # ȳ of each step
        top2 = np.partition(y, k - 2, axis=1)[:, k - 2:]
        per_image = np.empty((n, 2))
        per_image[:, 0] = top2[:, 1] - top2[:, 0]
        per_image[:, 1] = np.maximum(y - means.repeat(sizes, axis=0), 0).sum(1)
        raw = np.empty((len(sizes), 3))
        raw[:, :2] = np.add.reduceat(per_image, ends - self.filled - sizes, axis=0) / sizes[:, None]
        raw[:, 2] = np.nan if losses is None else losses
        last = min(n, w)  # row r of y goes to slot (head + r) % Δ
        window[(self.head + n - last + np.arange(last)) % w] = y[n - last:]
        if self.buffer.device.type != "cpu":  # the window lives on a GPU: the host copy goes back
            self.buffer.copy_(torch.from_numpy(window))
        self.head, self.filled = (self.head + n) % w, min(self.filled + n, w)
        return raw, means[-1]

    def score_many(self, raw: np.ndarray) -> tuple[np.ndarray, list[dict[str, float]]]:
        """:meth:`score` of consecutive steps from their (steps, 3) raw components: the rewards
        and each step's components, raw and normalised (the running min-max carried through)."""
        raw = np.asarray(raw, np.float64)
        normalised = np.zeros_like(raw)
        for i, name in enumerate(COMPONENTS):
            value = raw[:, i]
            if name not in self.weights and np.isnan(value).all():  # not measured, and not needed
                continue
            if not np.isfinite(value).all():
                raise FloatingPointError(f"the {name} reward is not finite: the knockoff diverged; lower knockoff_lr")
            low = np.minimum.accumulate(np.concatenate([[self.low[i]], value]))[1:]
            high = np.maximum.accumulate(np.concatenate([[self.high[i]], value]))[1:]
            self.low[i], self.high[i] = low[-1], high[-1]
            spread = high - low
            normalised[:, i] = np.where(spread > 0, (value - low) / np.where(spread > 0, spread, 1), 0.5)
        if len(self.weights) == 1:
            rewards = raw[:, COMPONENTS.index(next(iter(self.weights)))].copy()
        else:
            rewards = sum(w * normalised[:, COMPONENTS.index(name)] for name, w in self.weights.items()) / self._total
        parts = [dict(zip(PART_NAMES, row)) for row in np.concatenate([raw, normalised], 1)[:, PART_ORDER].tolist()]
        return np.asarray(rewards, np.float64), parts

    def score(self, raw: np.ndarray) -> tuple[float, dict[str, float]]:
        """Step reward and every component raw and normalised, from the host copy of :meth:`measure`."""
        values = [float(v) for v in raw]
        parts = {}
        for i, (name, value) in enumerate(zip(COMPONENTS, values)):
            if np.isnan(value) and name not in self.weights:  # not measured, and not needed
                parts[name], parts[f"{name}_normalised"] = value, 0.0
                continue
            if not np.isfinite(value):
                raise FloatingPointError(f"the {name} reward is not finite: the knockoff diverged; lower knockoff_lr")
            low, high = min(self.low[i], value), max(self.high[i], value)
            self.low[i], self.high[i] = low, high
            parts[name] = value
            parts[f"{name}_normalised"] = (value - low) / (high - low) if high > low else 0.5
        if len(self.weights) == 1:
            (name,) = self.weights
            return parts[name], parts
        value = sum(w * parts[f"{name}_normalised"] for name, w in self.weights.items()) / self._total
        return float(value), parts

    def __call__(self, y: torch.Tensor, loss_per_image: torch.Tensor | None) -> tuple[float, dict[str, float]]:
        """Step reward and every component raw and normalised, from answers ``y`` (n, K)."""
        return self.score(self.measure(y, loss_per_image)[0].cpu().numpy())

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"buffer": self.buffer.cpu().numpy(), "filled": np.int64(self.filled),
                "head": np.int64(self.head), "low": self.low.copy(), "high": self.high.copy()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.buffer.copy_(torch.as_tensor(state["buffer"]))
        self.filled, self.head = int(state["filled"]), int(state["head"])
        self.low, self.high = np.array(state["low"], np.float64), np.array(state["high"], np.float64)
