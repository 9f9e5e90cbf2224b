"""DuelEnv: the Knockoff attack as a two-agent game, the attacker against a defender that learns too."""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from ..checks import is_finite_number, is_integer
from ..core.env import KnockoffEnv
from .clients import FEATURES, BenignTraffic, ClientStats
from .menu import MENU, Menu, benign_cost

try:
    from pettingzoo import ParallelEnv
except ImportError as err:  # an extra: say which
    raise ImportError("the duel needs PettingZoo: pip install 'knockoff-env[duel]'") from err

ATTACKER, DEFENDER = "attacker", "defender"
GLOBAL_FEATURES = ("time", "benign_accuracy_lost", "benign_l1", "defended_share")


class DuelEnv(ParallelEnv):
    """One episode of the Knockoff attack played by two agents: the attacker, and the model's owner.

    ## Description
    A PettingZoo ``ParallelEnv`` around a :class:`~knockoff_env.KnockoffEnv` (``knockoff``, used
    as it is, through its ``prepare``/``learn`` halves of a step). The victim has clients: the
    attacker and ``benign_clients`` benign ones, each in a slot drawn at reset (the defender is
    not told which slot is the attacker's). Each step the attacker picks a label of its query
    set as in KnockoffEnv; the benign clients send images of the victim's own distribution
    (``benign_set``), together ``benign_rate`` benign queries per attack query; the defender
    chooses, for every client, how that client's queries of this step are answered. The victim
    answers every query truly, the owner's statistics of each client (:mod:`.clients`) take the
    true answers, and the chosen entry of the menu turns them into what the client receives.
    The attacker's knockoff, rewards and transfer set see only what it received.

    A refused batch (menu entry ``"refuse"``) is spent: its queries count against the attack's
    budget (and the victim's query count), its images are used up (each image is queried at most
    once), and nothing comes back: no knockoff step, no transfer-set entry, attacker reward 0,
    ``infos["attacker"]["refused"]`` True. A refused benign query loses its answer (see Rewards).

    ## Action Space
    attacker: the KnockoffEnv's (``MultiDiscrete([coarse, labels])`` by default; its action mask
    is ``infos["attacker"]["action_mask"]``). defender: ``MultiDiscrete([len(menu)] *
    num_clients)``, one menu entry per client slot (a slot that sends nothing this step ignores
    its entry). The menu (:data:`~knockoff_env.duel.menu.MENU` by default) is ``none``,
    ``mad_argmax:eps=1.0``, ``reverse_sigmoid:beta=0.7,gamma=0.2``, ``noise:sigma=0.5``,
    ``top_k:k=1`` (top-1 only), ``refuse``; any list of ``"none"``, ``"refuse"`` and defence
    specs can replace it.

    ## Observation Space
    attacker: the KnockoffEnv's observation of what it received. defender: ``Box`` of
    ``num_clients × 8 + 4`` values: per client slot, in slot order, the 8 statistics of
    :data:`~knockoff_env.duel.clients.FEATURES` (volume, the client's PRADA statistic W, whether
    it is ready, its alarm, mean top-1 confidence of the true answers recently and overall, class
    entropy recently and overall); then the episode's time t / ⌈B / q⌉, and the defender's own
    cost so far: mean accuracy lost and mean L1 / 2 over the benign queries answered, and the
    share of all queries answered with an entry other than ``none``. Never the attacker's
    knockoff, rewards or transfer set. :meth:`client_features` reshapes the per-client part.

    ## Rewards
    attacker: the KnockoffEnv's reward (0 for a refused step). defender, at step t:
    ``−(A_t − A_s) − λ · c_t / N``. A is the online knockoff's top-1 agreement with the victim
    on the eval set, measured at reset and every ``eval_every`` steps and at the last step (s:
    the previous measurement; between measurements the first term is 0). With ``final_epochs``
    > 0 the last measurement is of a knockoff retrained from scratch on the transfer set for
    that many epochs (the paper's offline phase, what the attack finally yields; one retraining
    per episode), so that answers the online knockoff learns little from, such as hard labels,
    are charged at what the offline phase makes of them. c_t sums, over the
    benign queries answered at step t, the accuracy lost (1 when the true answer's top-1 is the
    label and the given one's is not, −1 the other way, 1 for a refused query the victim got
    right) plus the perturbation ‖ỹ − y‖₁ (2 for a refused query). N is the number of benign
    queries in an episode of ⌈B / q⌉ steps. Over an episode the defender's return is
    therefore −(gain in agreement) − λ·(mean accuracy lost + mean L1) on benign traffic.
    λ (``lam``) = 1 by default: one point of agreement gained by the attacker weighs as much
    as one point of benign accuracy, or an L1 change of 1 on every benign answer.
    ``infos["defender"]`` holds the measured agreement and the step's benign cost parts.

    ## Termination
    Both agents terminate together when the KnockoffEnv does (the attack's budget spent, a
    refused batch included, or every pool empty); there is no truncation.

    ## Arguments
    knockoff: a KnockoffEnv with an ``eval_set``, no ``defence`` and no ``detector`` of its own
    (the defender and the duel's detectors take their place). benign_set: ``(images, labels)`` or
    a Dataset of the victim's own distribution. menu: see Action Space. benign_clients: how many
    benign clients (default 1). benign_rate: benign queries per attack query, all benign clients
    together (default 1.0: one benign client as busy as the attacker; 0: none). lam: λ.
    eval_every: steps between agreement measurements (default 25, 100 queries at q = 4).
    final_epochs: retrain for the last measurement (default 0: the online knockoff's).
    detector: each client's detector spec (default ``"prada"``; None for none). window: the
    queries the "recent" statistics cover (default 25, the diversity window Δ).
    """

    metadata = {"name": "knockoff_duel_v0", "render_modes": [], "is_parallelizable": True}

    def __init__(self, knockoff: KnockoffEnv, benign_set: Any, *, menu=MENU, benign_clients: int = 1,
                 benign_rate: float = 1.0, lam: float = 1.0, eval_every: int = 25, final_epochs: int = 0,
                 detector: Any = "prada", window: int = 25, render_mode: str | None = None):
        _check_arguments(knockoff, benign_clients, benign_rate, lam, eval_every, window, render_mode)
        if not is_integer(final_epochs) or final_epochs < 0:
            raise ValueError(f"final_epochs={final_epochs!r} must be a whole number of epochs ≥ 0 (0: the online "
                             "knockoff is measured at the last step too)")
        self.knockoff, self.render_mode = knockoff, None
        self.lam, self.eval_every, self.final_epochs = float(lam), int(eval_every), int(final_epochs)
        self.menu = Menu(menu, knockoff.victim.victim, knockoff.device)
        q, budget = knockoff.queries_per_step, knockoff.budget
        self.steps = math.ceil(budget / q)  # the episode's length when no draw falls short
        self.benign = BenignTraffic(benign_set, int(benign_clients), benign_rate * q / benign_clients) \
            if benign_clients and benign_rate > 0 else None
        self._check_benign_set()
        self.num_clients = 1 + (self.benign.clients if self.benign else 0)
        self.benign_total = self.benign.total(self.steps) if self.benign else 0
        self.clients = [ClientStats(knockoff.num_classes, int(window), budget, detector, knockoff.device)
                        for _ in range(self.num_clients)]
        low = np.zeros(self.num_clients * len(FEATURES) + len(GLOBAL_FEATURES), np.float32)
        low[-3] = -1.0  # benign accuracy lost can be negative (a perturbation that fixes a wrong answer)
        self.observation_spaces = {ATTACKER: knockoff.observation_space,
                                   DEFENDER: spaces.Box(low, np.ones_like(low), dtype=np.float32)}
        self.action_spaces = {ATTACKER: knockoff.action_space,
                              DEFENDER: spaces.MultiDiscrete([len(self.menu)] * self.num_clients)}
        self.possible_agents = [ATTACKER, DEFENDER]
        self.agents: list[str] = []
        self._rng = np.random.default_rng()
        self.attacker_slot = 0
        self._clear()

    def _clear(self) -> None:
        """The episode's counters, at zero."""
        self.t = 0
        self.benign_queries, self.benign_accuracy_lost, self.benign_l1 = 0, 0.0, 0.0
        self.answered = {"attacker": np.zeros(len(self.menu), np.int64), "benign": np.zeros(len(self.menu), np.int64)}
        self.initial_agreement = self.agreement = float("nan")  # measured at reset

    def _check_benign_set(self) -> None:
        """One probe answer: benign images the victim cannot take are refused now, not mid-episode."""
        if self.benign is None:
            return
        images = self.benign._fetch(np.arange(min(2, len(self.benign.labels))))
        try:
            true, _ = self.knockoff.victim.true_and_defended(images.to(self.knockoff.device))
        except (RuntimeError, ValueError) as err:
            raise ValueError(f"the victim cannot answer benign_set's images of shape {tuple(images.shape[1:])} "
                             f"({type(err).__name__}: {err}); give images of the victim's own distribution") from err
        if int(self.benign.labels.max()) >= true.shape[1] or int(self.benign.labels.min()) < 0:
            raise ValueError(f"benign_set's labels run from {int(self.benign.labels.min())} to "
                             f"{int(self.benign.labels.max())}; the victim has {true.shape[1]} classes")

    # --- PettingZoo API ------------------------------------------------------------------
    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[self._agent(agent)]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[self._agent(agent)]

    def _agent(self, agent: str) -> str:
        if agent not in self.possible_agents:
            raise ValueError(f"unknown agent {agent!r}; the duel's agents are {self.possible_agents}")
        return agent

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        attacker_obs, attacker_info = self.knockoff.reset(seed=seed)
        self.attacker_slot = int(self._rng.integers(self.num_clients))
        self._benign_slots = [s for s in range(self.num_clients) if s != self.attacker_slot]
        for client in self.clients:
            client.reset()
        if self.benign:
            self.benign.reset(self._rng)
        self._clear()
        self.initial_agreement = self.agreement = self._agreement()
        self.agents = self.possible_agents[:]
        return ({ATTACKER: attacker_obs, DEFENDER: self._defender_observation()},
                {ATTACKER: attacker_info, DEFENDER: {"agreement": self.agreement}})

    def step(self, actions: dict):
        if not self.agents:
            raise RuntimeError("the duel is over (or never started); call reset() before step()")
        if not isinstance(actions, dict) or any(a not in actions for a in self.agents):
            raise ValueError(f"step() takes {{agent: action}} for every agent in play, {self.agents}; got "
                             f"{actions if not isinstance(actions, dict) else sorted(actions)}")
        choice = self._check_defence(actions[DEFENDER])
        attacker_obs, attacker_reward, terminated, attacker_info = self._attack(actions[ATTACKER],
                                                                                int(choice[self.attacker_slot]))
        lost, l1, sent = self._answer_benign(choice)
        self.t += 1
        measured = terminated or self.t % self.eval_every == 0
        gain = 0.0
        if measured:
            agreement = self._agreement(final=terminated)
            gain, self.agreement = agreement - self.agreement, agreement
        cost = (lost + l1) / self.benign_total if self.benign_total else 0.0
        playing, self.agents = self.agents, [] if terminated else self.agents
        observations = {ATTACKER: attacker_obs, DEFENDER: self._defender_observation()}
        rewards = {ATTACKER: float(attacker_reward), DEFENDER: float(-gain - self.lam * cost)}
        infos = {ATTACKER: attacker_info,
                 DEFENDER: {"agreement": self.agreement, "measured": measured, "agreement_gain": gain,
                            "retrained": bool(terminated and self.final_epochs and len(self.knockoff.transfer_set)),
                            "benign_queries": sent, "benign_accuracy_lost": lost, "benign_l1": l1}}
        return (observations, rewards, {a: terminated for a in playing}, {a: False for a in playing}, infos)

    def close(self) -> None:
        self.knockoff.close()

    # --- the step's parts ----------------------------------------------------------------
    def _check_defence(self, action) -> np.ndarray:
        choice = np.asarray(action)
        if choice.dtype.kind not in "iu" or choice.shape != (self.num_clients,) \
                or choice.min() < 0 or choice.max() >= len(self.menu):
            raise ValueError(f"defender action {action!r} must be {self.num_clients} integer menu entries in "
                             f"[0, {len(self.menu)}), one per client slot; the menu is {list(self.menu.names)}")
        return choice

    def _attack(self, action, entry: int):
        """The attacker's batch: drawn, answered truly, seen by the owner, answered as ``entry`` says."""
        core = self.knockoff
        query = core.prepare(action)
        try:
            true = core.victim(query.images)
        except BaseException:
            core.cancel(query)
            raise
        self.clients[self.attacker_slot].observe(query.images, true)
        answers = self.menu.answer(entry, true, query.images)
        self.answered["attacker"][entry] += len(true)
        if answers is None:  # refused: spent and used up, nothing returned
            core.spent += len(query.index)
            obs, info = core.observe()
            terminated = core.spent >= core.budget or not core.query_set.remaining().any()
            info.update(refused=True, queries_this_step=len(query.index), resolved=query.resolved,
                        label=int(core.query_set.label_ids[query.position]))
            return obs, 0.0, terminated, info
        if core.on_answers is not None:  # a journal keeps what the attacker received
            core.on_answers(query, answers)
        obs, reward, terminated, _, info = core.learn(query, answers)
        info["refused"] = False
        return obs, reward, terminated, info

    def _answer_benign(self, choice: np.ndarray) -> tuple[float, float, int]:
        """The benign clients' batches of this step: (accuracy lost, L1, queries), summed."""
        if self.benign is None:
            return 0.0, 0.0, 0
        lost = l1 = 0.0
        sent = 0
        device = self.knockoff.device
        for k, images, labels in self.benign.draw(self.t):
            slot = self._benign_slots[k]
            images = images.to(device)
            true, _ = self.knockoff.victim.true_and_defended(images)  # benign queries are not the attack's
            self.clients[slot].observe(images, true)
            entry = int(choice[slot])
            batch_lost, batch_l1 = benign_cost(true, self.menu.answer(entry, true, images), labels)
            self.answered["benign"][entry] += len(true)
            lost, l1, sent = lost + batch_lost, l1 + batch_l1, sent + len(true)
        self.benign_queries += sent
        self.benign_accuracy_lost += lost
        self.benign_l1 += l1
        return lost, l1, sent

    def _agreement(self, final: bool = False) -> float:
        """The online knockoff's agreement; at the last step with ``final_epochs``, that of a knockoff
        retrained from scratch on the transfer set (the env's recipe; torch seed and fit seed 0, so the
        same transfer set gives the same measurement)."""
        core = self.knockoff
        if not (final and self.final_epochs and len(core.transfer_set)):  # nothing answered: nothing to retrain
            return float(core.evaluate()["agreement"])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = core.fit(epochs=self.final_epochs, seed=0, warn=False).model
        return float(core.evaluate(model)["agreement"])

    # --- the defender's observation ----------------------------------------------------------
    def _defender_observation(self) -> np.ndarray:
        n = max(self.benign_queries, 1)
        answered = self.answered["attacker"] + self.answered["benign"]
        defended = 1.0 - answered[self.menu.index("none")] / answered.sum() \
            if "none" in self.menu.names and answered.sum() else float(answered.sum() > 0)
        own = [min(1.0, self.t / self.steps), max(-1.0, min(1.0, self.benign_accuracy_lost / n)),
               min(1.0, self.benign_l1 / n / 2), defended]
        return np.concatenate([*(c.features() for c in self.clients), np.asarray(own, np.float32)])

    def client_features(self, observation: np.ndarray) -> np.ndarray:
        """The per-client part of a defender observation: (num_clients, len(FEATURES)), slot order."""
        return np.asarray(observation[:self.num_clients * len(FEATURES)]).reshape(self.num_clients, len(FEATURES))

    @property
    def benign_cost(self) -> dict[str, float]:
        """The episode's benign cost so far: mean accuracy lost, mean L1, and their sum."""
        n = max(self.benign_queries, 1)
        lost, l1 = self.benign_accuracy_lost / n, self.benign_l1 / n
        return {"accuracy_lost": lost, "l1": l1, "cost": lost + l1, "queries": self.benign_queries}


def _check_arguments(knockoff, benign_clients, benign_rate, lam, eval_every, window, render_mode) -> None:
    if not isinstance(knockoff, KnockoffEnv):
        raise TypeError(f"knockoff must be a KnockoffEnv (e.g. knockoff_env.worlds.digits.make_digits_env()), "
                        f"got {type(knockoff).__name__}")
    if knockoff.eval_set is None:
        raise ValueError("the duel measures the attacker's agreement with the victim on the eval set; build the "
                         "KnockoffEnv with eval_set=(images, labels)")
    if knockoff.victim.defence:
        raise ValueError(f"the KnockoffEnv's victim already has a defence ({knockoff.victim.defence.spec()}); in "
                         "the duel the defender answers: put defences in the menu and build the KnockoffEnv "
                         "without defence= or an output mode")
    if knockoff.detector is not None:
        raise ValueError("the KnockoffEnv has a detector of its own; the duel runs one per client (detector=) and "
                         "leaves the response to the defender: build the KnockoffEnv without detector=")
    if not is_integer(benign_clients) or benign_clients < 0:
        raise ValueError(f"benign_clients={benign_clients!r} must be a whole number of clients ≥ 0")
    if not is_finite_number(benign_rate) or benign_rate < 0:
        raise ValueError(f"benign_rate={benign_rate!r} must be a number ≥ 0 of benign queries per attack query")
    if benign_rate > 0 and benign_clients == 0:
        raise ValueError(f"benign_rate={benign_rate} needs benign clients to send it; give benign_clients ≥ 1 "
                         "(or benign_rate=0 for none)")
    if not is_finite_number(lam) or lam < 0:
        raise ValueError(f"lam={lam!r} must be a number ≥ 0 (λ, the weight of the benign cost)")
    for name, value in (("eval_every", eval_every), ("window", window)):
        if not is_integer(value) or value < 1:
            raise ValueError(f"{name}={value!r} must be a positive whole number of steps / queries")
    if render_mode is not None:
        raise ValueError(f"render_mode={render_mode!r}: the duel has no rendering")
