"""One loop that plays any agent against the env to the budget: progress bar, logs, summary."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from knockoff_env.validate import is_integer

from .attack_log import AttackLog
from .durable import DurableRun, is_json
from .interrupt import StepBoundaryInterrupt

POLICY_POINTS = 200  # policy snapshots logged per episode
REWARD_POINTS = 1000  # reward points logged per episode (each the mean of its block of steps)


def run_attack(env, agent, *, seed: int = 0, logdir: str | Path | None = None, eval_every: int | None = None,
               retrain_epochs: int = 0, progress: bool = True, retrain_kwargs: dict | None = None,
               checkpoint_every: int | None = None, resume: bool = False) -> dict:
    """Play one episode to the budget and report the attack.

    Args:
        env: a KnockoffEnv (wrapped or not). agent: any object with ``act``/``update``
            (and ``coarse_probabilities`` for policy logs).
        seed: seeds the env (images, knockoff) and the agent.
        logdir: where TensorBoard events, ``policy.png``, ``accuracy.png``, the transfer set,
            the knockoff's weights, ``config.json`` and ``summary.json`` go (nothing if None).
        eval_every: evaluate the online knockoff every this many queries (and at the end).
        retrain_epochs: > 0 retrains a fresh knockoff on the transfer set (phase b) and
            reports its accuracy as ``knockoff_accuracy``.
        checkpoint_every: journal every step into ``logdir`` and checkpoint every this many
            steps, so that an interrupted attack can be resumed (see :mod:`agents.durable`).
        resume: continue the interrupted attack journaled in ``logdir`` (same env, agent, seed).
    Ctrl-C (SIGINT, main thread) stops the attack at the next step boundary and wraps it up as
    a finished one (evaluation, figures, saved files; no retraining) with ``interrupted: True``
    in the result; a second Ctrl-C raises ``KeyboardInterrupt`` at once (see :mod:`agents.interrupt`).

    Returns:
        ``victim_accuracy``, ``knockoff_accuracy`` (retrained if asked, else online),
        ``knockoff_accuracy_online``, ``times_victim``, ``agreement``, ``queries``, ``seconds``,
        ``accuracy_curve`` ([(queries, online accuracy)] at each evaluation and the end)…
    """
    core = env.unwrapped
    start = time.perf_counter()
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if (checkpoint_every or resume) and not logdir:
        raise ValueError("checkpoint_every/resume need logdir, the run directory for the journal and checkpoints")
    durable = DurableRun(logdir, env, agent, seed, checkpoint_every) if checkpoint_every or resume else None
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    step, done = 0, False
    if durable:
        obs, info, step, done = durable.start(obs, info, resume)
    total_steps = -(-core.budget // core.queries_per_step)
    log = AttackLog(logdir, core.query_set.coarse_names, title=type(agent).__name__,
                    reward_every=max(1, total_steps // REWARD_POINTS)) if logdir else None
    policy_every = max(1, total_steps // POLICY_POINTS)
    next_eval = (info["queries"] // eval_every + 1) * eval_every if eval_every else 0
    curve = []
    with tqdm(total=core.budget, initial=info["queries"], unit="query", disable=not progress, desc="attack") as bar, \
            StepBoundaryInterrupt() as interrupt:
        while not done and not interrupt.requested:
            action = agent.act(obs, info)
            if log and step % policy_every == 0 and hasattr(agent, "coarse_probabilities"):
                log.policy(info["queries"], agent.coarse_probabilities(np.asarray(info["action_mask"], bool)))
            with interrupt.step():
                obs, reward, terminated, truncated, info = env.step(action)
                if durable:
                    durable.record(info["queries_this_step"])
            agent.update(action, reward, info)
            step += 1
            if durable:
                durable.checkpoint(step)
            bar.update(info["queries_this_step"])
            if log:
                log.rewards(info["queries"], reward, info["rewards"])
            if eval_every and info["queries"] >= next_eval and not terminated:
                accuracy = core.evaluate()["knockoff_accuracy"]
                next_eval += eval_every
                curve.append((info["queries"], accuracy))
                bar.set_postfix(knockoff=f"{accuracy:.3f}")
                if log:
                    log.accuracy(info["queries"], accuracy)
            done = terminated or truncated
    if durable:
        durable.close()
    interrupted = interrupt.requested and not done
    if interrupted:
        retrain_epochs = 0  # the user asked to stop: wrap up what was paid for, train nothing new
    online = core.evaluate()
    attack_seconds = time.perf_counter() - start
    result = {"agent": type(agent).__name__, "seed": seed, "queries": info["queries"], "steps": step,
              "victim_queries": core.victim.queries, "interrupted": interrupted,
              "victim_accuracy": online["victim_accuracy"],
              "knockoff_accuracy_online": online["knockoff_accuracy"], "attack_seconds": attack_seconds,
              "accuracy_curve": curve + [(info["queries"], online["knockoff_accuracy"])]}
    final, model = online, core.knockoff.model
    if retrain_epochs:
        model = core.retrain(epochs=retrain_epochs, seed=seed, progress=progress, **(retrain_kwargs or {}))
        final = core.evaluate(model)
    result.update(knockoff_accuracy=final["knockoff_accuracy"], times_victim=final["times_victim"],
                  agreement=final["agreement"], retrained=bool(retrain_epochs),
                  seconds=time.perf_counter() - start)
    if log:
        log.accuracy(info["queries"], online["knockoff_accuracy"])
        result["figures"] = {k: str(v) for k, v in log.close(online["victim_accuracy"]).items()}
        _save_run(Path(logdir), env, core, model, result)
    return result


def _save_run(logdir: Path, env, core, model, result: dict) -> None:
    """Transfer set (npz), knockoff weights (state dict), config and summary (JSON)."""
    core.transfer_set.save(logdir / "transfer_set.npz")
    torch.save(model.state_dict(), logdir / "knockoff.pt")
    spec = getattr(env, "spec", None) or getattr(core, "spec", None)
    if spec is not None:
        kwargs = {k: v for k, v in spec.kwargs.items() if is_json(v)}
        config = {"env_id": spec.id, "env_kwargs": kwargs, "agent": result["agent"], "seed": result["seed"],
                  "budget": core.budget}
        (logdir / "config.json").write_text(json.dumps(config, indent=2))
    (logdir / "summary.json").write_text(json.dumps(result, indent=2))


def format_summary(result: dict) -> str:
    """The short summary printed after an attack."""
    return (f"victim accuracy   {result['victim_accuracy']:.4f}\n"
            f"knockoff accuracy {result['knockoff_accuracy']:.4f}  ({result['times_victim']:.2f}× victim"
            f"{', retrained' if result.get('retrained') else ''}; online {result['knockoff_accuracy_online']:.4f})\n"
            f"agreement         {result['agreement']:.4f}\n"
            f"queries           {result['queries']}\n"
            f"seconds           {result['seconds']:.1f}")
