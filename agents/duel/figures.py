"""The duel's figure: over a learning defender's training episodes, the attacker's knockoff
accuracy and the defender's benign cost, beside the defenders that do not learn."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: importing agents leaves the user's backend alone

SMOOTH = 5  # episodes in a learner's running mean


def running_mean(values: np.ndarray, width: int) -> np.ndarray:
    """The mean of each value and the ``width − 1`` before it (fewer at the start)."""
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    ends = np.arange(1, len(values) + 1)
    starts = np.maximum(ends - width, 0)
    return (cumulative[ends] - cumulative[starts]) / (ends - starts)


def plot_training(histories: Mapping[str, Sequence[Sequence[dict]]], path: str | Path, title: str = "") -> Path:
    """``histories``: {defender name: [one list of per-episode results per seed]} (as
    :func:`~agents.duel.play.train_defender` returns them). A learner is drawn as its mean over
    seeds per episode (thin) and the running mean of that over 5 episodes (thick); a defender with
    one result per seed (it does not learn) as a dashed level at its mean over seeds."""
    fig = Figure(figsize=(11, 4.6))
    axes = fig.subplots(1, 2, sharex=True)
    longest = max(len(h) for runs in histories.values() for h in runs)
    for i, (name, runs) in enumerate(histories.items()):
        colour = f"C{i}"
        for ax, key in zip(axes, ("knockoff_accuracy_online", "benign_cost")):
            mean = np.array([[r[key] for r in h] for h in runs], float).mean(0)  # over seeds
            if len(mean) == 1:
                ax.axhline(mean[0], color=colour, linestyle="--", label=name)
                continue
            x = np.arange(1, len(mean) + 1)
            ax.plot(x, mean, color=colour, alpha=0.3, linewidth=0.8)
            ax.plot(x, running_mean(mean, SMOOTH), color=colour, linewidth=2.2, label=name)
    axes[0].set_ylabel("attacker's knockoff accuracy (online, episode end)")
    axes[1].set_ylabel("benign cost (accuracy lost + L1)")
    for ax in axes:
        ax.set_xlabel("training episode")
        ax.set_xlim(1, max(longest, 2))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7.5, frameon=False)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
