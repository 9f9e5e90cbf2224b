"""Quickstart: steal the embedded digits victim with the paper's hierarchical bandit.

    python examples/quickstart.py [--budget 1000] [--epochs 30]
"""
import argparse

import gymnasium as gym

import knockoff_env  # noqa: F401  (registers the Knockoff-* ids)
from agents import GradientBandit

parser = argparse.ArgumentParser(description="the paper's attack on the embedded digits world")
parser.add_argument("--budget", type=int, default=1000, help="queries to the victim")
parser.add_argument("--epochs", type=int, default=30, help="epochs of the offline retraining")
args = parser.parse_args()

env = gym.make("Knockoff-Digits-v0", budget=args.budget)       # victim, query set, hierarchy: all built in
agent = GradientBandit(env, alpha=0.3, seed=0)           # softmax at the root and at each coarse node

obs, info = env.reset(seed=0)
terminated = False
while not terminated:
    action = agent.act(obs, info)                        # (coarse node, label)
    obs, reward, terminated, truncated, info = env.step(action)
    agent.update(action, reward, info)                   # same reward for every node on the path

core = env.unwrapped
print("π(coarse node):", {c: round(float(p), 2) for c, p in zip(core.query_set.coarse_names, agent.coarse_probabilities())})
print("online knockoff:", core.evaluate())
print("retrained from scratch on the transfer set:", core.evaluate(core.retrain(epochs=args.epochs)))
