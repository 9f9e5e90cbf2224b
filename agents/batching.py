"""What the runner does for a strategy that needs neither the answers nor the online knockoff.

The paper's random strategy samples the transfer set without looking at the victim's answers
and trains the knockoff only offline. Two agent attributes say so (both default to the
adaptive agents' needs):

* ``needs_online_knockoff = False``: :func:`choose_online` has the env skip the online knockoff
  (``env.prefer_online(False)``) unless the user asked for it: ``train_online=True`` given to the
  env or to :func:`~agents.run_attack`, or an ``eval_every`` curve of the online knockoff. A
  resumed run follows what its journal recorded.
* ``answer_independent = True``: the next actions never depend on an answer, so
  :func:`play_batch` draws many steps, sends them to the victim in one call of up to its
  ``batch_size`` images (a served victim's ``max_batch``: one request) and records them as
  the steps they stand for (:meth:`~knockoff_env.KnockoffEnv.step_batch`): the same draws, the
  same budget, the same journal (one atomic batch per call) and detectors fed in query order.
  An agent with ``act_ahead(steps)`` (the labels of its next steps, chosen as its ``act``
  would) has a batch's labels named at once and drawn in one pass
  (:meth:`~knockoff_env.KnockoffEnv.prepare_ahead`).
"""
from __future__ import annotations

from pathlib import Path

from knockoff_env.checks import is_integer
from knockoff_env.data.lookahead import hint_from
from knockoff_env.durability.journal import Journal

from .base import Agent, action_for
from .durable import JOURNAL


def choose_online(core, agent, train_online: bool | None, eval_every: int | None, resume_dir=None) -> bool:
    """Settle whether the env trains its online knockoff this episode (see the module docstring)."""
    if train_online is not None:
        if core.prefer_online(train_online) != bool(train_online):
            raise ValueError(f"train_online={train_online} cannot be honoured: the env was built with "
                             f"train_online={core.train_online} (or its reward needs the online knockoff); "
                             "give the choice in one place")
        return bool(train_online)
    wanted = bool(getattr(agent, "needs_online_knockoff", True) or eval_every)
    journal = Path(resume_dir) / JOURNAL if resume_dir else None
    if journal is not None and journal.exists():
        wanted = Journal.saved_config(journal).get("train_online", wanted)  # as the run was started
    return core.prefer_online(wanted)


def batch_images(core, agent, batch: bool | int | None) -> int | None:
    """Images per victim call for a batched episode (None: one step per call)."""
    independent = bool(getattr(agent, "answer_independent", False))
    if batch is None:
        return core.victim.batch_size if independent else None
    if batch is False:
        return None
    if not independent:
        raise ValueError(f"batch={batch!r}: {type(agent).__name__} chooses its actions from the victim's answers, "
                         "so its steps cannot be queried ahead in batches; leave batch unset")
    if batch is True:
        return core.victim.batch_size
    if not is_integer(batch) or batch < 1:
        raise ValueError(f"batch={batch!r} must be True, False or a positive number of images per victim call")
    return int(batch)


def acting_ahead(agent):
    """The agent's ``act_ahead`` when it chooses as its ``act`` would: both defined by one class
    (a subclass or wrapper that changes ``act`` alone is acted for step by step)."""
    def owner(name):
        return next((c for c in type(agent).__mro__ if name in vars(c)), None)
    ahead = owner("act_ahead")
    return getattr(agent, "act_ahead") if ahead is not None and ahead is owner("act") else None


def play_batch(episode, interrupt, bar) -> None:
    """One batch of the runner's episode: the steps are drawn (the labels of all of them from
    the agent's ``act_ahead`` when it has one, else the agent acts for each step and a first
    Ctrl-C ends the batch at the step in flight), the env queries them in one call and learns
    them; then logs, checkpoint, a due evaluation, as after single steps."""
    ep, core, agent = episode, episode.core, episode.agent
    hint_from(core, agent, ep.step)
    ahead = acting_ahead(agent)
    if ahead is not None:
        policy_at_batch_start(ep)
        queries = core.prepare_ahead(ahead, ep.batch, ep.stop_at())
        actions = [action_for(core, q.position) for q in queries] if learns(agent) else None
    else:
        actions = []
        queries = core.prepare_batch(acting(ep, interrupt, actions), ep.batch, ep.stop_at())
    hint_from(core, agent, ep.step + len(queries))  # the look-ahead decodes the next batch meanwhile
    with interrupt.step():
        obs, rewards, terminated, truncated, infos = core.answer_batch(queries)  # a durable run journals
    ep.victim_calls += 1
    if actions is not None:  # (None: drawn ahead for an agent that learns nothing)
        for action, reward, info in zip(actions, rewards, infos):
            agent.update(action, float(reward), info)
    if ep.log:
        for reward, info in zip(rewards, infos):
            ep.log.rewards(info["queries"], float(reward), info["rewards"])
    since, ep.step = ep.step, ep.step + len(infos)
    if ep.durable:
        ep.durable.checkpoint(ep.step, since)
    bar.update(infos[-1]["queries"] - ep.info["queries"])
    ep.obs, ep.info = obs, infos[-1]
    ep.after(terminated or truncated, bar)


def policy_at_batch_start(ep) -> None:
    """A policy snapshot for a batch drawn ahead: the pools between its steps are never seen, so
    a snapshot that falls due is taken at the start of the next batch (at most one per batch)."""
    if ep.log and ep.step >= ep.next_policy and hasattr(ep.agent, "coarse_probabilities"):
        ep.log.policy(ep.info["queries"], ep.agent.coarse_probabilities(ep.core.query_set.remaining() > 0))
        ep.next_policy = (ep.step // ep.policy_every + 1) * ep.policy_every


def learns(agent) -> bool:
    """Whether ``agent.update`` does anything (the base class's learns nothing)."""
    return getattr(type(agent), "update", Agent.update) is not Agent.update


def acting(ep, interrupt, actions: list):
    """``act()`` for :meth:`~knockoff_env.KnockoffEnv.prepare_batch`: the agent's next action
    (kept in ``actions``), the policy logged when due; None once a Ctrl-C came."""
    agent, core = ep.agent, ep.core
    pooled = int(core.query_set.remaining().sum())

    def act():
        if actions and interrupt.requested:
            return None
        if ep.log and (ep.step + len(actions)) % ep.policy_every == 0 and hasattr(agent, "coarse_probabilities"):
            remaining = core.query_set.remaining()
            ep.log.policy(ep.info["queries"] + pooled - int(remaining.sum()),
                          agent.coarse_probabilities(remaining > 0))
        actions.append(agent.act(ep.obs, ep.info))
        return actions[-1]
    return act
