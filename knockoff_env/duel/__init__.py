"""The attack as a two-agent game: the attacker against a defender that learns too (PettingZoo).

``from knockoff_env.duel import parallel_env`` builds the duel on the embedded world;
:class:`DuelEnv` wraps any :class:`~knockoff_env.KnockoffEnv`. Needs the ``duel`` extra
(PettingZoo). See ``docs/duel.md``.
"""
from .clients import FEATURES
from .embedded import env, parallel_env
from .env import ATTACKER, DEFENDER, GLOBAL_FEATURES, DuelEnv
from .menu import MENU, NONE, REFUSE, Menu, benign_cost

__all__ = ["DuelEnv", "parallel_env", "env", "MENU", "NONE", "REFUSE", "Menu", "benign_cost", "FEATURES",
           "GLOBAL_FEATURES", "ATTACKER", "DEFENDER"]
