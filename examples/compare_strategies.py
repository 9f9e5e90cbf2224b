"""Compare strategies over several seeds: accuracy against queries, and a table (paper Fig. S1's shape).

    python examples/compare_strategies.py --budget 500 --seeds 5 --out runs/compare

Writes ``accuracy_vs_queries.png`` (online knockoff, mean ± std over seeds) and ``table.md``
(final accuracy after retraining from scratch on the transfer set, mean ± std).
"""
import argparse
import json
from pathlib import Path

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import knockoff_env  # noqa: E402,F401
from agents import env_preset, make_agent, run_attack  # noqa: E402


def attack(env_id, strategy, seed, budget, every, retrain_epochs):
    env = gym.make(env_id, budget=budget, **env_preset(strategy))  # copycat: labels only
    result = run_attack(env, make_agent(strategy, env, seed=seed), seed=seed, eval_every=every,
                        retrain_epochs=retrain_epochs, progress=False)
    return [acc for _, acc in result["accuracy_curve"]], result["knockoff_accuracy"], result["victim_accuracy"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Knockoff-Digits-v0")
    parser.add_argument("--strategies", default="random,adaptive,adaptive-flat")
    parser.add_argument("--budget", type=int, default=500)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--every", type=int, default=100, help="evaluate the online knockoff every N queries")
    parser.add_argument("--retrain-epochs", type=int, default=30)
    parser.add_argument("--out", default="runs/compare")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows, figure = [], plt.figure(figsize=(6, 4))
    for strategy in args.strategies.split(","):
        curves, finals = [], []
        for seed in range(args.seeds):
            points, final, victim = attack(args.env, strategy, seed, args.budget, args.every, args.retrain_epochs)
            curves.append(points)
            finals.append(final)
            print(f"{strategy:14s} seed {seed}: retrained knockoff {final:.4f}", flush=True)
        curves = np.array(curves)
        queries = np.arange(1, curves.shape[1] + 1) * args.every
        plt.plot(queries, curves.mean(0), marker="o", label=strategy)
        plt.fill_between(queries, curves.mean(0) - curves.std(0), curves.mean(0) + curves.std(0), alpha=0.2)
        rows.append((strategy, np.mean(finals), np.std(finals), curves[:, -1].mean(), curves[:, -1].std()))
    plt.axhline(victim, color="k", linestyle="--", label="victim")
    plt.xlabel("queries")
    plt.ylabel("online knockoff top-1 accuracy")
    plt.legend()
    figure.savefig(out / "accuracy_vs_queries.png", dpi=120, bbox_inches="tight")

    table = [f"{args.env}, budget {args.budget}, {args.seeds} seeds, victim accuracy {victim:.4f}", "",
             "| strategy | retrained knockoff (mean ± std) | online knockoff (mean ± std) |", "|---|---|---|"]
    table += [f"| {s} | {m:.4f} ± {sd:.4f} | {om:.4f} ± {osd:.4f} |" for s, m, sd, om, osd in rows]
    (out / "table.md").write_text("\n".join(table) + "\n")
    (out / "table.json").write_text(json.dumps([dict(zip(("strategy", "retrained_mean", "retrained_std",
                                                          "online_mean", "online_std"), r)) for r in rows]))
    print("\n".join(table))


if __name__ == "__main__":
    main()
