"""How the label bandits' defaults were chosen: each bandit's main parameter over a small grid.

On the digits world (victim trained on the ``digits`` node; the other three coarse nodes are
distractors), for each setting: the share of the queries spent on ``digits`` (the
closed-world effect) and the accuracy of the knockoff retrained on the transfer set for
``--epochs`` epochs (0: of the online knockoff, much cheaper).

    python -m benchmarks.bandit_defaults [--budget 500] [--seeds 5] [--epochs 30] [--agents exp3s,...] [--no-write]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import gymnasium as gym
import numpy as np

import knockoff_env  # noqa: F401  (registers the ids)
from agents import make_agent, run_attack

from .results import machine, table, write_section

GRID = [("adaptive", {}), ("random", {}), ("ucb", {}), ("d-ucb", {}), ("d-ucb", {"discount": 0.9}),
        ("thompson", {}), ("exp3s", {"gamma": 0.1}), ("exp3s", {}), ("exp3s", {"gamma": 0.6}),
        ("exp3s", {"gamma": 1.0})]


def digits_share(env) -> float:
    """The share of the transfer set's queries whose label lies in coarse node 0 (``digits``)."""
    indices, _ = env.unwrapped.transfer_set.view()
    qs = env.unwrapped.query_set
    return float(np.mean(qs.coarse_of_label[qs.positions[indices]] == 0))


def measure(name: str, options: dict, budget: int, seeds: int, epochs: int) -> list:
    shares, accuracies = [], []
    for seed in range(seeds):
        env = gym.make("Knockoff-Digits-v0", budget=budget)
        result = run_attack(env, make_agent(name, env, seed=seed, **options), seed=seed, retrain_epochs=epochs,
                            progress=False)
        shares.append(digits_share(env))
        accuracies.append(result["knockoff_accuracy"])
    label = ", ".join(f"{k}={v}" for k, v in options.items()) or "default"
    return [name, label, f"{np.mean(shares):.2f} ± {np.std(shares):.2f}",
            f"{np.mean(accuracies):.4f} ± {np.std(accuracies):.4f}"]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--agents", help="comma-separated: only these agents' rows of the grid")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # near-chance notes of the online knockoff at small budgets
    start = time.perf_counter()
    rows = []
    only = set(args.agents.split(",")) if args.agents else {name for name, _ in GRID}
    for name, options in (point for point in GRID if point[0] in only):
        rows.append(measure(name, options, args.budget, args.seeds, args.epochs))
        print(" | ".join(rows[-1]), flush=True)
    load = os.getloadavg()[0]
    command = f"--budget {args.budget} --seeds {args.seeds} --epochs {args.epochs}" + \
        (f" --agents {args.agents}" if args.agents else "")
    body = (f"`python -m benchmarks.bandit_defaults {command}` — {machine()}; digits world, mean ± std over "
            f"seeds 0–{args.seeds - 1}; "
            f"{time.perf_counter() - start:.0f} s (load average {load:.2f} at the end).\n\n"
            + table(["agent", "options", "share of queries on digits",
                     "retrained knockoff accuracy" if args.epochs else "online knockoff accuracy"], rows))
    print(body)
    if not args.no_write:
        write_section("bandit_defaults", body)


if __name__ == "__main__":
    main()
