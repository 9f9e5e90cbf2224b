"""Agents that play KnockoffEnv: the paper's gradient bandits, random, and SB3 baselines."""
from .base import Agent, action_for
from .gradient_bandit import GradientBandit
from .random_agent import RandomAgent
from .runner import run_attack
from .summary import format_summary

__all__ = ["Agent", "GradientBandit", "RandomAgent", "action_for", "run_attack", "format_summary", "make_agent",
           "AGENTS"]

AGENTS = ("adaptive", "adaptive-flat", "random", "ppo", "a2c", "dqn", "maskable-ppo")


def make_agent(name: str, env, seed: int | None = None, **kwargs):
    """A bandit or random agent by its CLI name (SB3 agents are trained: see ``agents.sb3``)."""
    if name == "adaptive":
        return GradientBandit(env, hierarchical=True, seed=seed, **kwargs)
    if name == "adaptive-flat":
        return GradientBandit(env, hierarchical=False, seed=seed, **kwargs)
    if name == "random":
        return RandomAgent(env, seed=seed)
    raise ValueError(f"unknown agent {name!r}; choose one of {AGENTS}")
