"""An SB3 baseline: MaskablePPO (sb3-contrib) learns which labels to query across attacks.

    python examples/sb3_baseline.py --train-steps 2000

Each training episode is a whole attack that spends the budget, so an RL agent pays for
its exploration in queries; the bandit learns within one attack. Needs the ``sb3`` extra.
"""
import argparse

import gymnasium as gym

import knockoff_env  # noqa: F401
from agents import format_summary, run_attack
from agents.sb3 import SB3Agent, train_sb3

parser = argparse.ArgumentParser()
parser.add_argument("--train-steps", type=int, default=2000)
parser.add_argument("--budget", type=int, default=500)
parser.add_argument("--logdir", default="runs/sb3")
args = parser.parse_args()

env = gym.make("Knockoff-Digits-v0", budget=args.budget, action_mode="flat")  # masks are per label
model = train_sb3("maskable-ppo", env, args.train_steps, seed=0, logdir=args.logdir)
result = run_attack(env, SB3Agent(model, env, seed=0), seed=0, logdir=f"{args.logdir}/attack",
                    retrain_epochs=30, progress=True)
print(format_summary(result))
