"""The agents by their command-line names: ``<strategy>`` is hierarchical, ``<strategy>-flat``
one bandit over all labels (as the paper's adaptive / adaptive-flat); ``activethief-<rule>`` and
``jacobian`` choose (or make) the images themselves; ``copycat`` is a preset whose env answers
with labels only (:data:`ENV_PRESETS`, applied by the CLI and sweeps; from Python, build the env
with :func:`env_preset`'s options)."""
from __future__ import annotations

import inspect

from .active.activethief import ActiveThief
from .active.jacobian import JacobianAgent
from .active.selection import RULES
from .bandits import UCB, DiscountedUCB, Exp3S, GaussianThompson
from .gradient_bandit import GradientBandit
from .random_agent import CopycatCNN, RandomAgent

BANDITS = {"adaptive": GradientBandit, "ucb": UCB, "d-ucb": DiscountedUCB, "thompson": GaussianThompson,
           "exp3s": Exp3S}
LABEL_AGENTS = {**{name: (cls, True) for name, cls in BANDITS.items()},
                **{f"{name}-flat": (cls, False) for name, cls in BANDITS.items()},
                "random": (RandomAgent, None)}
IMAGE_AGENTS = {**{f"activethief-{rule}": (ActiveThief, {"rule": rule}) for rule in RULES},
                "jacobian": (JacobianAgent, {})}  # they choose the images (ImageChoice)
PRESETS = {"copycat": (CopycatCNN, {})}
ENV_PRESETS = {"copycat": {"output": "label"}}  # env options a preset needs (CopycatCNN: labels only)
BUILT = {**{name: (cls, {} if h is None else {"hierarchical": h}) for name, (cls, h) in LABEL_AGENTS.items()},
         **IMAGE_AGENTS, **PRESETS}  # every agent make_agent builds (all durable: they have state_dict)
SB3_AGENTS = ("ppo", "a2c", "dqn", "maskable-ppo")  # trained, not made here: see agents.sb3
AGENTS = ("adaptive", "adaptive-flat", "random",
          *(n for bandit in BANDITS if bandit != "adaptive" for n in (bandit, f"{bandit}-flat")),
          *IMAGE_AGENTS, *PRESETS, *SB3_AGENTS)


def agent_class(name: str) -> type:
    """The class that ``make_agent(name, ...)`` builds."""
    if name not in BUILT:
        raise ValueError(f"unknown agent {name!r}; choose one of {tuple(BUILT)}")
    return BUILT[name][0]


def agent_options(name: str) -> tuple[str, ...]:
    """The keyword options the agent called ``name`` takes (its class's, less env, seed and what the name fixes)."""
    cls, fixed = BUILT[name] if name in BUILT else (agent_class(name), {})
    return tuple(p for p in inspect.signature(cls).parameters if p not in ("env", "seed", *fixed))


def env_preset(name: str) -> dict:
    """The env options the agent called ``name`` needs (``copycat``: ``output="label"``); usually none."""
    return dict(ENV_PRESETS.get(name, {}))


def make_agent(name: str, env, seed: int | None = None, **options):
    """An agent by its CLI name (SB3 agents are trained: see ``agents.sb3``)."""
    if name not in BUILT:
        raise ValueError(f"unknown agent {name!r}; choose one of {AGENTS}"
                         + (" (SB3 agents are trained: see agents.sb3)" if name in SB3_AGENTS else ""))
    unknown = sorted(set(options) - set(agent_options(name)))
    if unknown:
        raise ValueError(f"agent {name!r} takes no option {unknown}; its options are {agent_options(name)}")
    cls, fixed = BUILT[name]
    return cls(env, seed=seed, **fixed, **options)
