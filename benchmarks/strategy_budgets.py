"""Every strategy's retrained knockoff accuracy at budgets 200 / 500 / 1,000, beside random and the
gradient bandit (``adaptive``), on the digits world and the custom glyph world; no defence.

The strategies, the retraining epochs and the worlds are those of ``benchmarks.attack_table`` (its
spec, ``examples/sweeps/attacks_vs_defences.yaml``, holds the one list of strategies). Each world's
grid is a sweep run in this process, seeds outermost, so that a stopped run leaves whole seeds; the
sweep folder resumes, so running the command again finishes the rest and a finished grid is only
read. Cells: mean ± sample std (ddof=1) over the seeds that finished, and the difference from random;
the last column: the smallest budget whose mean reaches 0.9× the victim's accuracy.

    python -m benchmarks.strategy_budgets [--worlds digits,glyphs] [--budgets 200 500 1000] [--seeds 5]
    python -m benchmarks.strategy_budgets --spec examples/sweeps/dfal_budgets.yaml --worlds digits \
        --out runs/sweeps/dfal_budgets      (ActiveThief's DFAL rules, scoring a 500-image subsample)
"""
from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import pandas as pd
import yaml

from .attack_table import ROOT, SPEC, TARGET, WORLDS, collect, strategies
from .results import machine, table, write_section

OUT = ROOT / "runs" / "sweeps" / "strategy_budgets"


def spec_for(world: str, budgets: list[int], seeds: int, path: Path = SPEC) -> dict:
    """The grid: the spec's strategies, agent options and run options, no defence and no detector."""
    raw = yaml.safe_load(path.read_text())
    return {"env": WORLDS.get(world, world), **({"agent_options": raw["agent_options"]} if raw.get("agent_options")
                                                else {}),
            "axes": {"seed": list(range(seeds)), "budget": list(budgets), "agent": strategies(path)},
            "run": {**raw["run"], "eval_every": None}}


def grid(results: pd.DataFrame) -> pd.DataFrame:
    """Strategies × budgets of the finished trials: mean, sample std, number of seeds, mean − random."""
    ok = results[results["status"] == "ok"]
    stats = ok.groupby(["agent", "budget"])["knockoff_accuracy"].agg(["mean", "std", "count"]).reset_index()
    random = stats[stats["agent"] == "random"].set_index("budget")["mean"]
    stats["vs_random"] = stats["mean"] - stats["budget"].map(random)
    stats["victim"] = ok["victim_accuracy"].mean()
    return stats


def markdown(stats: pd.DataFrame, agents: list[str], budgets: list[int]) -> str:
    """One row per strategy, one column per budget."""
    cells = stats.set_index(["agent", "budget"])
    rows = []
    for agent in agents:
        row = [agent]
        for budget in budgets:
            if (agent, budget) not in cells.index:
                row.append("")
                continue
            c = cells.loc[(agent, budget)]
            spread = f" ± {c['std']:.3f}" if c["count"] > 1 else ""
            delta = "" if agent == "random" or pd.isna(c["vs_random"]) else f" ({c['vs_random']:+.3f})"
            row.append(f"{c['mean']:.3f}{spread}{delta} [{int(c['count'])}]")
        reached = [b for b in sorted(budgets) if (agent, b) in cells.index
                   and cells.loc[(agent, b), "mean"] >= TARGET * cells.loc[(agent, b), "victim"]]
        rows.append([*row, f"{reached[0]:,}" if reached else "–"])
    return table(["strategy", *(f"budget {b:,}" for b in budgets), f"first budget ≥ {TARGET}× victim"], rows)


def shown(path: Path) -> str:
    """``path`` as a command line in the repository root would give it."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", default="digits,glyphs", help=f"comma-separated, of {list(WORLDS)} or env ids")
    parser.add_argument("--budgets", type=int, nargs="+", default=[200, 500, 1000])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0 … SEEDS-1")
    parser.add_argument("--spec", type=Path, default=SPEC, help="the attack table's spec, whose strategies and run "
                        "options the grid takes (default: the shipped one)")
    parser.add_argument("--out", type=Path, default=OUT, help="sweep folders go to OUT/<world>")
    parser.add_argument("--no-run", action="store_true", help="only tabulate the trials finished so far")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    start, body = time.perf_counter(), []
    for world in args.worlds.split(","):
        raw = spec_for(world, args.budgets, args.seeds, args.spec)
        results = collect(raw, args.out / world, run=not args.no_run)
        body += [f"**{world}** (`{raw['env']}`): retrained knockoff accuracy, mean ± std over seeds "
                 "(difference from random) [seeds]:\n", markdown(grid(results), raw["axes"]["agent"], args.budgets)
                 + "\n"]
    command = " ".join(["python -m benchmarks.strategy_budgets",
                        *(["--spec", shown(args.spec), "--out", shown(args.out)] if args.spec != SPEC else []),
                        *(["--worlds", args.worlds] if args.worlds != "digits,glyphs" else []),
                        *(["--seeds", str(args.seeds)] if args.seeds != 5 else []),
                        *(["--budgets", *map(str, args.budgets)] if args.budgets != [200, 500, 1000] else [])])
    text = "\n".join([f"`{command}` — {machine()}; trials one after another with one torch thread each; "
                      f"retrained {raw['run']['retrain_epochs']} epochs, no defence; under load (load average "
                      f"{os.getloadavg()[0]:.2f} at the end); {time.perf_counter() - start:.0f} s for this call "
                      "(finished trials are read, not rerun).\n", *body])
    print(text)
    if not args.no_write:  # another spec's grid gets a section of its own
        write_section("strategy_budgets" + ("" if args.spec == SPEC else f" ({args.spec.stem})"), text)


if __name__ == "__main__":
    main()
