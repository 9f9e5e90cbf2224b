"""The duel's figure: over a learning defender's training episodes, the attacker's knockoff
accuracy and the defender's benign cost, beside the defenders that do not learn."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure  # not pyplot: importing agents leaves the user's backend alone


def plot_training(histories: Mapping[str, Sequence[Sequence[dict]]], path: str | Path, title: str = "") -> Path:
    """``histories``: {defender name: [one list of per-episode results per seed]} (as
    :func:`~agents.duel.play.train_defender` returns them; a defender that does not learn may have
    one episode per seed, drawn as a level line). Plots the mean over seeds, shaded by min–max."""
    fig = Figure(figsize=(11, 4))
    axes = fig.subplots(1, 2, sharex=True)
    longest = max(len(h) for runs in histories.values() for h in runs)
    for i, (name, runs) in enumerate(histories.items()):
        colour = f"C{i}"
        for ax, key in zip(axes, ("knockoff_accuracy_online", "benign_cost")):
            values = np.array([[r[key] for r in h] for h in runs], float)  # (seeds, episodes)
            if values.shape[1] == 1:  # does not learn: its level over the whole x range
                values = np.repeat(values, longest, axis=1)
            x = np.arange(1, values.shape[1] + 1)
            ax.plot(x, values.mean(0), color=colour, label=name, linestyle="-" if len(runs[0]) > 1 else "--")
            ax.fill_between(x, values.min(0), values.max(0), color=colour, alpha=0.15)
    axes[0].set_ylabel("attacker's knockoff accuracy (online, episode end)")
    axes[1].set_ylabel("benign cost (accuracy lost + L1)")
    for ax in axes:
        ax.set_xlabel("training episode")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return path
