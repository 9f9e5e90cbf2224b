"""knockoff_env: the Knockoff Nets model-stealing attack as a Gymnasium environment.

``import knockoff_env`` registers the env ids (Gymnasium ≥ 1.0 has no plugin entry points),
so ``gym.make("Knockoff-Digits-v0")`` works; ``gym.make("knockoff_env:Knockoff-Digits-v0")``
imports and registers in one go.
"""
from gymnasium.envs.registration import register, registry

from . import fork_safety  # noqa: F401  (registers the at-fork handler)
from .defences import Defence, parse_defence
from .detectors import PRADA, Detector, parse_detector
from .env import KnockoffEnv
from .knockoff import OnlineKnockoff
from .offline import OfflineFit, fit_offline, train_offline
from .recipes import RECIPES, Recipe, resolve_recipe
from .validation import NearChanceWarning
from .query_set import QuerySet
from .rewards import RewardFunction, certainty, diversity, soft_cross_entropy
from .transfer_set import TransferSet
from .victim import BlackBox, VictimOutputError

__all__ = ["KnockoffEnv", "BlackBox", "VictimOutputError", "QuerySet", "RewardFunction", "TransferSet",
           "OnlineKnockoff", "train_offline", "fit_offline", "OfflineFit", "Recipe", "RECIPES",
           "resolve_recipe", "NearChanceWarning", "certainty", "diversity", "soft_cross_entropy", "ENV_IDS",
           "Defence", "parse_defence", "Detector", "PRADA", "parse_detector"]
__version__ = "0.1.0"

ENV_IDS = {
    "Knockoff-Digits-v0": "knockoff_env.worlds.digits:make_digits_env",
    "Knockoff-Caltech256-v0": "knockoff_env.worlds.paper:make_caltech256_env",
    "Knockoff-CUBS200-v0": "knockoff_env.worlds.paper:make_cubs200_env",
    "Knockoff-Indoor67-v0": "knockoff_env.worlds.paper:make_indoor67_env",
    "Knockoff-Diabetic5-v0": "knockoff_env.worlds.paper:make_diabetic5_env",
    "Knockoff-MNIST-v0": "knockoff_env.worlds.small_scale:make_mnist_env",
    "Knockoff-CIFAR10-v0": "knockoff_env.worlds.small_scale:make_cifar10_env",
    "Knockoff-CIFAR100-v0": "knockoff_env.worlds.small_scale:make_cifar100_env",
}

for _id, _entry in ENV_IDS.items():
    if _id not in registry:
        register(id=_id, entry_point=_entry)
