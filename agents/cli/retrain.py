"""``knockoff retrain``: the offline phase on a run's transfer set."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from knockoff_env.durability.run_dir import load_run

from .evaluate import report


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("retrain", help="offline phase: retrain a run's knockoff on its transfer set",
                              description="Train a fresh knockoff on RUN_DIR's transfer set with the run's "
                                          "recipe (or --recipe), holding --holdout of it out to keep the best "
                                          "epoch; save RUN_DIR/knockoff_retrained.pt, RUN_DIR/retrain.json and "
                                          "evaluate it.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--epochs", type=int, help="default: the recipe's (paper 100, scratch 30)")
    p.add_argument("--recipe", help="auto | paper | scratch (default: the run's)")
    p.add_argument("--holdout", type=float, default=0.1,
                   help="fraction of the transfer set held out to judge each epoch (default 0.1)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader processes for a folder-dataset transfer set")
    p.set_defaults(func=run)


def run(args) -> None:
    config, env = load_run(args.run_dir)
    if len(env.unwrapped.transfer_set) == 0:
        raise ValueError(f"the transfer set of {args.run_dir} is empty; there is nothing to retrain on")
    torch.manual_seed(int(config["seed"]))
    fit = env.unwrapped.fit(args.epochs, recipe=args.recipe, holdout=args.holdout, seed=int(config["seed"]),
                            progress=True, workers=args.workers, warn=False)
    path = Path(args.run_dir) / "knockoff_retrained.pt"
    torch.save({k: v.detach().cpu() for k, v in fit.model.state_dict().items()}, path)
    (Path(args.run_dir) / "retrain.json").write_text(json.dumps(fit.summary(), indent=1) + "\n")
    print(f"recipe {fit.recipe.name}, {fit.epochs} epochs: held-out agreement {fit.heldout_agreement:.4f} "
          f"(attacker's estimate, {fit.heldout_size} queries; chance {fit.chance:.2f}; "
          f"best epoch {fit.best_epoch})")
    if fit.near_chance:
        print(f"WARNING: NEAR CHANCE: {fit.advice}")
    if env.unwrapped.eval_set is not None:
        report(Path(args.run_dir), path, env.unwrapped.evaluate(fit.model))
