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
from .batching import batch_images, choose_online, play_batch
from .durable import DurableRun, follow_saved_pools
from .estimates import ESTIMATE_WINDOW, online_agreement, online_judgement
from .interrupt import StepBoundaryInterrupt

POLICY_POINTS = 200  # policy snapshots logged per episode
REWARD_POINTS = 1000  # reward points logged per episode (each the mean of its block of steps)


def run_attack(env, agent, *, seed: int = 0, logdir: str | Path | None = None, eval_every: int | None = None,
               retrain_epochs: int | None = 0, progress: bool = True, retrain_kwargs: dict | None = None,
               checkpoint_every: int | None = None, resume: bool = False, train_online: bool | None = None,
               batch: bool | int | None = None) -> dict:
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
        retrain_epochs: > 0 retrains a fresh knockoff on the transfer set for that many epochs
            (phase b, the env's recipe; ``retrain_kwargs`` override any recipe field or
            ``holdout``), None for the recipe's own epochs (the paper's whole attack; what
            ``knockoff attack`` does by default), 0 not at all. The retrained knockoff's accuracy
            is reported as ``knockoff_accuracy`` and its held-out agreement as ``heldout_agreement``.
        checkpoint_every: journal every step into ``logdir`` and checkpoint every this many
            steps, so that an interrupted attack can be resumed (see :mod:`agents.durable`).
        resume: continue the interrupted attack journaled in ``logdir`` (same env, agent, seed).
        train_online: train the online knockoff (True) or not (False); None: as the agent needs
            (the random strategy does not) unless ``eval_every`` asks for its curve, or as the env
            was told (``train_online=`` there wins). See :mod:`agents.batching`.
        batch: a strategy whose actions do not depend on the answers (random) is queried in
            batches of whole steps, one victim call each: None/True for batches of up to the
            victim's ``batch_size`` (a served victim's ``max_batch``), a number for at most that
            many images, False for one call per step.
    Ctrl-C (SIGINT, main thread) stops the attack at the next step boundary and wraps it up as
    a finished one (evaluation, figures, saved files; no retraining) with ``interrupted: True``
    in the result; a second Ctrl-C raises ``KeyboardInterrupt`` at once (see :mod:`agents.interrupt`).

    Returns:
        ``victim_accuracy``, ``knockoff_accuracy`` (retrained if asked, else online),
        ``knockoff_accuracy_online`` (None when no online knockoff was trained and a retrained one
        is reported), ``times_victim``, ``agreement``, ``queries``, ``victim_calls`` (one per step,
        or per batch of steps), ``seconds``,
        ``accuracy_curve`` ([(queries, online accuracy)] at each evaluation and the end),
        ``agreement_curve`` ([(queries, online held-out agreement, images it was measured on)]),
        ``near_chance`` (the final knockoff's held-out agreement is near a constant guess's;
        ``advice`` says what to try), ``heldout_agreement`` and ``best_epoch`` after retraining…
        Without an eval set the accuracy fields are None and only the attacker's estimates remain.
        A remote victim that may not be asked about the eval set (no ``eval_via_endpoint``, no
        local copy) leaves ``victim_accuracy``, ``times_victim`` and ``agreement`` None, named with
        the reason in ``not_measured``; the knockoff's accuracy needs only the eval set's labels.
    """
    start = time.perf_counter()
    _check_options(seed, eval_every, checkpoint_every, resume, logdir, retrain_epochs)
    core = env.unwrapped
    choose_online(core, agent, train_online, eval_every, logdir if resume else None)
    if resume:
        follow_saved_pools(core, logdir)
    durable = DurableRun(logdir, env, agent, seed, checkpoint_every) if checkpoint_every or resume else None
    episode = Episode(env, agent, seed, logdir, eval_every, durable, resume, batch_images(core, agent, batch))
    episode.play(progress)
    if durable:
        durable.close()
    retraining = retrain_epochs != 0 and not episode.interrupted  # an interrupted run trains nothing new
    result, online = episode.online_result(retraining=retraining)
    result["attack_seconds"] = time.perf_counter() - start
    final, model = online, core.knockoff.model
    if retraining:
        model, final = _retrain(core, episode.log, seed, retrain_epochs, progress, retrain_kwargs or {}, result)
    result.update({k: final.get(k) for k in FINAL})
    result.update({k: final.get(k) for k in VICTIM if result[k] is None})  # no online knockoff was evaluated
    result.update(retrained=retraining, seconds=time.perf_counter() - start)
    if hasattr(core.victim, "ledger"):  # a remote victim: what the attack paid the server
        result["ledger"] = core.victim.ledger()
    if episode.log:
        if online["knockoff_accuracy"] is not None:
            episode.log.accuracy(result["queries"], online["knockoff_accuracy"])
        result["figures"] = {k: str(v) for k, v in episode.log.close(result["victim_accuracy"]).items()}
        save_run(logdir, env, model, result)
    return result


FINAL = ("knockoff_accuracy", "times_victim", "agreement", "seen_classes", "unseen_classes", "seen_class_accuracy",
         "unseen_class_accuracy", "not_measured")  # of the reported knockoff: retrained if asked, else the online one
VICTIM = ("victim_accuracy", "victim_accuracy_defended", "defence_l1")  # from the final evaluation, if no online one
NO_EVAL = {"knockoff_accuracy": None, "victim_accuracy": None, "times_victim": None, "agreement": None,
           "not_measured": {}}
UNTRAINED = ("no knockoff was trained: this agent trains none online and no offline phase ran "
             "(retrain_epochs=None trains the recipe's; on the command line, leave out --retrain-epochs 0)")


def untrained(report: dict) -> dict:
    """An evaluation of a knockoff that never learned: its figures would be an untrained network's,
    numbers that look like results, so they are not measured (the victim's figures stay)."""
    figures = ("knockoff_accuracy", "times_victim", "agreement", "seen_class_accuracy", "unseen_class_accuracy")
    return {**report, **dict.fromkeys(figures), "per_class_accuracy": None,
            "not_measured": {**report["not_measured"], **dict.fromkeys(figures[:3], UNTRAINED)}}


def _check_options(seed, eval_every, checkpoint_every, resume, logdir, retrain_epochs) -> None:
    if retrain_epochs is not None and (not is_integer(retrain_epochs) or retrain_epochs < 0):
        raise ConfigError(f"retrain_epochs={retrain_epochs!r} is not a number of epochs",
                          "give a positive number, None for the recipe's epochs, or 0 to skip the offline phase")
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative integer")
    if eval_every is not None and (not is_integer(eval_every) or eval_every < 0):
        raise ConfigError(f"eval_every={eval_every!r} is not a number of queries",
                          "give a positive number, or 0 / None to evaluate only at the end")
    if (checkpoint_every or resume) and not logdir:
        raise ValueError("checkpoint_every/resume need logdir, the run directory for the journal and checkpoints")


def _retrain(core, log, seed: int, epochs: int | None, progress: bool, kwargs: dict, result: dict) -> tuple:
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
                 resume: bool, batch: int | None = None):
        self.env, self.agent, self.core, self.seed = env, agent, env.unwrapped, seed
        self.eval_every, self.durable, self.batch = eval_every, durable, batch
        core = self.core
        self.obs, self.info = env.reset(seed=seed)
        agent.reset(seed)
        self.step, self.done, self.victim_calls = 0, False, 0  # calls: one per step, or per batch of steps
        if durable:
            self.obs, self.info, self.step, self.done = durable.start(self.obs, self.info, resume)
        total_steps = -(-core.budget // core.queries_per_step)
        self.log = AttackLog(logdir, core.query_set.coarse_names, title=type(agent).__name__,
                             reward_every=max(1, total_steps // REWARD_POINTS)) if logdir else None
        self.policy_every = max(1, total_steps // POLICY_POINTS)
        self.next_policy = 0  # the step of the next policy snapshot of a batch drawn ahead
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
                if self.batch:
                    play_batch(self, interrupt, bar)
                else:
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
        self.victim_calls += 1
        info = self.info
        agent.update(action, reward, info)
        self.step += 1
        if self.durable:
            self.durable.checkpoint(self.step)
        bar.update(info["queries_this_step"])
        if self.log:
            self.log.rewards(info["queries"], reward, info["rewards"])
        self.after(terminated or truncated, bar)

    def after(self, done: bool, bar) -> None:
        """After a step (or a batch of steps): the estimate's window, a due evaluation, the end."""
        queries = self.info["queries"]
        if self.window_start is not None and queries >= self.window_start and not done:
            self.core.knockoff.heldout_agreement()  # restart the count: the estimate covers what follows
            self.window_start = None
        if self.eval_every and queries >= self.next_eval and not done:
            self.next_eval += self.eval_every
            self._evaluate(bar)
        self.done = done

    def stop_at(self) -> int | None:
        """The query count at which the loop must look between steps (an evaluation, the window)."""
        stops = [self.next_eval] if self.eval_every else []
        if self.window_start is not None and self.core.train_online:
            stops.append(self.window_start)
        return min(stops) if stops else None

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
        # an online knockoff that never learned is not evaluated when a retrained one will be
        evaluated = self.has_eval and (core.train_online or not retraining)
        online = core.evaluate() if evaluated else NO_EVAL
        if evaluated and not core.train_online:  # nothing trained a knockoff: keep the victim's figures only
            online = untrained(online)
        result = {"agent": type(self.agent).__name__, "seed": self.seed, "queries": queries, "steps": self.step,
                  "victim_calls": self.victim_calls,
                  "victim_queries": core.victim.queries, "interrupted": self.interrupted,
                  "victim_accuracy": online["victim_accuracy"],
                  "knockoff_accuracy_online": online["knockoff_accuracy"],
                  "defence": core.victim.defence.spec() or None,
                  "victim_accuracy_defended": online.get("victim_accuracy_defended"),
                  "defence_l1": online.get("defence_l1"),
                  "detector": core.detector.spec() if core.detector is not None else None,
                  "detected_at": core.detected_at,
                  "accuracy_curve": self.curve + ([(queries, online["knockoff_accuracy"])]
                                                  if online["knockoff_accuracy"] is not None else []),
                  "agreement_curve": self.agreement_curve, "recipe": core.recipe.name}
        result.update(online_judgement(core, self.agreement_curve, retraining))
        return result, online
