"""Several attacks in one process against one victim: one batched victim query per step.

Each attack is a full :class:`KnockoffEnv` with its own RNG, pools, knockoff, rewards and
transfer set; only the :class:`BlackBox` is shared. A step draws every attack's images,
sends them to the victim as one concatenated batch (one forward pass, one device
transfer) and hands each attack its slice of the answers. The result is the same as
stepping the envs one by one (up to floating-point differences in the victim's batched
forward), at a fraction of the victim's per-call cost when many attacks run on one GPU.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .env import KnockoffEnv


class MultiKnockoff:
    """Step N KnockoffEnvs that share one BlackBox together.

    Args:
        envs: the attacks; every ``env.victim`` must be the same BlackBox object (build them
            with ``victim=shared_blackbox``).
    """

    def __init__(self, envs: Sequence[KnockoffEnv]):
        self.envs = [getattr(env, "unwrapped", env) for env in envs]
        if not self.envs:
            raise ValueError("MultiKnockoff needs at least one env")
        self.victim = self.envs[0].victim
        if any(env.victim is not self.victim for env in self.envs):
            raise ValueError("every env must share one BlackBox: build them with victim=<the same BlackBox>")

    def __len__(self) -> int:
        return len(self.envs)

    def reset(self, seeds: Sequence[int | None] | None = None) -> tuple[list[np.ndarray], list[dict]]:
        """Reset every attack (``seeds[i]`` for attack i); returns their observations and infos."""
        seeds = [None] * len(self.envs) if seeds is None else list(seeds)
        if len(seeds) != len(self.envs):
            raise ValueError(f"{len(seeds)} seeds for {len(self.envs)} envs")
        observations, infos = zip(*(env.reset(seed=s) for env, s in zip(self.envs, seeds)))
        return list(observations), list(infos)

    def step(self, actions: Sequence[Any]) -> tuple[list, list, list, list, list]:
        """One step of every attack: ``(observations, rewards, terminated, truncated, infos)``,
        each a list in env order. Every env must be mid-episode (reset those that ended)."""
        if len(actions) != len(self.envs):
            raise ValueError(f"{len(actions)} actions for {len(self.envs)} envs")
        queries = [env.prepare(a) for env, a in zip(self.envs, actions)]
        sizes = [len(q.index) for q in queries]
        checked = self.victim.device.type == "cpu"  # as KnockoffEnv.step: host-side check on a GPU
        try:
            answers = self.victim(torch.cat([q.images for q in queries]), check_finite=checked).split(sizes)
        except BaseException:
            for env, q in zip(self.envs, queries):
                env.cancel(q)
            raise
        results = [env.learn(q, a, checked) for env, q, a in zip(self.envs, queries, answers)]
        return tuple(list(column) for column in zip(*results))  # type: ignore[return-value]
