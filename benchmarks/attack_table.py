"""The table of attacks against defences: every strategy × every defence (at its default, and none).

Runs ``examples/sweeps/attacks_vs_defences.yaml`` (PRADA watching in flag mode) on the embedded
digits world and on the custom glyph world (``examples.glyph_world:Knockoff-Glyphs-v0``), one trial
after another in this process; a sweep folder that already holds finished trials is resumed, so
a finished one is only read. Prints, and writes to ``benchmarks/RESULTS.md``, one row per
(world, defence, strategy): the retrained knockoff's accuracy and its agreement with the victim,
the victim's accuracy under the defence, the queries the online knockoff took to reach 0.9× the
victim's accuracy (per seed, from the eval curve), PRADA's alarm query (per seed); and draws the
heat map (strategies × defences, knockoff accuracy) to ``docs/attacks_vs_defences.png``.

    python -m benchmarks.attack_table [--worlds digits,glyphs] [--seeds 0 1 2] [--no-run] [--no-write]
"""
from __future__ import annotations

import argparse
import math
import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure

from .results import machine, write_section
from .results import table as md_table

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "examples" / "sweeps" / "attacks_vs_defences.yaml"
WORLDS = {"digits": "Knockoff-Digits-v0", "glyphs": "examples.glyph_world:Knockoff-Glyphs-v0"}
OUT = ROOT / "runs" / "sweeps" / "attacks_vs_defences"
FIGURE = ROOT / "docs" / "attacks_vs_defences.png"
TARGET = 0.9  # queries to reach this fraction of the victim's accuracy
NONE = "none"  # the defence column's name for no defence


def spec_for(world: str, seeds: list[int] | None = None, path: Path = SPEC) -> dict:
    """The spec with ``env`` set to ``world``'s id (and its seeds replaced, if given)."""
    raw = yaml.safe_load(path.read_text())
    raw["env"] = WORLDS.get(world, world)
    if seeds is not None:
        raw["axes"]["seed"] = list(seeds)
    return raw


def strategies(path: Path = SPEC) -> list[str]:
    """The strategies of the spec: the one list every benchmark of this family runs."""
    return [str(a) for a in yaml.safe_load(path.read_text())["axes"]["agent"]]


def collect(raw: dict, out: Path, run: bool = True) -> pd.DataFrame:
    """The sweep's table: run (or resume; a finished sweep is only read) in this process, or with
    ``run=False`` only tabulate the trials finished so far (the others are ``pending``)."""
    from agents.sweep import load_spec, run_sweep
    from agents.sweep.results import write_results

    if run:
        return run_sweep(raw, out, executor="inline", progress=True)
    return write_results(out, load_spec(raw).trials())


def queries_to_reach(queries, accuracies, target: float) -> int | None:
    """The first point of the curve whose accuracy is at least ``target``; None if none is."""
    for q, a in zip(queries, accuracies):
        if a >= target:
            return int(q)
    return None


def _alarm(value) -> int | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else int(value)


def cells(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (defence, strategy) of the finished trials: the figures of the table.

    ``knockoff``/``knockoff_std``: mean and sample std (ddof=1) over seeds of the retrained
    knockoff's accuracy; ``near_chance``: how many of those fits were near chance; ``agreement``,
    ``victim_defended``, ``online`` (the online knockoff's final accuracy): means; ``to_target``: per seed, the
    queries to reach ``TARGET`` × the (undefended) victim's accuracy on the online curve;
    ``alarm``: per seed, PRADA's alarm query (None: no alarm)."""
    ok = results[results["status"] == "ok"].copy()
    ok["defence"] = ok["defence"].map(lambda d: NONE if d is None or d != d else str(d))
    rows = []
    for (defence, agent), group in ok.sort_values("seed").groupby(["defence", "agent"], sort=False):
        reach = [queries_to_reach(q, a, TARGET * v) for q, a, v in
                 zip(group["curve_queries"], group["curve_accuracy"], group["victim_accuracy"])]
        rows.append({"defence": defence, "agent": agent, "seeds": len(group),
                     "knockoff": group["knockoff_accuracy"].mean(),
                     "knockoff_std": group["knockoff_accuracy"].std(ddof=1) if len(group) > 1 else float("nan"),
                     "agreement": group["agreement"].mean(),
                     "online": group["knockoff_accuracy_online"].astype(float).mean(),
                     "near_chance": int(group["near_chance"].fillna(False).astype(bool).sum()),
                     "victim": group["victim_accuracy"].mean(),
                     "victim_defended": group["victim_accuracy_defended"].astype(float).mean(),
                     "to_target": reach, "alarm": [_alarm(v) for v in group["detected_at"]]})
    return pd.DataFrame(rows)


def ordered(table: pd.DataFrame, raw: dict) -> pd.DataFrame:
    """``table``'s rows in the spec's order of defences and strategies."""
    defences = [NONE if d is None else str(d) for d in raw["axes"]["defence"]]
    agents = [str(a) for a in raw["axes"]["agent"]]
    key = table["defence"].map(defences.index) * len(agents) + table["agent"].map(agents.index)
    return table.assign(_key=key).sort_values("_key").drop(columns="_key").reset_index(drop=True)


def _per_seed(values: list, missing: str = "–") -> str:
    return ", ".join(missing if v is None else str(v) for v in values)


def markdown(table: pd.DataFrame) -> str:
    """The long table: one row per (defence, strategy)."""
    rows = [[f"**{r.defence}**" if r.agent == table["agent"].iloc[0] else r.defence, r.agent,
             f"{r.knockoff:.3f}" + ("" if math.isnan(r.knockoff_std) else f" ± {r.knockoff_std:.3f}"),
             f"{r.near_chance}/{r.seeds}",
             f"{r.agreement:.3f}", "" if math.isnan(r.victim_defended) else f"{r.victim_defended:.3f}",
             f"{r.online:.3f}", _per_seed(r.to_target), _per_seed(r.alarm, "none")]
            for r in table.itertuples()]
    return md_table(["defence", "strategy", "knockoff acc. (retrained)", "near-chance fits", "agreement", "victim acc. under defence",
                     "online knockoff acc. (end)", f"queries to {TARGET}× victim (per seed)",
                     "PRADA alarm (per seed)"], rows)


def pivot(table: pd.DataFrame, value: str = "knockoff") -> pd.DataFrame:
    """Defences × strategies of one figure, in the table's order."""
    return table.pivot(index="defence", columns="agent", values=value).loc[
        list(dict.fromkeys(table["defence"])), list(dict.fromkeys(table["agent"]))]


def pivot_markdown(table: pd.DataFrame) -> str:
    """The compact view: mean retrained knockoff accuracy, defences × strategies."""
    grid = pivot(table)
    return md_table(["defence", *grid.columns],
                              [[d, *(f"{v:.3f}" for v in grid.loc[d])] for d in grid.index])


def heatmap(tables: dict[str, pd.DataFrame], path: Path, caption: str) -> Path:
    """One panel per world: strategies (columns) × defences (rows), cells = mean knockoff accuracy."""
    figure = Figure(figsize=(6.2 * len(tables) + 1, 5.6), layout="constrained")
    axes = figure.subplots(1, len(tables), squeeze=False)[0]
    for ax, (world, table_) in zip(axes, tables.items()):
        grid = pivot(table_)
        image = ax.imshow(grid.to_numpy(float), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=40, ha="right")
        ax.set_yticks(range(grid.shape[0]), grid.index)
        for (i, j), v in np.ndenumerate(grid.to_numpy(float)):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white" if v < 0.6 else "black")
        victim = table_["victim"].mean()
        ax.set_title(f"{world} (victim {victim:.3f})")
    figure.colorbar(image, ax=list(axes), fraction=0.03, label="knockoff accuracy (retrained)")
    figure.suptitle(caption, fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def caption(tables: dict[str, pd.DataFrame], raw: dict) -> str:
    """What the figures are means of, and the machine's load."""
    counts = sorted({int(n) for t in tables.values() for n in t["seeds"]})
    finished = f"{counts[0]} a cell" if len(counts) == 1 else \
        f"{counts[0]}–{counts[-1]} a cell, unfinished trials left out"
    return (f"mean over the finished of seeds {raw['axes']['seed']} ({finished}), budget "
            f"{raw['env_options']['budget']}, retrained {raw['run']['retrain_epochs']} epochs; "
            f"under load (load average {os.getloadavg()[0]:.2f} when tabulated)")


def report(tables: dict[str, pd.DataFrame], raws: dict[str, dict], command: str, seconds: float,
           spent: dict[str, tuple[int, float]]) -> str:
    """The section of RESULTS.md: how it was made, what the columns mean, the tables. ``spent``:
    per world, the finished trials and their seconds (all starts), which shows the load they ran under."""
    first = next(iter(raws.values()))
    trials = "; ".join(f"{world}: {n} trials, {s / n:.1f} s each on average" for world, (n, s) in spent.items() if n)
    body = [f"`{command}` — {machine()}; spec `examples/sweeps/attacks_vs_defences.yaml`, trials one after "
            f"another with one torch thread each; {caption(tables, first)}; {trials}; {seconds:.0f} s for this "
            "call (finished trials are read, not rerun).\n",
            "Knockoff accuracy: a fresh knockoff retrained on the transfer set (mean ± sample std over seeds); "
            "near-chance fits: the seeds whose retrained knockoff the attacker's own held-out check calls near "
            "chance (`near_chance`); "
            "agreement: its top-1 agreement with the undefended victim on the eval set; victim acc. under "
            f"defence: top-1 of the defended answers on the eval set; queries to {TARGET}× victim: the first "
            "point of the online knockoff's eval curve at or above 0.9 × the undefended victim's accuracy "
            f"(every {first['run']['eval_every']} queries; – never), beside that knockoff's accuracy at the end; "
            "PRADA: the alarm query at its defaults (δ 0.9, flag mode), none if it stayed silent.\n"]
    for world, table_ in tables.items():
        body += [f"**{world}** (`{raws[world]['env']}`), mean retrained knockoff accuracy:\n",
                 pivot_markdown(table_) + "\n", f"**{world}**, every figure:\n", markdown(table_) + "\n"]
    return "\n".join(body)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="digits,glyphs", help=f"comma-separated, of {list(WORLDS)} or env ids")
    parser.add_argument("--seeds", type=int, nargs="+", help="replace the spec's seeds")
    parser.add_argument("--spec", type=Path, default=SPEC, help="the grid (default: the shipped spec)")
    parser.add_argument("--out", type=Path, default=OUT, help="sweep folders go to OUT/<world>")
    parser.add_argument("--figure", type=Path, default=FIGURE, help="where the heat map goes")
    parser.add_argument("--no-run", action="store_true", help="only tabulate the trials finished so far")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md and the figure alone")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # near-chance notes of online knockoffs under strong defences
    start, tables, raws, spent = time.perf_counter(), {}, {}, {}
    for world in args.worlds.split(","):
        raws[world] = raw = spec_for(world, args.seeds, args.spec)
        results = collect(raw, args.out / world, run=not args.no_run)
        tables[world] = ordered(cells(results), raw)
        spent[world] = (int((results["status"] == "ok").sum()), float(results["seconds"].fillna(0).sum()))
    command = " ".join(["python -m benchmarks.attack_table", *(["--worlds", args.worlds] if args.worlds !=
                        "digits,glyphs" else []), *(["--seeds", *map(str, args.seeds)] if args.seeds else [])])
    text = report(tables, raws, command, time.perf_counter() - start, spent)
    print(text)
    if not args.no_write:
        print("figure:", heatmap(tables, args.figure, caption(tables, next(iter(raws.values())))))
        write_section("attack_table", text)


if __name__ == "__main__":
    main()
