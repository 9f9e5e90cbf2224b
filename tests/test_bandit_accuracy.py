"""The paper's claim on the embedded world, as a test: at a budget where random stays clearly below
the victim, the hierarchical gradient bandit's retrained knockoff beats random's and the flat
bandit's (supplement Fig. S11). Measured before the margins were set: seeds 0-2, budget 500,
30 epochs: adaptive 0.959 / 0.937 / 0.952, random 0.904 / 0.824 / 0.854."""
import gymnasium as gym
import numpy as np
import pytest

import knockoff_env  # noqa: F401  (registers the ids)
from agents import make_agent, run_attack

SEEDS, BUDGET, MARGIN = (0, 1, 2), 500, 0.03  # the margin: about twice the spread of one retraining


def knockoff_accuracy(agent: str, seed: int) -> float:
    env = gym.make("Knockoff-Digits-v0", budget=BUDGET)
    result = run_attack(env, make_agent(agent, env, seed=seed), seed=seed, retrain_epochs=30, progress=False)
    env.close()
    return result["knockoff_accuracy"]


@pytest.mark.slow
def test_the_hierarchical_bandit_beats_random_and_flat_over_seeds():
    accuracy = {agent: np.array([knockoff_accuracy(agent, s) for s in SEEDS])
                for agent in ("adaptive", "random", "adaptive-flat")}
    means = {agent: round(float(a.mean()), 3) for agent, a in accuracy.items()}
    assert means["adaptive"] > means["random"] + MARGIN, means
    assert means["adaptive"] > means["adaptive-flat"] + MARGIN, means
    assert (accuracy["adaptive"] > accuracy["random"]).sum() >= 2, accuracy  # not one lucky seed
