"""One loop that plays any agent against the env to the budget: progress bar, logs, summary."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from knockoff_env.checks import is_integer
from knockoff_env.data.lookahead import hint_from
from knockoff_env.durability.run_dir import save_run
from knockoff_env.errors import ConfigError

from .attack_log import AttackLog
from .durable import DurableRun
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
    start = time.perf_counter()
    _check_options(seed, eval_every, checkpoint_every, resume, logdir)
    core = env.unwrapped
    durable = DurableRun(logdir, env, agent, seed, checkpoint_every) if checkpoint_every or resume else None
    if core.eval_set is not None:  # a remote victim that cannot be evaluated says so before any query
        core.victim.evaluation_model()
    episode = Episode(env, agent, seed, logdir, eval_every, durable, resume)
    episode.play(progress)
    if durable:
        durable.close()
    if episode.interrupted:
        retrain_epochs = 0  # the user asked to stop: wrap up what was paid for, train nothing new
    result, online = episode.online_result(retraining=bool(retrain_epochs))
    result["attack_seconds"] = time.perf_counter() - start
    final, model = online, core.knockoff.model
    if retrain_epochs:
        model, final = _retrain(core, episode.log, seed, retrain_epochs, progress, retrain_kwargs or {}, result)
    result.update({k: final.get(k) for k in FINAL})
    result.update(retrained=bool(retrain_epochs), seconds=time.perf_counter() - start)
    if hasattr(core.victim, "ledger"):  # a remote victim: what the attack paid the server
        result["ledger"] = core.victim.ledger()
    if episode.log:
        if core.eval_set is not None:
            episode.log.accuracy(result["queries"], online["knockoff_accuracy"])
        result["figures"] = {k: str(v) for k, v in episode.log.close(online["victim_accuracy"]).items()}
        save_run(logdir, env, model, result)
    return result


FINAL = ("knockoff_accuracy", "times_victim", "agreement", "seen_classes", "unseen_classes", "seen_class_accuracy",
         "unseen_class_accuracy")  # of the reported knockoff: retrained if asked, else the online one
NO_EVAL = {"knockoff_accuracy": None, "victim_accuracy": None, "times_victim": None, "agreement": None}


def _check_options(seed, eval_every, checkpoint_every, resume, logdir) -> None:
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if eval_every is not None and (not is_integer(eval_every) or eval_every < 0):
        raise ConfigError(f"eval_every={eval_every!r} is not a number of queries",
                          "give a positive number, or 0 / None to evaluate only at the end")
    if (checkpoint_every or resume) and not logdir:
        raise ValueError("checkpoint_every/resume need logdir, the run directory for the journal and checkpoints")


def _retrain(core, log, seed: int, epochs: int, progress: bool, kwargs: dict, result: dict) -> tuple:
    """Phase (b): a fresh knockoff trained on the transfer set; (model, its evaluation)."""
    on_epoch = (lambda record: log.retrain_epoch(record)) if log else None
    fit = core.fit(epochs=epochs, seed=seed, progress=progress, on_epoch=on_epoch, **kwargs)
    result.update(heldout_agreement=fit.heldout_agreement, heldout_chance=fit.chance,
                  heldout_size=fit.heldout_size, best_epoch=fit.best_epoch, retrain_epochs=fit.epochs,
                  recipe=fit.recipe.name, retrain_seconds_per_epoch=fit.seconds_per_epoch,
                  near_chance=fit.near_chance, advice=fit.advice)
    return fit.model, core.evaluate(fit.model) if core.eval_set is not None else NO_EVAL


class Episode:
    """The online phase: the agent plays the env to the budget (or Ctrl-C), with the progress bar,
    logs, periodic evaluations and the durable run's journal and checkpoints."""

    def __init__(self, env, agent, seed: int, logdir, eval_every: int | None, durable: DurableRun | None,
                 resume: bool):
        self.env, self.agent, self.core, self.seed = env, agent, env.unwrapped, seed
        self.eval_every, self.durable = eval_every, durable
        core = self.core
        self.obs, self.info = env.reset(seed=seed)
        agent.reset(seed)
        self.step, self.done = 0, False
        if durable:
            self.obs, self.info, self.step, self.done = durable.start(self.obs, self.info, resume)
        total_steps = -(-core.budget // core.queries_per_step)
        self.log = AttackLog(logdir, core.query_set.coarse_names, title=type(agent).__name__,
                             reward_every=max(1, total_steps // REWARD_POINTS)) if logdir else None
        self.policy_every = max(1, total_steps // POLICY_POINTS)
        self.curve = durable.past_curve(self.info["queries"]) if durable else []
        self.agreement_curve: list = []
        self.has_eval = core.eval_set is not None
        self.next_eval = ((self.curve[-1][0] if self.curve else 0) // eval_every + 1) * eval_every if eval_every \
            else 0
        if eval_every and not self.done and self.info["queries"] >= self.next_eval:  # resumed past a due one
            if self.has_eval:
                self.curve.append((self.info["queries"], core.evaluate()["knockoff_accuracy"]))
                durable.curve_point(*self.curve[-1])
            self.next_eval = (self.info["queries"] // eval_every + 1) * eval_every
        # without eval_every, the final online estimate covers the last queries only
        self.window_start = None if eval_every else int(core.budget * (1 - ESTIMATE_WINDOW))
        self.interrupted = False

    def play(self, progress: bool) -> None:
        core, info = self.core, self.info
        with tqdm(total=core.budget, initial=info["queries"], unit="query", disable=not progress,
                  desc="attack") as bar, StepBoundaryInterrupt() as interrupt:
            while not self.done and not interrupt.requested:
                self._step(interrupt, bar)
        self.interrupted = interrupt.requested and not self.done

    def _step(self, interrupt: StepBoundaryInterrupt, bar) -> None:
        agent, core = self.agent, self.core
        hint_from(core, agent, self.step)
        action = agent.act(self.obs, self.info)
        if self.log and self.step % self.policy_every == 0 and hasattr(agent, "coarse_probabilities"):
            self.log.policy(self.info["queries"],
                            agent.coarse_probabilities(np.asarray(self.info["action_mask"], bool)))
        with interrupt.step():
            self.obs, reward, terminated, truncated, self.info = self.env.step(action)  # a durable run journals
        info = self.info
        agent.update(action, reward, info)
        self.step += 1
        if self.durable:
            self.durable.checkpoint(self.step)
        bar.update(info["queries_this_step"])
        if self.log:
            self.log.rewards(info["queries"], reward, info["rewards"])
        if self.window_start is not None and info["queries"] >= self.window_start and not terminated:
            core.knockoff.heldout_agreement()  # restart the count: the estimate covers what follows
            self.window_start = None
        if self.eval_every and info["queries"] >= self.next_eval and not terminated:
            self.next_eval += self.eval_every
            self._evaluate(bar)
        self.done = terminated or truncated

    def _evaluate(self, bar) -> None:
        """The online knockoff's held-out agreement and, with an eval set, its accuracy."""
        queries = self.info["queries"]
        online_agreement(self.core, queries, self.agreement_curve, self.log, bar)
        if not self.has_eval:
            return
        accuracy = self.core.evaluate()["knockoff_accuracy"]
        self.curve.append((queries, accuracy))
        if self.durable:
            self.durable.curve_point(queries, accuracy)
        bar.set_postfix(knockoff=f"{accuracy:.3f}", agreement=f"{self.agreement_curve[-1][1]:.3f}")
        if self.log:
            self.log.accuracy(queries, accuracy)

    def online_result(self, retraining: bool) -> tuple[dict, dict]:
        """The result of the online phase, and the online knockoff's evaluation (``retraining``: an
        offline knockoff will be reported, so a near-chance online one is a note, not a warning)."""
        core, queries = self.core, self.info["queries"]
        if core.train_online:
            online_agreement(core, queries, self.agreement_curve, self.log, None)
        online = core.evaluate() if self.has_eval else NO_EVAL
        result = {"agent": type(self.agent).__name__, "seed": self.seed, "queries": queries, "steps": self.step,
                  "victim_queries": core.victim.queries, "interrupted": self.interrupted,
                  "victim_accuracy": online["victim_accuracy"],
                  "knockoff_accuracy_online": online["knockoff_accuracy"],
                  "defence": core.victim.defence.spec() or None,
                  "victim_accuracy_defended": online.get("victim_accuracy_defended"),
                  "defence_l1": online.get("defence_l1"),
                  "detector": core.detector.spec() if core.detector is not None else None,
                  "detected_at": core.detected_at,
                  "accuracy_curve": self.curve + ([(queries, online["knockoff_accuracy"])] if self.has_eval else []),
                  "agreement_curve": self.agreement_curve, "recipe": core.recipe.name}
        result.update(online_judgement(core, self.agreement_curve, retraining))
        return result, online


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
