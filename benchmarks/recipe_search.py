"""The hand search behind the ``"scratch"`` recipe: offline recipes on fixed transfer sets.

    python -m benchmarks.recipe_search scratch     # or: digits [--budget 800] [--seeds 3] [--epochs N]

Plays random and adaptive attacks (budget 800, seeds 0–2, online lr 0.01) once, then retrains
each transfer set for 30 epochs with every candidate recipe (nothing held out unless the row
says so) and prints the mean test accuracy per strategy. Prints only; the README quotes it.
"""
import argparse
import time
import warnings

import numpy as np
import torch

from agents import make_agent, run_attack
from knockoff_env.training.estimate import NearChanceWarning
from knockoff_env.worlds.digits import make_digits_env
from tests.scratch_world import make_scratch_env

CANDIDATES = {
    "paper": dict(recipe="paper", epochs=30),
    "SGD lr 0.1 m 0.9 (the issue's)": dict(recipe="paper", epochs=30, lr=0.1, momentum=0.9),
    "scratch, batch 64": dict(recipe="scratch", batch_size=64),
    "scratch, batch 32": dict(recipe="scratch"),
    "scratch, batch 128": dict(recipe="scratch", batch_size=128),
    "scratch, batch 32, lr 0.05": dict(recipe="scratch", lr=0.05),
    "scratch, batch 64, lr 0.05": dict(recipe="scratch", batch_size=64, lr=0.05),
    "scratch, batch 64, lr 0.2": dict(recipe="scratch", batch_size=64, lr=0.2),
    "scratch, batch 32, wd 1e-3": dict(recipe="scratch", weight_decay=1e-3),
    "scratch, batch 64, wd 0": dict(recipe="scratch", batch_size=64, weight_decay=0.0),
    "scratch, batch 64, warm-up 3": dict(recipe="scratch", batch_size=64, warmup_epochs=3),
    "scratch, batch 64, crops": dict(recipe="scratch", batch_size=64, augment="crop"),
    "AdamW 1e-3 cosine": dict(recipe="scratch", optimizer="adamw", lr=1e-3, nesterov=False, weight_decay=0.01),
    "AdamW 3e-3 cosine": dict(recipe="scratch", optimizer="adamw", lr=3e-3, nesterov=False, weight_decay=0.01),
    "scratch, batch 32, 10 % held out": dict(recipe="scratch", holdout=0.1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("world", nargs="?", default="scratch", choices=("scratch", "digits"))
    parser.add_argument("--budget", type=int, default=800)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="every candidate's epochs (default: each candidate's own)")
    args = parser.parse_args()
    world, seeds = args.world, range(args.seeds)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", NearChanceWarning)
    envs = {}
    for strategy in ("random", "adaptive"):
        for seed in seeds:
            env = make_digits_env(budget=args.budget, device="cpu", knockoff_lr=0.01) if world == "digits" else \
                make_scratch_env(budget=args.budget, knockoff_lr=0.01)
            run_attack(env, make_agent(strategy, env, seed=seed), seed=seed, progress=False, retrain_epochs=0)
            envs[strategy, seed] = env
    for name, options in CANDIDATES.items():
        options, started, row = dict(options), time.perf_counter(), {}
        holdout = options.pop("holdout", 0.0)
        if args.epochs is not None:
            options["epochs"] = args.epochs
        for strategy in ("random", "adaptive"):
            accuracies = []
            for seed in seeds:
                torch.manual_seed(seed)
                env = envs[strategy, seed]
                model = env.retrain(seed=seed, holdout=holdout, **options)
                accuracies.append(env.evaluate(model)["knockoff_accuracy"])
            row[strategy] = np.mean(accuracies)
        print(f"{world}: {name:36s} random {row['random']:.3f} adaptive {row['adaptive']:.3f} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
