"""The paper-style figures a finished sweep's axes allow, as PNGs, plus a TensorBoard HParams view.

From the results table (finished trials only; mean ± std over seeds, one line or bar per
combination of the other varying axes, e.g. per agent):

* ``accuracy_vs_budget.png`` — knockoff accuracy against the budget (Fig. S1), when the
  budget varies;
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
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from .results import read_results

METRICS = ("knockoff_accuracy", "knockoff_accuracy_online", "times_victim", "agreement", "seconds")
FLAT_PAIR = ("adaptive", "adaptive-flat")


def plot_sweep(out: str | Path) -> dict[str, list]:
    """Write the figures for the sweep in ``out``; returns ``{"written": [paths], "skipped": [reasons]}``."""
    out = Path(out)
    spec = json.loads((out / "spec.json").read_text()) if (out / "spec.json").exists() else {"axes": {}}
    table = read_results(out)
    ok = table[table["status"] == "ok"].copy()
    if ok.empty:
        raise ValueError(f"no finished trial in {out}/results.parquet; nothing to plot (see its status/error columns)")
    varying = [a for a in spec["axes"] if a in ok and ok[a].nunique() > 1]
    written, skipped = [], []
    ylabel = "knockoff top-1 accuracy" + (" (retrained)" if ok["retrained"].fillna(False).any() else "")
    victim = float(ok["victim_accuracy"].mean())

    def save(figure: Figure, name: str) -> None:
        path = out / name
        figure.savefig(path, dpi=120, bbox_inches="tight")
        written.append(path)

    if "budget" in varying:
        save(_lines(ok, "budget", "knockoff_accuracy", _others(varying, "budget"), ylabel, victim), "accuracy_vs_budget.png")
    else:
        skipped.append("accuracy_vs_budget.png: the budget is not an axis")
    largest = ok[ok["budget"] == ok["budget"].max()] if "budget" in ok else ok
    if largest["curve_queries"].map(len).gt(0).all():
        save(_curves(largest, _others(varying, "budget"), victim), "accuracy_vs_queries.png")
    agents = set(ok["agent"])
    if "agent" in varying and set(FLAT_PAIR) <= agents:
        pair = ok[ok["agent"].isin(FLAT_PAIR)]
        others = _others(varying, "budget")
        figure = (_lines(pair, "budget", "knockoff_accuracy", others, ylabel, victim) if "budget" in varying
                  else _curves(pair[pair["budget"] == pair["budget"].max()] if "budget" in pair else pair,
                               others, victim))
        save(figure, "hierarchy_vs_flat.png")
    else:
        skipped.append("hierarchy_vs_flat.png: needs agents adaptive and adaptive-flat")
    for axis in varying:
        if axis in ("agent", "seed", "budget"):
            continue
        others = _others(varying, axis)
        if pd.api.types.is_numeric_dtype(ok[axis]):
            save(_lines(ok, axis, "knockoff_accuracy", others, ylabel, victim), f"accuracy_vs_{axis}.png")
        else:
            save(_bars(ok, axis, others, ylabel, victim), f"accuracy_by_{axis}.png")
    if ok["unseen_classes"].fillna(0).gt(0).any():
        save(_seen_unseen(ok, [a for a in varying if a != "seed"]), "seen_unseen.png")
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


def _lines(table, x: str, y: str, by: list[str], ylabel: str, victim: float) -> Figure:
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for keys, group in _groups(table, by):
        stats = group.groupby(x)[y].agg(["mean", "std"]).sort_index()
        std = stats["std"].fillna(0).to_numpy()
        ax.plot(stats.index, stats["mean"], marker="o", label=_label(keys, by))
        ax.fill_between(stats.index, stats["mean"] - std, stats["mean"] + std, alpha=0.2)
    ax.axhline(victim, color="k", linestyle="--", label="victim")
    ax.set(xlabel=x, ylabel=ylabel, ylim=(0, 1.02), title=f"{ylabel} against {x} (mean ± std over seeds)")
    ax.legend(fontsize="small")
    return figure


def _curves(table, by: list[str], victim: float) -> Figure:
    figure = Figure(figsize=(6, 4))
    ax = figure.subplots()
    for keys, group in _groups(table, by):
        grid = np.asarray(min(group["curve_queries"], key=len), float)
        runs = np.stack([np.interp(grid, q, a) for q, a in zip(group["curve_queries"], group["curve_accuracy"])])
        mean, std = runs.mean(0), runs.std(0)
        ax.plot(grid, mean, marker="o", label=_label(keys, by))
        ax.fill_between(grid, mean - std, mean + std, alpha=0.2)
    ax.axhline(victim, color="k", linestyle="--", label="victim")
    ax.set(xlabel="queries", ylabel="online knockoff top-1 accuracy", ylim=(0, 1.02),
           title="online knockoff accuracy against queries (mean ± std over seeds)")
    ax.legend(fontsize="small")
    return figure


def _bars(table, x: str, by: list[str], ylabel: str, victim: float) -> Figure:
    categories = list(dict.fromkeys(table[x]))
    groups = list(_groups(table, by))
    width = 0.8 / len(groups)
    figure = Figure(figsize=(max(5, 1.2 * len(categories) * max(1, len(groups) / 2)), 4))
    ax = figure.subplots()
    for i, (keys, group) in enumerate(groups):
        stats = group.groupby(x)["knockoff_accuracy"].agg(["mean", "std"]).reindex(categories)
        ax.bar(np.arange(len(categories)) + (i - (len(groups) - 1) / 2) * width, stats["mean"], width,
               yerr=stats["std"].fillna(0), capsize=3, label=_label(keys, by))
    ax.axhline(victim, color="k", linestyle="--", label="victim")
    ax.set_xticks(np.arange(len(categories)), [str(c) for c in categories], rotation=20)
    ax.set(xlabel=x, ylabel=ylabel, ylim=(0, 1.02), title=f"{ylabel} by {x} (mean ± std over seeds)")
    ax.legend(fontsize="small")
    return figure


def _seen_unseen(table, by: list[str]) -> Figure:
    groups = list(_groups(table, by))
    figure = Figure(figsize=(max(5, 1.2 * len(groups)), 4))
    ax = figure.subplots()
    x = np.arange(len(groups))
    for i, column in enumerate(("seen_class_accuracy", "unseen_class_accuracy")):
        values = [group[column].astype(float) for _, group in groups]
        ax.bar(x + (i - 0.5) * 0.4, [v.mean() for v in values], 0.4, yerr=[np.nan_to_num(v.std()) for v in values],
               capsize=3, label=column.split("_")[0])
    ax.set_xticks(x, [_label(keys, by) for keys, _ in groups], rotation=20)
    ax.set(ylabel="mean per-class accuracy", ylim=(0, 1.02), title="classes seen / unseen in the transfer set")
    ax.legend(fontsize="small")
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
