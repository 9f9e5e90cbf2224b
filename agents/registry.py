"""The agents by their command-line names: ``<strategy>`` is hierarchical, ``<strategy>-flat``
one bandit over all labels (as the paper's adaptive / adaptive-flat)."""
from __future__ import annotations

import inspect

from .bandits import UCB, DiscountedUCB, Exp3S, GaussianThompson
from .gradient_bandit import GradientBandit
from .random_agent import RandomAgent

BANDITS = {"adaptive": GradientBandit, "ucb": UCB, "d-ucb": DiscountedUCB, "thompson": GaussianThompson,
           "exp3s": Exp3S}
LABEL_AGENTS = {**{name: (cls, True) for name, cls in BANDITS.items()},
                **{f"{name}-flat": (cls, False) for name, cls in BANDITS.items()},
                "random": (RandomAgent, None)}
SB3_AGENTS = ("ppo", "a2c", "dqn", "maskable-ppo")  # trained, not made here: see agents.sb3
AGENTS = ("adaptive", "adaptive-flat", "random",
          *(n for bandit in BANDITS if bandit != "adaptive" for n in (bandit, f"{bandit}-flat")), *SB3_AGENTS)


def agent_options(name: str) -> tuple[str, ...]:
    """The keyword options the agent called ``name`` takes (its class's, less env, seed, hierarchical)."""
    if name not in LABEL_AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {tuple(LABEL_AGENTS)}")
    cls = LABEL_AGENTS[name][0]
    return tuple(p for p in inspect.signature(cls).parameters if p not in ("env", "seed", "hierarchical"))


def make_agent(name: str, env, seed: int | None = None, **options):
    """A bandit or random agent by its CLI name (SB3 agents are trained: see ``agents.sb3``)."""
    if name not in LABEL_AGENTS:
        raise ValueError(f"unknown agent {name!r}; choose one of {AGENTS}"
                         + (" (SB3 agents are trained: see agents.sb3)" if name in SB3_AGENTS else ""))
    unknown = sorted(set(options) - set(agent_options(name)))
    if unknown:
        raise ValueError(f"agent {name!r} takes no option {unknown}; its options are {agent_options(name)}")
    cls, hierarchical = LABEL_AGENTS[name]
    if hierarchical is None:
        return cls(env, seed=seed, **options)
    return cls(env, hierarchical=hierarchical, seed=seed, **options)
