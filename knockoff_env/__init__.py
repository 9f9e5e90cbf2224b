"""knockoff_env: the Knockoff Nets model-stealing attack as a Gymnasium environment.

``import knockoff_env`` registers the env ids (Gymnasium ≥ 1.0 has no plugin entry points),
so ``gym.make("Knockoff-Digits-v0")`` works; ``gym.make("knockoff_env:Knockoff-Digits-v0")``
imports and registers in one go. The package's layers, top to bottom: ``duel`` (the two-agent
game, with the ``duel`` extra; not imported here), ``worlds`` (registered ids), ``core`` (the env), then ``victim``, ``serve``, ``training``, ``data``, ``models`` and
``durability``, then small shared utilities (see the README's Layout section).
"""
from . import fork_safety  # noqa: F401  (registers the at-fork handler)
from .core.actions import ImageChoice
from .core.env import KnockoffEnv
from .core.options import EnvOptions
from .core.rewards import RewardFunction, certainty, diversity
from .core.transfer_set import TransferSet
from .data.query_set import QuerySet
from .training.estimate import NearChanceWarning
from .training.losses import soft_cross_entropy
from .training.offline import OfflineFit, fit_offline, train_offline
from .training.online import OnlineKnockoff
from .training.recipes import RECIPES, Recipe, resolve_recipe
from .victim import remote  # noqa: F401  (registers the http:// and https:// transports)
from .victim.blackbox import BlackBox, VictimOutputError
from .victim.defences import Defence, parse_defence
from .victim.detectors import PRADA, Detector, parse_detector
from .worlds.registry import ENV_IDS, register_worlds

__all__ = ["KnockoffEnv", "ImageChoice", "EnvOptions", "BlackBox", "VictimOutputError", "QuerySet", "RewardFunction",
           "TransferSet", "OnlineKnockoff", "train_offline", "fit_offline", "OfflineFit", "Recipe", "RECIPES",
           "resolve_recipe", "NearChanceWarning", "certainty", "diversity", "soft_cross_entropy", "ENV_IDS",
           "Defence", "parse_defence", "Detector", "PRADA", "parse_detector"]
__version__ = "0.1.0"

register_worlds()
