"""TensorBoard logs and PNG figures of an attack: the policy over time, rewards, accuracy.

The policy over coarse nodes is drawn as a stacked area (like the paper's Figure S8b) and
as one scalar per coarse node, grouped in a custom-scalars layout. Scalars are written as
the attack runs; the figures are drawn at the end, once. Reward scalars are averaged over
``reward_every`` steps and written once per block, so logging costs a few additions per
step rather than seven protobuf events.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # not pyplot: importing agents leaves the user's backend alone
from torch.utils.tensorboard import SummaryWriter

from knockoff_env.core.rewards import COMPONENTS


def _tag(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


class AttackLog:
    """Writes one attack's scalars and figures to ``logdir``."""

    def __init__(self, logdir: str | Path, coarse_names: list[str], title: str = "", reward_every: int = 1):
        self.logdir = Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.coarse_names, self.title = list(coarse_names), title
        self.writer = SummaryWriter(str(self.logdir), flush_secs=30)
        self.writer.add_custom_scalars({
            "policy": {"π(coarse node) over queries":
                       ["Multiline", [f"policy/{_tag(c)}" for c in self.coarse_names]]},
            "rewards": {"raw": ["Multiline", [f"reward/{c}" for c in COMPONENTS]],
                        "normalised": ["Multiline", [f"reward/{c}_normalised" for c in COMPONENTS]]},
        })
        self.policy_queries: list[int] = []
        self.policy_history: list[np.ndarray] = []
        self.accuracy_curve: list[tuple[int, float]] = []
        self.reward_every = max(1, int(reward_every))
        self._reward_sums: dict[str, float] = {}
        self._reward_count, self._reward_queries = 0, 0

    def rewards(self, queries: int, reward: float, parts: dict[str, float]) -> None:
        sums = self._reward_sums
        sums["total"] = sums.get("total", 0.0) + reward
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + value
        self._reward_count, self._reward_queries = self._reward_count + 1, queries
        if self._reward_count >= self.reward_every:
            self._flush_rewards()

    def _flush_rewards(self) -> None:
        """Write the mean of each reward scalar over the block, at the block's last query count."""
        for name, total in self._reward_sums.items():
            self.writer.add_scalar(f"reward/{name}", total / self._reward_count, self._reward_queries)
        self._reward_sums, self._reward_count = {}, 0

    def policy(self, queries: int, coarse_probabilities: np.ndarray) -> None:
        self.policy_queries.append(queries)
        self.policy_history.append(np.asarray(coarse_probabilities, np.float64))
        for name, p in zip(self.coarse_names, coarse_probabilities):
            self.writer.add_scalar(f"policy/{_tag(name)}", float(p), queries)

    def accuracy(self, queries: int, knockoff_accuracy: float) -> None:
        self.accuracy_curve.append((queries, knockoff_accuracy))
        self.writer.add_scalar("accuracy/knockoff", knockoff_accuracy, queries)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def retrain_epoch(self, record: dict) -> None:
        """One offline epoch: its training loss, lr and held-out agreement, against the epoch."""
        for name in ("loss", "lr", "heldout_agreement"):
            if record[name] == record[name]:  # NaN (nothing held out) is not logged
                self.writer.add_scalar(f"retrain/{name}", record[name], record["epoch"])

    def close(self, victim_accuracy: float | None = None) -> dict[str, Path]:
        """Draw the figures into TensorBoard and as PNG files; returns the PNG paths."""
        paths = {}
        if self._reward_count:
            self._flush_rewards()
        if self.policy_history:
            figure = self._policy_figure()
            self.writer.add_figure("policy/over_time", figure, self.policy_queries[-1], close=False)
            paths["policy"] = self.logdir / "policy.png"
            figure.savefig(paths["policy"], dpi=120, bbox_inches="tight")
        if self.accuracy_curve:
            figure = self._accuracy_figure(victim_accuracy)
            self.writer.add_figure("accuracy/curve", figure, self.accuracy_curve[-1][0], close=False)
            paths["accuracy"] = self.logdir / "accuracy.png"
            figure.savefig(paths["accuracy"], dpi=120, bbox_inches="tight")
        self.writer.close()
        return paths

    def _policy_figure(self):
        history = np.stack(self.policy_history, axis=1)
        figure = Figure(figsize=(8, 4))
        ax = figure.subplots()
        colours = matplotlib.colormaps["tab20" if len(self.coarse_names) > 10 else "tab10"].colors
        ax.stackplot(self.policy_queries, history, labels=self.coarse_names,
                     colors=[colours[i % len(colours)] for i in range(len(self.coarse_names))], alpha=0.9)
        ax.set(xlim=(self.policy_queries[0], self.policy_queries[-1]), ylim=(0, 1), xlabel="queries",
               ylabel="π(coarse node)", title=self.title or "policy over time")
        if len(self.coarse_names) <= 20:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize="small", frameon=False)
        return figure

    def _accuracy_figure(self, victim_accuracy: float | None):
        queries, accuracy = zip(*self.accuracy_curve)
        figure = Figure(figsize=(6, 4))
        ax = figure.subplots()
        ax.plot(queries, accuracy, marker="o", label="knockoff (online)")
        if victim_accuracy is not None:
            ax.axhline(victim_accuracy, color="k", linestyle="--", label="victim")
        ax.set(xlabel="queries", ylabel="top-1 accuracy", ylim=(0, 1), title=self.title or "knockoff accuracy")
        ax.legend()
        return figure
