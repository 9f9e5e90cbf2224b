"""The paper's claim on the embedded world, as a test: at a budget where random stays clearly below
the victim, the hierarchical gradient bandit's retrained knockoff beats random's and the flat
bandit's (supplement Fig. S11).

One seed's accuracy spreads widely (which images the pools give, the bandit's path, one
retraining), so the claim is tested on the mean of ten seeds. Measured before the margin was set
(budget 500, 30 epochs, seeds 0-9, one thread): adaptive 0.937 (per-seed sd 0.017; 0.943 over
seeds 0-19), random 0.892 (sd 0.036), adaptive-flat 0.903 (sd 0.045). Three seeds with a 0.03
margin, as this test once had, pass or fail with the draw of the pools alone: a new pool scheme
moved adaptive's three-seed mean from 0.960 to 0.934 while its twenty-seed mean stayed within
noise (0.949 → 0.943)."""
import gymnasium as gym
import numpy as np
import pytest

import knockoff_env  # noqa: F401  (registers the ids)
from agents import make_agent, run_attack

SEEDS, BUDGET, MARGIN = range(10), 500, 0.01  # the margin: well inside the measured gaps (0.034, 0.045)


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
    assert (accuracy["adaptive"] > accuracy["random"]).sum() >= 6, accuracy  # not a few lucky seeds (9 measured)
