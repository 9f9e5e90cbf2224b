"""knockoff_env: the Knockoff Nets model-stealing attack as a Gymnasium environment.

``import knockoff_env`` registers the env ids (Gymnasium ≥ 1.0 has no plugin entry points),
so ``gym.make("Knockoff-Digits-v0")`` works; ``gym.make("knockoff_env:Knockoff-Digits-v0")``
imports and registers in one go.
"""
from gymnasium.envs.registration import register, registry

from . import fork_safety  # noqa: F401  (registers the at-fork handler)
from .env import KnockoffEnv
from .knockoff import OnlineKnockoff, train_offline
from .query_set import QuerySet
from .rewards import RewardFunction, certainty, diversity, soft_cross_entropy
from .transfer_set import TransferSet
from .victim import BlackBox, VictimOutputError

__all__ = ["KnockoffEnv", "BlackBox", "VictimOutputError", "QuerySet", "RewardFunction", "TransferSet",
           "OnlineKnockoff", "train_offline", "certainty", "diversity", "soft_cross_entropy", "ENV_IDS"]
__version__ = "0.1.0"

ENV_IDS = {
    "Knockoff-Digits-v0": "knockoff_env.worlds.digits:make_digits_env",
}

for _id, _entry in ENV_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry)
