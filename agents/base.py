"""The interface every agent shares: ``act(obs, info)``, ``update(action, reward, info)``,
``label_probabilities()`` for logging the policy, and a state that can be saved."""
from __future__ import annotations

import json

import numpy as np


def action_for(env, position: int):
    """The env action that names label ``position`` (flat order) in the env's action mode."""
    core = env.unwrapped
    if core.action_mode == "flat":
        return int(position)
    coarse = int(core.query_set.coarse_of_label[position])
    return np.array([coarse, position - int(core.query_set.coarse_offsets[coarse])], dtype=np.int64)


class Agent:
    """Base class: holds the env's query set (the adversary knows its own data) and an RNG."""

    needs_online_knockoff = True  # its rewards (the loss) or the user's curve need the online knockoff
    answer_independent = False  # its next action may depend on the last answers (see agents.batching)

    def __init__(self, env, seed: int | None = None):
        self.env = env
        self.query_set = env.unwrapped.query_set
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def reset(self, seed: int | None = None) -> None:
        """Start a new episode; a seed re-seeds the agent's sampling."""
        if seed is not None:
            self.rng = np.random.default_rng(seed)

    def act(self, obs, info):
        raise NotImplementedError

    def update(self, action, reward: float, info) -> None:
        """Learn from the step's reward (nothing, for non-learning agents)."""

    def label_probabilities(self, label_ok: np.ndarray | None = None) -> np.ndarray:
        """The current probability of choosing each label (flat order)."""
        raise NotImplementedError

    def coarse_probabilities(self, label_ok: np.ndarray | None = None) -> np.ndarray:
        """The current probability of choosing each coarse node."""
        return np.add.reduceat(self.label_probabilities(label_ok), self.query_set.coarse_offsets)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Arrays that restore the agent exactly, its RNG included."""
        return {"rng": np.frombuffer(json.dumps(self.rng.bit_generator.state).encode(), np.uint8).copy()}

    def load_state_dict(self, state) -> None:
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = json.loads(bytes(np.asarray(state["rng"], np.uint8)).decode())
