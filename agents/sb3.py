"""stable-baselines3 baselines on KnockoffEnv: PPO and A2C on the hierarchical action space,
DQN on the flat one, and sb3-contrib's MaskablePPO with the env's action masks.

Every training episode is a full attack (it spends the budget); ``train_sb3`` trains for a
number of env steps, and :class:`SB3Agent` plays the learned policy through ``run_attack``.
Requires the ``sb3`` extra: ``pip install knockoff-env[sb3]``.
"""
from __future__ import annotations

import numpy as np
import torch

try:
    from sb3_contrib import MaskablePPO
    from stable_baselines3 import A2C, DQN, PPO
    from stable_baselines3.common.callbacks import BaseCallback
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("the SB3 baselines need stable-baselines3 and sb3-contrib: "
                      "pip install 'knockoff-env[sb3]'") from err

from .base import Agent

#: algorithm name → (class, the env action mode it plays in)
ALGORITHMS = {"ppo": (PPO, "hierarchical"), "a2c": (A2C, "hierarchical"), "dqn": (DQN, "flat"),
              "maskable-ppo": (MaskablePPO, "flat")}


def coarse_probabilities(model, env, obs: np.ndarray) -> np.ndarray:
    """π(coarse node) of an SB3 policy at ``obs``: its own distribution, or DQN's greedy choice."""
    core = env.unwrapped
    qs = core.query_set
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        if isinstance(model, DQN):
            q = model.q_net(obs_tensor)[0].cpu().numpy()
            q = np.where(core.query_set.remaining() > 0, q, -np.inf)
            return np.add.reduceat(np.eye(qs.num_labels)[int(q.argmax())], qs.coarse_offsets)
        distribution = model.policy.get_distribution(obs_tensor)
        if isinstance(model, MaskablePPO):
            distribution.apply_masking(core.action_masks())
        factors = distribution.distribution  # one Categorical, or one per MultiDiscrete dimension
        first = factors[0] if isinstance(factors, (list, tuple)) else factors
        probs = first.probs[0].cpu().numpy()
    if core.action_mode == "flat":
        return np.add.reduceat(probs, qs.coarse_offsets)
    return probs


class PolicyLogCallback(BaseCallback):
    """Logs π(coarse node) to the SB3 logger (and so TensorBoard) every ``every`` env steps."""

    def __init__(self, env, every: int = 50):
        super().__init__()
        self.env, self.every = env, every

    def _on_step(self) -> bool:
        if self.n_calls % self.every == 0:
            probs = coarse_probabilities(self.model, self.env, np.asarray(self.locals["new_obs"])[0])
            for name, p in zip(self.env.unwrapped.query_set.coarse_names, probs):
                self.logger.record(f"policy/{name}", float(p))
            self.logger.dump(self.num_timesteps)  # A2C/DQN would otherwise hold them for hundreds of steps
        return True


def train_sb3(algorithm: str, env, total_timesteps: int, *, seed: int = 0, logdir: str | None = None,
              log_every: int = 50, **kwargs):
    """Train an SB3 model on ``env`` (its action mode must match the algorithm's, see ALGORITHMS)."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown SB3 algorithm {algorithm!r}; choose one of {sorted(ALGORITHMS)}")
    cls, mode = ALGORITHMS[algorithm]
    if env.unwrapped.action_mode != mode:
        raise ValueError(f"{algorithm} plays the {mode!r} action space; make the env with action_mode={mode!r}")
    if algorithm == "dqn":
        kwargs.setdefault("learning_starts", min(100, total_timesteps // 2))
    model = cls("MlpPolicy", env, seed=seed, verbose=0, tensorboard_log=logdir, device="cpu", **kwargs)
    model.learn(total_timesteps=total_timesteps, callback=PolicyLogCallback(env, log_every),
                tb_log_name=algorithm, progress_bar=False)
    return model


class SB3Agent(Agent):
    """Plays a trained SB3 model through the shared agent interface (it does not learn here)."""

    def __init__(self, model, env, deterministic: bool = False, seed: int | None = None):
        super().__init__(env, seed)
        self.model, self.deterministic = model, deterministic
        self._obs = None

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        if seed is not None:
            self.model.set_random_seed(seed)

    def act(self, obs, info):
        self._obs = obs
        kwargs = {"action_masks": self.env.unwrapped.action_masks()} if isinstance(self.model, MaskablePPO) else {}
        action, _ = self.model.predict(obs, deterministic=self.deterministic, **kwargs)
        return action

    def coarse_probabilities(self, label_ok: np.ndarray | None = None) -> np.ndarray:
        """π(coarse node) at the observation of the last ``act``."""
        return coarse_probabilities(self.model, self.env, self._obs)
