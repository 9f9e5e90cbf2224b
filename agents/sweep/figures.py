"""The paper-style figures a finished sweep's axes allow, as PNGs, plus a TensorBoard HParams view.

From the results table (finished trials only), one line or bar per combination of the
other varying axes (e.g. per strategy):

* the headline, the knockoff's final accuracy (retrained, if the spec retrains) per
  strategy: ``accuracy_vs_budget.png`` when the budget is an axis (Fig. S1), else
  ``accuracy_by_agent.png``, bars with each seed's value as a dot;
* ``accuracy_vs_queries.png`` — the online knockoff's accuracy-vs-queries curve, for the
  largest budget;
* ``hierarchy_vs_flat.png`` — the same for ``adaptive`` against ``adaptive-flat`` only
  (Fig. S11), when both were swept;
* ``accuracy_vs_<axis>.png`` for every other numeric axis (τ curves, Fig. S12) and
  ``accuracy_by_<axis>.png`` bars for every other non-numeric one (``reward``: the reward
  ablation, Fig. S9; ``output``, ``defence``, …);
* ``seen_unseen.png`` — per-class accuracy on seen and unseen classes (Fig. S10), when some
  trial left classes unseen;
* ``tensorboard/`` — one HParams run per trial: its axis values and its metrics.

Conventions, the same in every figure and stated in each one's caption: the mean over
seeds, and as its spread the sample standard deviation (ddof=1) over seeds (none with one
seed; the title then names the seed). A strategy keeps its colour in every figure of every
sweep (:data:`AGENT_COLOURS`); other groups keep theirs across one sweep's figures.
"""
from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .results import read_results

METRICS = ("knockoff_accuracy", "knockoff_accuracy_online", "times_victim", "agreement", "seconds")
FLAT_PAIR = ("adaptive", "adaptive-flat")
AGENT_COLOURS = {"adaptive": "tab:blue", "adaptive-flat": "tab:green", "random": "tab:orange"}
OTHER_COLOURS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")
MARKERS, LINESTYLES = "osD^v<>p*", ("-", "--", ":", "-.")
STD = "sample standard deviation (ddof=1) over seeds"


def plot_sweep(out: str | Path) -> dict[str, list]:
    """Write the figures for the sweep in ``out``; returns ``{"written": [paths], "skipped": [reasons]}``."""
    out = Path(out)
    spec = json.loads((out / "spec.json").read_text()) if (out / "spec.json").exists() else {"axes": {}}
    table = read_results(out)
    ok = table[table["status"] == "ok"].copy()
    if ok.empty:
        raise ValueError(f"no finished trial in {out}/results.parquet; nothing to plot (see its status/error columns)")
    varying = [a for a in spec["axes"] if a in ok and ok[a].nunique() > 1]
    plot = _Plotter(ok, varying)
    written, skipped = [], []

    def save(figure: Figure, name: str) -> None:
        path = out / name
        figure.savefig(path, dpi=120, bbox_inches="tight")
        written.append(path)

    if "budget" in varying:
        save(plot.lines(ok, "budget", _others(varying, "budget")), "accuracy_vs_budget.png")
    else:
        save(plot.bars(ok, "agent", _others(varying, "agent")), "accuracy_by_agent.png")
        skipped.append("accuracy_vs_budget.png: the budget is not an axis (accuracy_by_agent.png has the headline)")
    largest = ok[ok["budget"] == ok["budget"].max()] if "budget" in ok else ok
    if largest["curve_queries"].map(len).gt(0).all():
        save(plot.curves(largest, _others(varying, "budget")), "accuracy_vs_queries.png")
    if "agent" in varying and set(FLAT_PAIR) <= set(ok["agent"]):
        pair = ok[ok["agent"].isin(FLAT_PAIR)]
        others = _others(varying, "budget")
        figure = (plot.lines(pair, "budget", others) if "budget" in varying
                  else plot.curves(pair[pair["budget"] == pair["budget"].max()] if "budget" in pair else pair, others))
        save(figure, "hierarchy_vs_flat.png")
    else:
        skipped.append("hierarchy_vs_flat.png: needs agents adaptive and adaptive-flat")
    for axis in varying:
        if axis in ("agent", "seed", "budget"):
            continue
        others = _others(varying, axis)
        if pd.api.types.is_numeric_dtype(ok[axis]):
            save(plot.lines(ok, axis, others), f"accuracy_vs_{axis}.png")
        else:
            save(plot.bars(ok, axis, others), f"accuracy_by_{axis}.png")
    if ok["unseen_classes"].fillna(0).gt(0).any():
        save(plot.seen_unseen(ok, [a for a in varying if a != "seed"]), "seen_unseen.png")
    else:
        skipped.append("seen_unseen.png: every trial's transfer set covers all the victim's classes")
    written.append(_hparams(ok, list(spec["axes"]), out / "tensorboard"))
    return {"written": written, "skipped": skipped}


def _others(varying: list[str], *exclude: str) -> list[str]:
    """The axes that split lines or bars: the varying ones, but not seeds or the x axis."""
    return [a for a in varying if a not in ("seed", *exclude)]


def _label(keys, names: list[str]) -> str:
    keys = keys if isinstance(keys, tuple) else (keys,)
    return ", ".join(str(k) if n == "agent" else f"{n}={k}" for n, k in zip(names, keys)) or "all"


def _groups(table: pd.DataFrame, by: list[str]):
    return table.groupby(by, sort=False) if by else [((), table)]


def _ticks(ax, positions, labels: list[str]) -> None:
    """Category labels under bars; slanted, anchored at their end, when they would collide."""
    slanted = len(labels) > 3 or max(map(len, labels), default=0) > 12
    ax.set_xticks(positions, labels, rotation=25 if slanted else 0, ha="right" if slanted else "center",
                  rotation_mode="anchor")


def _std(values) -> float:
    """The sample standard deviation (ddof=1); 0 for a single value (no spread to show)."""
    values = np.asarray(values, float)
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


class _Plotter:
    """Draws one sweep's figures with shared colours, markers and the one spread convention."""

    def __init__(self, table: pd.DataFrame, varying: list[str]):
        self.victim = float(table["victim_accuracy"].mean())
        epochs = table["retrain_epochs"].dropna().unique() if "retrain_epochs" in table else []
        retrained = table["retrained"].fillna(False).astype(bool).any()
        self.ylabel = "knockoff top-1 accuracy" + (
            f" (retrained, {int(epochs[0])} epochs)" if retrained and len(epochs) == 1 else
            " (retrained)" if retrained else "")
        self.colours: dict[str, str] = {}
        self.styles: dict[str, int] = {}

    def style(self, keys, names: list[str]) -> dict:
        """Colour by strategy when the group has one (else by the group), marker/line by the rest."""
        keys = keys if isinstance(keys, tuple) else (keys,)
        point = dict(zip(names, keys))
        agent = point.pop("agent", None)
        rest = _label(tuple(point.values()), list(point)) if point else ""
        colour_key = str(agent) if agent is not None else rest
        if colour_key not in self.colours:
            used = len([k for k in self.colours if k not in AGENT_COLOURS])
            self.colours[colour_key] = AGENT_COLOURS.get(colour_key, OTHER_COLOURS[used % len(OTHER_COLOURS)])
        index = self.styles.setdefault(rest, len(self.styles)) if agent is not None and rest else 0
        return {"color": self.colours[colour_key], "marker": MARKERS[index % len(MARKERS)],
                "linestyle": LINESTYLES[index % len(LINESTYLES)]}

    def finish(self, figure: Figure, ax, table: pd.DataFrame, per_point: list[str], what: str, spread: str) -> None:
        """Title with the number of seeds behind each point, legend, and the caption."""
        counts = table.groupby(per_point)["seed"].nunique() if per_point else pd.Series([table["seed"].nunique()])
        seeds = sorted(int(s) for s in table["seed"].unique())
        low, high = int(counts.min()), int(counts.max())
        seed_list = ", ".join(map(str, seeds)) if len(seeds) <= 6 else f"{seeds[0]}…{seeds[-1]}"
        if high == 1:
            title = f"{what} (one run per point, seed {seed_list})"
            caption = f"One run per point (seed {seed_list}): no spread shown."
        else:
            n = str(low) if low == high else f"{low}–{high}"
            title = f"{what} (mean ± std over {n} seeds)"
            caption = f"Mean over {n} seeds ({seed_list}); {spread}: ± {STD}."
        ax.axhline(self.victim, color="k", linestyle="--", label="victim")
        ax.set_title(title, fontsize="medium")
        ax.legend(fontsize="small")
        text = f"{caption} Dashed: the victim's own accuracy ({self.victim:.3f})."
        width = int(figure.get_figwidth() * 15)  # characters of small text per line
        figure.supxlabel(textwrap.fill(text, width), x=0.01, ha="left", fontsize="small")  # below the tick labels

    def lines(self, table, x: str, by: list[str]) -> Figure:
        figure = Figure(figsize=(6, 4), layout="constrained")
        ax = figure.subplots()
        for keys, group in _groups(table, by):
            stats = group.groupby(x)["knockoff_accuracy"].agg(["mean", _std]).sort_index()
            style = self.style(keys, by)
            ax.plot(stats.index, stats["mean"], label=_label(keys, by), **style)
            ax.fill_between(stats.index, stats["mean"] - stats["_std"], stats["mean"] + stats["_std"],
                            color=style["color"], alpha=0.15, linewidth=0)
        ax.set(xlabel=x, ylabel=self.ylabel, ylim=(0, 1.02))
        self.finish(figure, ax, table, [*by, x], f"knockoff accuracy against {x}", "bands")
        return figure

    def curves(self, table, by: list[str]) -> Figure:
        figure = Figure(figsize=(6, 4), layout="constrained")
        ax = figure.subplots()
        for keys, group in _groups(table, by):
            grid = np.asarray(min(group["curve_queries"], key=len), float)
            runs = np.stack([np.interp(grid, q, a) for q, a in zip(group["curve_queries"], group["curve_accuracy"])])
            mean = runs.mean(0)
            std = runs.std(0, ddof=1) if len(runs) > 1 else np.zeros_like(mean)
            style = self.style(keys, by)
            ax.plot(grid, mean, label=_label(keys, by), **style)
            ax.fill_between(grid, mean - std, mean + std, color=style["color"], alpha=0.15, linewidth=0)
        ax.set(xlabel="queries", ylabel="online knockoff top-1 accuracy", ylim=(0, 1.02))
        self.finish(figure, ax, table, by, "online knockoff accuracy against queries", "bands")
        return figure

    def bars(self, table, x: str, by: list[str]) -> Figure:
        categories = list(dict.fromkeys(table[x]))
        groups = list(_groups(table, by))
        width = 0.8 / len(groups)
        figure = Figure(figsize=(max(5, 1.2 * len(categories) * max(1, len(groups) / 2)), 4), layout="constrained")
        ax = figure.subplots()
        rng = np.random.default_rng(0)  # the dots' horizontal jitter: the same picture every time
        for i, (keys, group) in enumerate(groups):
            positions = np.arange(len(categories)) + (i - (len(groups) - 1) / 2) * width
            stats = group.groupby(x)["knockoff_accuracy"].agg(["mean", _std]).reindex(categories)
            colour = (self.style(keys, by)["color"] if by  # one group: each bar its category's colour
                      else [self.style((c,), [x])["color"] for c in categories])
            spread = stats["_std"] if group.groupby(x)["seed"].nunique().max() > 1 else None  # none for one seed
            ax.bar(positions, stats["mean"], width, yerr=spread, capsize=3, alpha=0.8, color=colour,
                   label=_label(keys, by) if by else None)
            for position, category in zip(positions, categories):
                values = group.loc[group[x] == category, "knockoff_accuracy"].to_numpy(float)
                ax.scatter(position + rng.uniform(-width / 5, width / 5, len(values)), values, s=12,
                           color="k", zorder=3, label="one seed" if i == 0 and position == positions[0] else None)
        _ticks(ax, np.arange(len(categories)), [str(c) for c in categories])
        ax.set(xlabel=x, ylabel=self.ylabel, ylim=(0, 1.02))
        self.finish(figure, ax, table, [*by, x], f"knockoff accuracy by {x}", "error bars")
        return figure

    def seen_unseen(self, table, by: list[str]) -> Figure:
        groups = list(_groups(table, by))
        figure = Figure(figsize=(max(5, 1.2 * len(groups)), 4), layout="constrained")
        ax = figure.subplots()
        x = np.arange(len(groups))
        for i, column in enumerate(("seen_class_accuracy", "unseen_class_accuracy")):
            values = [group[column].dropna().astype(float) for _, group in groups]
            ax.bar(x + (i - 0.5) * 0.4, [v.mean() if len(v) else np.nan for v in values], 0.4,
                   yerr=[_std(v) for v in values] if max(map(len, values)) > 1 else None, capsize=3,
                   color=("tab:blue", "tab:gray")[i],
                   label=column.split("_")[0] + " classes")
        _ticks(ax, x, [_label(keys, by) for keys, _ in groups])
        ax.set(ylabel="mean per-class accuracy", ylim=(0, 1.02))
        self.finish(figure, ax, table, by, "classes seen / unseen in the transfer set", "error bars")
        return figure


def _hparams(table, axes: list[str], logdir: Path) -> Path:
    """One HParams run per trial (rewritten each time: it is derived from the table)."""
    from torch.utils.tensorboard import SummaryWriter

    shutil.rmtree(logdir, ignore_errors=True)
    with SummaryWriter(str(logdir)) as writer:
        for _, row in table.iterrows():
            hparams = {a: _hparam(row[a]) for a in ["agent", "seed", *axes] if a in row}
            metrics = {f"hparam/{m}": float(row[m]) for m in METRICS if pd.notna(row[m])}
            writer.add_hparams(hparams, metrics, run_name=row["trial"])
    return logdir


def _hparam(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    return value if isinstance(value, (int, float, str, bool)) else str(value)
