"""Playing the duel: one episode of an attacker against a defender, and a defender's training.

The attacker is one of the paper's strategies (``"adaptive"``, the hierarchical gradient bandit,
by default), fresh each episode as in the paper: it learns within its attack. The defender is
kept across episodes, so a learning defender learns over them.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from knockoff_env.duel import ATTACKER, DEFENDER

from ..gradient_bandit import GradientBandit
from ..random_agent import RandomAgent
from .defenders import Defender

ATTACKERS = ("adaptive", "adaptive-flat", "random")


def make_attacker(name: str, duel, seed: int):
    if name not in ATTACKERS:
        raise ValueError(f"unknown attacker {name!r}; choose one of {ATTACKERS}")
    if name == "random":
        return RandomAgent(duel.knockoff, seed=seed)
    return GradientBandit(duel.knockoff, hierarchical=name == "adaptive", seed=seed)


def play_episode(duel, defender: Defender, *, seed: int, attacker: str = "adaptive", train: bool = True,
                 retrain_epochs: int = 0) -> dict:
    """One episode. ``train``: the defender explores and learns from the return (else it plays
    greedily and learns nothing). ``retrain_epochs`` > 0: the attacker's knockoff is then retrained
    from scratch on its transfer set (the paper's offline phase) and ``knockoff_accuracy`` is that
    model's accuracy on the eval set; otherwise it is the online knockoff's.

    Returns the knockoff's accuracy (``knockoff_accuracy``, ``knockoff_accuracy_online``), the
    agreement curve [(queries spent, agreement)], the benign cost (``benign_accuracy_lost``,
    ``benign_l1``, ``benign_cost``), both agents' returns, how the attacker's and the benign
    queries were answered (``answered``: {entry: queries}) and the seconds it took."""
    start = time.perf_counter()
    observations, infos = duel.reset(seed=seed)
    agent = make_attacker(attacker, duel, seed)
    defender.reset(seed, greedy=not train)
    returns = {ATTACKER: 0.0, DEFENDER: 0.0}
    curve = [(0, duel.agreement)]
    while duel.agents:
        actions = {ATTACKER: agent.act(observations[ATTACKER], infos[ATTACKER]),
                   DEFENDER: defender.act(observations[DEFENDER])}
        observations, rewards, _, _, infos = duel.step(actions)
        agent.update(actions[ATTACKER], rewards[ATTACKER], infos[ATTACKER])
        for name in returns:
            returns[name] += rewards[name]
        if infos[DEFENDER]["measured"]:
            curve.append((duel.knockoff.spent, infos[DEFENDER]["agreement"]))
    if train:
        defender.end_episode(returns[DEFENDER])
    core = duel.knockoff
    online = core.evaluate()
    cost = duel.benign_cost
    result = {"defender": defender.name, "attacker": attacker, "seed": seed,
              "knockoff_accuracy_online": online["knockoff_accuracy"], "knockoff_accuracy": online["knockoff_accuracy"],
              "victim_accuracy": online["victim_accuracy"], "agreement": online["agreement"],
              "agreement_curve": curve, "benign_accuracy_lost": cost["accuracy_lost"], "benign_l1": cost["l1"],
              "benign_cost": cost["cost"], "defender_return": returns[DEFENDER], "attacker_return": returns[ATTACKER],
              "queries": core.spent, "transfer_set_size": len(core.transfer_set),
              "answered": {side: dict(zip(duel.menu.names, counts.tolist())) for side, counts in duel.answered.items()},
              "retrained": False}
    if retrain_epochs and len(core.transfer_set):  # nothing answered: the knockoff never learned anything
        fit = core.fit(epochs=retrain_epochs, seed=seed, warn=False)
        result.update(knockoff_accuracy=core.evaluate(fit.model)["knockoff_accuracy"], retrained=True)
    result["seconds"] = time.perf_counter() - start
    return result


def train_defender(duel, defender: Defender, episodes: int, *, seed: int = 0, attacker: str = "adaptive",
                   on_episode: Callable[[int, dict], None] | None = None) -> list[dict]:
    """``episodes`` training episodes (seeds ``1000·seed + e``); one result per episode (see
    :func:`play_episode`, the online knockoff's accuracy, no retraining)."""
    if not isinstance(episodes, (int, np.integer)) or episodes < 1:
        raise ValueError(f"episodes={episodes!r} must be a positive whole number")
    history = []
    for e in range(int(episodes)):
        result = play_episode(duel, defender, seed=1000 * seed + e, attacker=attacker, train=True)
        result["episode"] = e
        history.append(result)
        if on_episode is not None:
            on_episode(e, result)
    return history


def evaluate_defender(duel, defender: Defender, *, seed: int = 0, attacker: str = "adaptive",
                      retrain_epochs: int = 30) -> dict:
    """The defender's greedy play in a held-out episode (seed ``1000·seed + 999``, the same for
    every defender), the attacker's knockoff retrained offline for ``retrain_epochs``."""
    return play_episode(duel, defender, seed=1000 * seed + 999, attacker=attacker, train=False,
                        retrain_epochs=retrain_epochs)
