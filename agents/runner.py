"""One loop that plays any agent against the env to the budget: progress bar, logs, summary."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from knockoff_env.errors import ConfigError
from knockoff_env.lookahead import hint_from
from knockoff_env.validate import is_integer

from .attack_log import AttackLog
from .durable import DurableRun, is_json
from .estimates import ESTIMATE_WINDOW, online_agreement, online_judgement
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
        eval_every: evaluate the online knockoff every this many queries (and at the end): its
            accuracy on the eval set when there is one, and always its held-out agreement with
            the victim (each image scored before the knockoff learnt it: the attacker's estimate).
        retrain_epochs: > 0 retrains a fresh knockoff on the transfer set (phase b, the env's
            recipe; ``retrain_kwargs`` override any recipe field or ``holdout``) and reports its
            accuracy as ``knockoff_accuracy`` and its held-out agreement as ``heldout_agreement``.
        checkpoint_every: journal every step into ``logdir`` and checkpoint every this many
            steps, so that an interrupted attack can be resumed (see :mod:`agents.durable`).
        resume: continue the interrupted attack journaled in ``logdir`` (same env, agent, seed).
    Ctrl-C (SIGINT, main thread) stops the attack at the next step boundary and wraps it up as
    a finished one (evaluation, figures, saved files; no retraining) with ``interrupted: True``
    in the result; a second Ctrl-C raises ``KeyboardInterrupt`` at once (see :mod:`agents.interrupt`).

    Returns:
        ``victim_accuracy``, ``knockoff_accuracy`` (retrained if asked, else online),
        ``knockoff_accuracy_online``, ``times_victim``, ``agreement``, ``queries``, ``seconds``,
        ``accuracy_curve`` ([(queries, online accuracy)] at each evaluation and the end),
        ``agreement_curve`` ([(queries, online held-out agreement, images it was measured on)]),
        ``near_chance`` (the final knockoff's held-out agreement is near a constant guess's;
        ``advice`` says what to try), ``heldout_agreement`` and ``best_epoch`` after retraining…
        Without an eval set the accuracy fields are None and only the attacker's estimates remain.
    """
    core = env.unwrapped
    start = time.perf_counter()
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if eval_every is not None and (not is_integer(eval_every) or eval_every < 0):
        raise ConfigError(f"eval_every={eval_every!r} is not a number of queries",
                          "give a positive number, or 0 / None to evaluate only at the end")
    if (checkpoint_every or resume) and not logdir:
        raise ValueError("checkpoint_every/resume need logdir, the run directory for the journal and checkpoints")
    durable = DurableRun(logdir, env, agent, seed, checkpoint_every) if checkpoint_every or resume else None
    if core.eval_set is not None:  # a remote victim that cannot be evaluated says so before any query
        core.victim.evaluation_model()
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    step, done = 0, False
    if durable:
        obs, info, step, done = durable.start(obs, info, resume)
    total_steps = -(-core.budget // core.queries_per_step)
    log = AttackLog(logdir, core.query_set.coarse_names, title=type(agent).__name__,
                    reward_every=max(1, total_steps // REWARD_POINTS)) if logdir else None
    policy_every = max(1, total_steps // POLICY_POINTS)
    curve = durable.past_curve(info["queries"]) if durable else []
    agreement_curve: list = []
    has_eval = core.eval_set is not None
    next_eval = ((curve[-1][0] if curve else 0) // eval_every + 1) * eval_every if eval_every else 0
    if eval_every and not done and info["queries"] >= next_eval:  # resumed past a due evaluation
        if has_eval:
            curve.append((info["queries"], core.evaluate()["knockoff_accuracy"]))
            durable.curve_point(*curve[-1])
        next_eval = (info["queries"] // eval_every + 1) * eval_every
    window_start = None if eval_every else int(core.budget * (1 - ESTIMATE_WINDOW))
    with tqdm(total=core.budget, initial=info["queries"], unit="query", disable=not progress, desc="attack") as bar, \
            StepBoundaryInterrupt() as interrupt:
        while not done and not interrupt.requested:
            hint_from(core, agent, step)
            action = agent.act(obs, info)
            if log and step % policy_every == 0 and hasattr(agent, "coarse_probabilities"):
                log.policy(info["queries"], agent.coarse_probabilities(np.asarray(info["action_mask"], bool)))
            with interrupt.step():
                obs, reward, terminated, truncated, info = env.step(action)  # a durable run journals inside
            agent.update(action, reward, info)
            step += 1
            if durable:
                durable.checkpoint(step)
            bar.update(info["queries_this_step"])
            if log:
                log.rewards(info["queries"], reward, info["rewards"])
            if window_start is not None and info["queries"] >= window_start and not terminated:
                core.knockoff.heldout_agreement()  # the final estimate covers the last queries only
                window_start = None
            if eval_every and info["queries"] >= next_eval and not terminated:
                next_eval += eval_every
                online_agreement(core, info["queries"], agreement_curve, log, bar)
                if has_eval:
                    accuracy = core.evaluate()["knockoff_accuracy"]
                    curve.append((info["queries"], accuracy))
                    if durable:
                        durable.curve_point(info["queries"], accuracy)
                    bar.set_postfix(knockoff=f"{accuracy:.3f}", agreement=f"{agreement_curve[-1][1]:.3f}")
                    if log:
                        log.accuracy(info["queries"], accuracy)
            done = terminated or truncated
    if durable:
        durable.close()
    interrupted = interrupt.requested and not done
    if interrupted:
        retrain_epochs = 0  # the user asked to stop: wrap up what was paid for, train nothing new
    if core.train_online:
        online_agreement(core, info["queries"], agreement_curve, log, None)
    none = {"knockoff_accuracy": None, "victim_accuracy": None, "times_victim": None, "agreement": None}
    online = core.evaluate() if has_eval else none
    attack_seconds = time.perf_counter() - start
    result = {"agent": type(agent).__name__, "seed": seed, "queries": info["queries"], "steps": step,
              "victim_queries": core.victim.queries, "interrupted": interrupted,
              "victim_accuracy": online["victim_accuracy"],
              "knockoff_accuracy_online": online["knockoff_accuracy"], "attack_seconds": attack_seconds,
              "defence": core.victim.defence.spec() or None,
              "victim_accuracy_defended": online.get("victim_accuracy_defended"),
              "defence_l1": online.get("defence_l1"),
              "detector": core.detector.spec() if core.detector is not None else None,
              "detected_at": core.detected_at,
              "accuracy_curve": curve + ([(info["queries"], online["knockoff_accuracy"])] if has_eval else []),
              "agreement_curve": agreement_curve, "recipe": core.recipe.name}
    final, model = online, core.knockoff.model
    result.update(online_judgement(core, agreement_curve, bool(retrain_epochs)))
    if retrain_epochs:
        on_epoch = (lambda record: log.retrain_epoch(record)) if log else None
        fit = core.fit(epochs=retrain_epochs, seed=seed, progress=progress, on_epoch=on_epoch,
                       **(retrain_kwargs or {}))
        model = fit.model
        final = core.evaluate(model) if has_eval else none
        result.update(heldout_agreement=fit.heldout_agreement, heldout_chance=fit.chance,
                      heldout_size=fit.heldout_size, best_epoch=fit.best_epoch, retrain_epochs=fit.epochs,
                      recipe=fit.recipe.name, retrain_seconds_per_epoch=fit.seconds_per_epoch,
                      near_chance=fit.near_chance, advice=fit.advice)
    result.update(knockoff_accuracy=final["knockoff_accuracy"], times_victim=final["times_victim"],
                  agreement=final["agreement"], retrained=bool(retrain_epochs),
                  seconds=time.perf_counter() - start)
    if hasattr(core.victim, "ledger"):  # a remote victim: what the attack paid the server
        result["ledger"] = core.victim.ledger()
    if log:
        if has_eval:
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
    """The short summary printed after an attack; a fit near chance is said loudly."""
    def number(key: str) -> str:
        value = result.get(key)
        return "n/a (no eval set)" if value is None else f"{value:.4f}"
    lines = [f"victim accuracy   {number('victim_accuracy')}"]
    if result.get("knockoff_accuracy") is not None:
        lines.append(f"knockoff accuracy {result['knockoff_accuracy']:.4f}  ({result['times_victim']:.2f}× victim"
                     f"{', retrained' if result.get('retrained') else ''}; "
                     f"online {result['knockoff_accuracy_online']:.4f})")
        lines.append(f"agreement         {result['agreement']:.4f}  (on the eval set)")
    if result.get("retrained"):
        lines.append(f"held-out agreement {result['heldout_agreement']:.4f}  (attacker's estimate: "
                     f"{result['heldout_size']} held-out transfer queries; chance {result['heldout_chance']:.2f}; "
                     f"recipe {result['recipe']}, best epoch {result['best_epoch']}/{result['retrain_epochs']})")
    elif result.get("online_heldout_agreement") is not None:
        lines.append(f"held-out agreement {result['online_heldout_agreement']:.4f}  (online knockoff, each query "
                     f"scored before it was learnt; chance {result['heldout_chance']:.2f})")
    if result.get("defence"):
        lines.append(f"under defence     victim accuracy {number('victim_accuracy_defended')}, mean L1 "
                     f"{number('defence_l1')}  ({result['defence']})")
    if result.get("detector"):
        alarm = result.get("detected_at")
        lines.append(f"detector          {result['detector']}: "
                     + ("no alarm" if alarm is None else f"alarm at query {alarm}"))
    lines += [f"queries           {result['queries']}", f"seconds           {result['seconds']:.1f}"]
    if "ledger" in result:
        lines.append(format_ledger(result["ledger"]))
    if result.get("near_chance"):
        lines.append(f"WARNING: NEAR CHANCE: {result['advice']}")
    elif result.get("retrained") and result.get("online_near_chance"):
        lines.append(f"note: the online knockoff stayed near chance (held-out agreement "
                     f"{result['online_heldout_agreement']:.2f}, chance {result['heldout_chance']:.2f}), so its "
                     "loss reward carried little signal; a larger knockoff_lr may help an adaptive agent")
    return "\n".join(lines)


def format_ledger(ledger: dict) -> str:
    """A remote victim's ledger as summary lines."""
    cost = "" if ledger.get("cost") is None else f"; cost {ledger['cost']:.4g} (+{ledger['eval_cost']:.4g} evaluation)"
    return (f"paid              {ledger['queries']} queries in {ledger['requests']} requests ({ledger['retries']} "
            f"retries, {ledger['repeats']} answered again for free), {ledger['seconds_waiting']:.1f} s waiting{cost}\n"
            f"evaluation        {ledger['eval_queries']} queries through the endpoint")
