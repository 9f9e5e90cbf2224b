"""Jacobian-based augmentation (Papernot et al., AsiaCCS 2017) as an agent: its queries are new
images made from the transfer set.

Round 0 queries a **seed set** of ``seed_size`` images drawn uniformly from the query set
(default budget // 16, so that four doubling rounds fill the budget). Each later round ρ takes
every image queried so far (the transfer set S_ρ, pool and synthetic), with the victim's top-1
answer as its label, and makes x + λ_ρ·sign(∇_x F(x)[label]) for each with the env's online
knockoff as the substitute F (:func:`~knockoff_env.training.jacobian.jacobian_augment`, batched;
λ_ρ = λ·(−1)^⌊ρ/τ⌋, paper: λ = 0.1, τ = 3), clipped to the seed images' pixel range. The new
images join the query set as synthetic images (:meth:`~knockoff_env.data.query_set.QuerySet.add_synthetic`,
each inheriting its parent's label) and are queried in order, ``queries_per_step`` a step, by
:class:`~knockoff_env.core.actions.ImageChoice`: counted against the budget, answered through
the defence, watched by the detector and stored in the transfer set like any query. The last
round is cut at the budget, as the reference code does.

Resuming: the synthetic images are part of the env's checkpoint, and those made after it are
made again while the journal is replayed (the same knockoff, the same transfer set, the same
images on CPU: bit-identical; the journal's indices check the rest).

Differences from the paper: the substitute is the online knockoff (one SGD step per step on
the victim's answers), not retrained for several epochs each round; seeds come from the query
set at random, not a class-balanced pick of the victim's test set.
"""
from __future__ import annotations

import numpy as np
import torch

from knockoff_env.checks import is_finite_number, is_integer
from knockoff_env.training.jacobian import jacobian_augment, step_size

from .queue import QueueAgent

DOUBLINGS = 4  # default seed set: budget // 2**4, so four augmentation rounds fill the budget


class JacobianAgent(QueueAgent):
    """Random seed images, then rounds that double the transfer set by Jacobian augmentation."""

    needs_online_knockoff = True  # the online knockoff is the substitute

    def __init__(self, env, seed: int | None = None, seed_size: int | None = None, lam: float = 0.1,
                 tau: int | None = 3):
        super().__init__(env, seed)
        core = env.unwrapped
        seed_size = max(1, core.budget // 2 ** DOUBLINGS) if seed_size is None else seed_size
        if not is_integer(seed_size) or seed_size < 1:
            raise ValueError(f"jacobian seed_size={seed_size!r} must be a positive number of images")
        if not is_finite_number(lam) or lam <= 0:
            raise ValueError(f"jacobian lam={lam!r} must be a step size > 0 (paper: 0.1)")
        if tau is not None and (not is_integer(tau) or tau < 1):
            raise ValueError(f"jacobian tau={tau!r} must be a positive number of rounds, or None")
        self.seed_size, self.lam, self.tau = int(seed_size), float(lam), tau

    def next_round(self, left: int) -> np.ndarray:
        """The indices of the next round's images (made and added to the query set for a new round)."""
        core = self.env.unwrapped
        qs = core.query_set
        if core.spent == 0:
            pool = qs.unqueried()
            return self.rng.choice(pool, min(self.seed_size, left, len(pool)), replace=False)
        indices, outputs = core.transfer_set.view()
        points = qs.fetch(indices)
        pool_points = points[torch.from_numpy(indices < len(qs))]
        clip = (float(pool_points.min()), float(pool_points.max()))
        labels = torch.from_numpy(outputs.argmax(1))
        made = jacobian_augment(core.knockoff.model, points, labels, step_size(self.rounds, self.lam, self.tau), clip)
        self.rounds += 1
        keep = min(len(made), left)
        return qs.add_synthetic(made[:keep], indices[:keep])
