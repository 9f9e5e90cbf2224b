"""Agents that play KnockoffEnv: the paper's gradient bandits, random, other label bandits
(UCB, discounted UCB, Thompson sampling, EXP3.S), agents that choose or make the images (ActiveThief,
Jacobian-based augmentation), the CopycatCNN preset and SB3 baselines."""
from .active.activethief import ActiveThief
from .active.jacobian import JacobianAgent
from .bandits import UCB, DiscountedUCB, Exp3S, GaussianThompson
from .base import Agent, action_for
from .gradient_bandit import GradientBandit
from .random_agent import CopycatCNN, RandomAgent
from .registry import AGENTS, agent_options, env_preset, make_agent
from .runner import run_attack
from .summary import format_summary

__all__ = ["Agent", "GradientBandit", "RandomAgent", "UCB", "DiscountedUCB", "GaussianThompson", "Exp3S",
           "ActiveThief", "JacobianAgent", "CopycatCNN", "env_preset", "action_for", "run_attack", "format_summary", "make_agent", "agent_options", "AGENTS"]
