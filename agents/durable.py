"""Checkpoint and resume for :func:`agents.run_attack`: no paid query is lost or asked twice.

A durable run keeps in its run directory

* ``journal.bin`` — every step's (query-set indices, victim outputs, remote request id),
  appended as soon as the victim answers, before the knockoff learns from it
  (:mod:`knockoff_env.durability.journal`); the steps of one victim call (a batched strategy,
  :mod:`agents.batching`) as one atomic batch. It *is* the transfer set. A remote victim's answers
  are paid for, so each record (each batch) is fsynced at once; an in-process victim's records are
  fsynced before every checkpoint and at the end (they survive a crash or SIGKILL of the process; a
  power cut can lose those after the last checkpoint, which the victim answers again for free).
* ``checkpoint.pt`` — every ``checkpoint_every`` steps, atomically: the env's state (pools
  = ``order`` + ``cursor``, env and torch RNGs, knockoff weights and momentum, reward
  window and normaliser, counters), the agent's state (preferences, baseline, RNG) and the
  step count (:mod:`knockoff_env.checkpoint`). The transfer set is not copied into it.

Resuming restores the last checkpoint (or, if none was written yet, the seeded reset),
refills the transfer set from the journal records before it, then **replays** the records
after it, batch by batch: the agent acts, the env steps, and the victim's answer is served
from the journal instead of the victim. So the knockoff is retrained on the replayed records, the
rewards and the agent learn from them, and the pools mark them spent, exactly as in the
original run; on CPU the resumed run is bit-identical to an uninterrupted one. Every
replayed step must draw exactly the journaled images, otherwise resuming stops with an
error (it could only happen if the computation is not deterministic, e.g. some GPU kernels).

The gap between a paid answer and its durable record is the write itself. A kill inside
it loses that step's record (a batch's: the whole batch), and the resumed run queries its
images again, in the same request: an in-process
victim simply answers again; a remote victim (:mod:`knockoff_env.remote`) gets the same
request id (derived from the journal's run id, the queries paid before and the images), so
the server answers it from its kept answers (which `--state DIR` keeps across a server restart)
without charging it twice.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from knockoff_env.checks import is_integer
from knockoff_env.durability.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from knockoff_env.durability.journal import Journal
from knockoff_env.durability.run_dir import is_json

JOURNAL, CHECKPOINT, CURVE = "journal.bin", "checkpoint.pt", "accuracy_curve.jsonl"
AGENT_OPTIONS = ("alpha", "hierarchical", "baseline_step", "discount", "xi", "reward_bound", "sigma", "gamma", "share",
                 "rule", "seed_size", "round_size", "pool_sample", "lam", "tau", "exclude")
REMOTE = "served victim"  # a victim URL in a run's configuration: where it is served is not part of the attack


def run_config(env, agent, seed: int) -> dict:
    """What a journal or checkpoint must agree with: env id and options, budget, agent, seed."""
    core = env.unwrapped
    spec = getattr(env, "spec", None) or getattr(core, "spec", None)
    kwargs = {k: v for k, v in (spec.kwargs if spec else {}).items() if is_json(v)}
    if isinstance(kwargs.get("victim"), str) and "://" in kwargs["victim"]:
        kwargs["victim"] = REMOTE  # the attack does not change when its server moves (`--resume --victim-url`)
    return {**core.durable_config(), "env_id": spec.id if spec else None, "env_kwargs": kwargs,
            "agent": type(agent).__name__, "seed": seed,
            "agent_options": {k: getattr(agent, k) for k in AGENT_OPTIONS if hasattr(agent, k)}}


def follow_saved_pools(core, run_dir) -> None:
    """A resumed run shuffles its pools as it began (the scheme its configuration recorded; none:
    journaled before pools were shuffled lazily, whole-pool shuffles), so that replaying it
    draws the same images."""
    journal = Path(run_dir) / JOURNAL
    if journal.exists():
        core.query_set.pools = Journal.saved_config(journal).get("pools", "whole")


class DurableRun:
    """Journals every step and checkpoints every ``checkpoint_every`` steps into ``run_dir``."""

    def __init__(self, run_dir: str | Path, env, agent, seed: int, checkpoint_every: int | None):
        if checkpoint_every is not None and (not is_integer(checkpoint_every) or checkpoint_every < 1):
            raise ValueError(f"checkpoint_every={checkpoint_every!r} must be a positive number of steps")
        if not callable(getattr(agent, "state_dict", None)):
            raise ValueError(f"{type(agent).__name__} has no state_dict(), so it cannot be checkpointed; "
                             "use a bandit or the random agent for durable runs")
        self.dir, self.env, self.core, self.agent = Path(run_dir), env, env.unwrapped, agent
        self.every = checkpoint_every
        self.config = run_config(env, agent, seed)
        self.paid = hasattr(self.core.victim, "run_id")  # a remote victim: every answer is fsynced as it arrives
        self.journal: Journal | None = None

    def start(self, obs, info, resume: bool):
        """After the seeded reset: a new journal, or the resumed state. Returns obs, info, step, done."""
        if not resume:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / CURVE).unlink(missing_ok=True)
            self.journal = Journal.create(self.dir / JOURNAL, self.config, self.core.queries_per_step,
                                          self.core.num_classes, sync=self.paid)
            self._attach()
            return obs, info, 0, False
        self.journal, records = Journal.open(self.dir / JOURNAL, self.config, sync=self.paid)
        self._attach()
        step = self._restore(records)
        if step:
            obs, info = self.core.observe()
        done = step > 0 and (self.core.spent >= self.core.budget or not self.core.query_set.remaining().any())
        ends = np.flatnonzero(self.journal.batch_ends[step:]) + step + 1
        for end in ends:  # batch by batch, as the victim answered them
            obs, info, done = self._replay(records[step:end], obs, info, step)
            step = int(end)
        return obs, info, step, done

    def _restore(self, records: np.ndarray) -> int:
        """Load the checkpoint, if any, and refill the transfer set before it; its step count."""
        path = self.dir / CHECKPOINT
        if not path.exists():
            return 0
        state = load_checkpoint(path, self.config)
        step = int(state.pop("run.step"))
        if step > len(records):
            raise CheckpointError(f"{path} is at step {step} but {self.dir / JOURNAL} holds only {len(records)} "
                                  "steps: the journal lost records, so the transfer set cannot be rebuilt")
        self.core.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("env.")})
        self.agent.load_state_dict({k[6:]: v.numpy() for k, v in state.items() if k.startswith("agent.")})
        for record in records[:step]:
            n = int(record["n"])
            self.core.transfer_set.append(record["indices"][:n], record["outputs"][:n])
        if len(self.core.transfer_set) != self.core.spent:
            raise CheckpointError(f"{path} counts {self.core.spent} queries but the journal's first {step} steps "
                                  f"hold {len(self.core.transfer_set)}; the files come from different runs")
        return step

    def _replay(self, batch: np.ndarray, obs, info, step: int):
        """One journaled batch of steps (one victim call) through agent and env, answered from
        the journal, not the victim."""
        actions, queries, answers, drawn = [], [], [], 0
        for i, record in enumerate(batch):
            n = int(record["n"])
            actions.append(self.agent.act(obs, info))
            queries.append(self.core.prepare(actions[-1], pending=drawn))
            if not np.array_equal(queries[-1].index[:n], record["indices"][:n]):  # fewer: the step the alarm cut
                self.core.cancel_batch(queries)
                raise CheckpointError(f"replaying step {step + i} drew other images than the journal records: the "
                                      "run is not reproducible here (non-deterministic kernels?), so it cannot resume")
            drawn += len(queries[-1].index)
            self.core.victim.queries += n  # paid before the interruption
            answers.append(torch.from_numpy(record["outputs"][:n].copy()).to(self.core.device))
        obs, rewards, terminated, truncated, infos = self.core.learn_batch(queries, answers)
        for action, reward, step_info in zip(actions, rewards, infos):
            self.agent.update(action, float(reward), step_info)
        return obs, infos[-1], terminated or truncated

    def _attach(self) -> None:
        """Journal each step's answers the moment they arrive; a remote victim names its
        requests after the journal's run id, so a resumed run re-sends the same ids."""
        if self.paid:
            self.core.victim.run_id = self.journal.run_id
        self.core.on_answers = self._journal_answers
        self.core.on_answers_batch = self._journal_batch

    def _journal_answers(self, query, answers: torch.Tensor) -> None:
        requests = getattr(self.core.victim, "last_requests", None)
        self.journal.append(query.index, answers.detach().cpu().numpy(), requests[0] if requests else None)

    def _journal_batch(self, queries: list, answers: torch.Tensor) -> None:
        """The steps of one victim call as one batch (their answers in query order); each names
        the request of its first image."""
        requests = getattr(self.core.victim, "last_requests", None) or []
        host = answers.detach().cpu().numpy()
        steps, offset = [], 0
        for query in queries:
            n = len(query.index)
            request = requests[offset // self.core.victim.batch_size] if requests else None
            steps.append((query.index, host[offset:offset + n], request))
            offset += n
        self.journal.append_batch(steps)

    def checkpoint(self, step: int, since: int | None = None) -> None:
        """Every ``checkpoint_every`` steps, save env + agent state atomically; ``since``: the step
        count before the last batch of steps (a checkpoint is due when it crossed a multiple)."""
        since = step - 1 if since is None else since
        if self.every and step // self.every > since // self.every:
            self.journal.sync()  # the checkpoint never gets ahead of the durable journal
            state = {"run.step": np.int64(step)}
            state.update({f"env.{k}": v for k, v in self.core.state_dict(transfer_set=False).items()})
            state.update({f"agent.{k}": v for k, v in self.agent.state_dict().items()})
            save_checkpoint(self.dir / CHECKPOINT, state, self.config)

    def curve_point(self, queries: int, accuracy: float) -> None:
        """Keep an evaluation of the accuracy-vs-queries curve, so a resumed run reports the whole curve."""
        with open(self.dir / CURVE, "a") as f:
            f.write("\n" + json.dumps([int(queries), float(accuracy)]))  # a torn line never joins the next

    def past_curve(self, queries: int) -> list[tuple[int, float]]:
        """The curve's points up to ``queries`` from before an interruption (none for a new run)."""
        path = self.dir / CURVE
        lines = path.read_text().splitlines() if path.exists() else []
        points = {}
        for line in filter(None, lines):
            try:
                q, accuracy = json.loads(line)
            except ValueError:
                continue  # a line cut short by the interruption
            if q <= queries:
                points[q] = accuracy  # the latest evaluation at q (one after a torn step replaces it)
        return sorted(points.items())

    def close(self) -> None:
        self.core.on_answers = self.core.on_answers_batch = None
        if self.journal is not None:
            self.journal.close()

