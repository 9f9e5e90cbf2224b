"""The duel on the embedded world, PettingZoo's way: ``parallel_env(**kwargs)`` and ``env(**kwargs)``.

The attacker plays ``Knockoff-Digits-v0`` (budget 1,000 by default); the benign clients send the
victim's own training digits (the train split of :func:`~knockoff_env.worlds.digits.digits_split`,
disjoint from the eval set on which the attacker's agreement is measured).
"""
from __future__ import annotations

from pathlib import Path

from pettingzoo.utils.conversions import parallel_to_aec

from ..worlds.digits import digits_split, make_digits_env
from .env import DuelEnv
from .menu import MENU


def parallel_env(budget: int = 1000, *, menu=MENU, benign_clients: int = 1, benign_rate: float = 1.0,
                 lam: float = 1.0, eval_every: int = 25, final_epochs: int = 0, detector="prada",
                 window: int = 25, victim_path: str | Path | None = None, render_mode: str | None = None, **knockoff) -> DuelEnv:
    """The :class:`DuelEnv` on the digits world; ``knockoff`` keywords go to its KnockoffEnv
    (``reward``, ``queries_per_step``, ``knockoff_lr``, ``device``…). The attacker's action mode is
    ``"flat"`` unless given: then ``infos["attacker"]["action_mask"]`` (one entry per label) is a
    mask of its action space, as PettingZoo's tools expect (the paper's hierarchical bandit plays
    either mode)."""
    knockoff.setdefault("action_mode", "flat")
    attack = make_digits_env(budget=budget, victim_path=victim_path, **knockoff)
    train, _ = digits_split()
    return DuelEnv(attack, train, menu=menu, benign_clients=benign_clients, benign_rate=benign_rate, lam=lam,
                   eval_every=eval_every, final_epochs=final_epochs, detector=detector, window=window,
                   render_mode=render_mode)


def env(**kwargs):
    """The same duel as an AEC env (PettingZoo's ``parallel_to_aec``): attacker, then defender."""
    return parallel_to_aec(parallel_env(**kwargs))
