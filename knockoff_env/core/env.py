"""KnockoffEnv: the Knockoff Nets attack as a Gymnasium environment."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from ..checks import is_integer
from ..data.lookahead import build_lookahead
from ..data.query_set import QuerySet, as_images_and_labels
from ..devices import resolve_device, seed_torch
from ..models.compile import compile_model, compile_option
from ..training.evaluation import Evaluation
from ..training.online import OnlineKnockoff, build_model
from ..training.recipes import Recipe, resolve_recipe
from ..victim.blackbox import BlackBox, raise_not_finite
from ..victim.detectors import parse_detector
from ..victim.endpoints import open_victim
from .actions import ACTION_MODES, ImageChoice, Query, action_masks, action_space, choose, give_back, resolve_action
from .batched import BatchedSteps
from .fit import PROBE, check_eval_set, probe_knockoff, probe_victim
from .offline_phase import OfflinePhase
from .options import EnvOptions
from .rewards import COMPONENTS, RewardFunction, parse_reward
from .state import EpisodeState
from .transfer_set import TransferSet

ON_DETECTION = ("terminate", "flag")


class KnockoffEnv(EpisodeState, BatchedSteps, OfflinePhase, gym.Env):
    """Steal a black-box classifier by choosing which labels of a query set to query.

    ## Description
    Each step the agent picks a label of the adversary's query set P_A (through its coarse
    node). The env draws ``queries_per_step`` unqueried images of that label, queries the
    victim F_V once for the batch, scores the answers (certainty, diversity, and the
    knockoff's loss *before* it learns them), takes one online SGD step of the knockoff F_A
    on the victim's soft labels and appends the pairs to the transfer set. Images are drawn
    without replacement: no image is queried twice in an episode.

    ## Action Space
    ``action_mode="hierarchical"`` (default): ``MultiDiscrete([num_coarse, max_labels])``,
    an action ``(c, j)`` is label ``j`` of coarse node ``c``. ``action_mode="flat"``:
    ``Discrete(num_labels)`` over labels in the hierarchy's order. An action outside the
    space raises ``ValueError``. An action naming an exhausted label, or a slot ``j`` that
    coarse node ``c`` does not have, is resolved to a uniformly drawn label with images left
    in the same coarse node (else anywhere in P_A); ``info["resolved"]`` is then True and
    ``info["label"]`` names the label actually queried. Masks: ``info["action_mask"]``
    (int8, one entry per label in flat order, 0 = exhausted) and :meth:`action_masks` for
    sb3-contrib's MaskablePPO. Beside the space, ``ImageChoice(indices)`` names the step's
    images itself (ActiveThief, Jacobian augmentation; see :class:`~.actions.ImageChoice`).

    ## Observation Space
    ``Box(0, 1, (1 + num_coarse + num_labels + 3 + K,), float32)``: fraction of the budget
    spent; fraction of images left per coarse node; fraction left per label; the last
    step's normalised certainty, diversity and loss; the mean victim output ȳ over the
    diversity window.

    ## Rewards
    ``reward="all"`` (paper): the mean of the three components, each min-max normalised to
    [0, 1] over the episode so far. One component name gives that component raw; a list or
    ``{name: weight}`` gives the weighted mean of the normalised ones. ``info["rewards"]``
    holds every component raw and normalised.

    ## Termination
    When the budget is spent (the last step queries only what is left of it, so the budget
    is never exceeded) or every pool is empty; with a detector and
    ``on_detection="terminate"``, also at the query that raised its alarm (the step's later
    images are not answered, not charged, and go back to their pool). There is no truncation.

    ## Defences and detectors
    ``defence``: the owner's defence of the answers (a spec such as
    ``"reverse_sigmoid:beta=0.7,gamma=0.2"`` or ``"mad:eps=0.5+top_k:k=1"``, see
    :mod:`knockoff_env.victim.defences`); the agent, rewards, knockoff and transfer set only ever
    see the defended answers. ``detector``: the owner's monitor of this attack's query
    stream (``"prada"``, see :mod:`knockoff_env.victim.detectors`). ``info["detected"]`` says
    whether it has fired and ``detected_at`` (attribute) is the query count when it did;
    ``on_detection="flag"`` lets the episode go on; ``detection_penalty`` is subtracted from
    the reward of the step that raised the alarm. :meth:`evaluate` reports the defence's
    cost: the victim's accuracy under the defence and the mean L1 distance between
    defended and true answers on the eval set.

    ## Arguments
    - ``victim``: ``nn.Module`` returning logits, a callable returning probabilities, a :class:`BlackBox`,
      or a served victim's URL (``"http://host:port"``; ``remote``: its options, :mod:`~knockoff_env.victim.remote`).
    - ``query_set``: ``(images, labels)`` or a Dataset of (image, label). ``hierarchy``: ``{coarse name:
      [label ids]}`` (default: one node with every label). ``eval_set``: the victim's test set.
    - ``knockoff``: ``nn.Module`` or a zero-argument factory (rebuilt, under the reset seed, on each seeded
      reset when it trains online).
    - ``budget``: B, total queries (default: the whole query set). ``queries_per_step``: 4 (paper).
    - ``reward``: see Rewards. ``diversity_window``: Δ = 25 (paper). ``action_mode``: see Action Space.
    - ``output`` / ``top_k`` / ``decimals``: the victim's output mode (paper default: full probabilities).
      ``num_classes``, ``label_names``: K when it cannot be probed, and names. ``victim_domain``: the coarse
      nodes holding images of the victim's own problem domain (default none; the digits world's ``digits``),
      which attacks that steal from outside it (``copycat``) leave out.
    - The owner's side (``defence``, ``detector``, ``on_detection``, ``detection_penalty``): see above.
    - ``recipe`` (:mod:`~knockoff_env.training.recipes`), how the knockoff is trained: ``"auto"``
      (default) is ``"paper"`` when ``knockoff_pretrained`` is True (paper worlds set it from
      ``knockoff_init``), else ``"scratch"``; or a name, a :class:`Recipe`, ``{"base": name, field: value}``.
    - ``knockoff_lr`` / ``knockoff_momentum``: the online SGD step (default: the recipe's; paper 0.0005
      and 0.5). ``train_online``: False skips the online knockoff (as the paper's random strategy,
      which trains only offline): the loss component is then not measured (NaN in ``info``) nor rewarded.
      None (default) trains it unless a runner settles otherwise before the episode (:meth:`prefer_online`:
      ``run_attack`` skips it for the random strategy); True or False is the user's choice and is kept.
    - Batched steps: :meth:`step_batch` plays many steps of a strategy whose actions do not depend on the
      answers (random) with one victim call (see :mod:`.batched`).
    - Speed and runtime, none of which changes the attack: ``options``, an :class:`~knockoff_env.EnvOptions`
      (or dict) of device, bf16, channels_last, fetch_workers, pin_memory, lookahead and
      compile_models; each is also accepted as a keyword of its own (``device="cpu"``). Agents'
      hints reach the look-ahead through :meth:`hint`; ``info["lookahead"]`` reports its hit rate.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        victim: nn.Module | Callable | BlackBox | str,
        query_set: Any,
        knockoff: nn.Module | Callable[[], nn.Module],
        *,
        # the paper's env
        hierarchy: Mapping[str, list[int]] | None = None,
        eval_set: Any = None,
        budget: int | None = None,
        queries_per_step: int = 4,
        reward: Any = "all",
        diversity_window: int = 25,
        action_mode: str = "hierarchical",
        output: str = "probs",
        top_k: int = 1,
        decimals: int = 2,
        num_classes: int | None = None,
        label_names: Mapping[int, str] | None = None,
        victim_domain: Sequence[str] = (),
        # the owner's side
        defence: Any = None,
        detector: Any = None,
        on_detection: str = "terminate",
        detection_penalty: float = 0.0,
        # training the knockoff
        recipe: str | Recipe | Mapping = "auto",
        knockoff_pretrained: bool | None = None,
        knockoff_lr: float | None = None,
        knockoff_momentum: float | None = None,
        train_online: bool | None = None,
        # speed and runtime (EnvOptions fields are also accepted as keywords); a URL victim's options
        options: EnvOptions | Mapping | None = None,
        remote: Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        **runtime,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}: KnockoffEnv has no rendering; use TensorBoard logs")
        if not is_integer(queries_per_step) or queries_per_step < 1:
            raise ValueError(f"queries_per_step={queries_per_step!r} must be a positive integer (paper: 4)")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode={action_mode!r}; choose one of {ACTION_MODES}")
        self.options = EnvOptions.build(options, runtime)
        self.device = resolve_device(self.options.device)
        images, labels = as_images_and_labels(query_set, "query_set")
        self.query_set = QuerySet(images, labels, hierarchy, label_names, self.options.fetch_workers,
                                  self.options.pin_memory)
        self.budget, self.victim_domain = self._check_budget(budget), self._check_domain(victim_domain)
        self.queries_per_step, self.action_mode = int(queries_per_step), action_mode
        self.victim = self._black_box(victim, num_classes, output, top_k, decimals, defence, remote)
        self._watch(detector, on_detection, detection_penalty)
        self.eval_set = None if eval_set is None else as_images_and_labels(eval_set, "eval_set")
        self.victim.defence.fit(self.eval_set)  # trains a defence that needs its owner's images
        self._online_chosen = train_online is not None  # the user's choice, which a runner keeps
        self.train_online = True if train_online is None else bool(train_online)
        self._reward_spec = reward
        self.reward_weights = self._reward_weights(reward)
        self._knockoff_source = knockoff
        self.knockoff_pretrained = knockoff_pretrained  # True/False/None (unknown): picks recipe="auto"
        self.recipe = resolve_recipe(recipe, pretrained=knockoff_pretrained)
        self._precision = {"bf16": self.options.bf16, "channels_last": self.options.channels_last}
        self._compile = compile_option(self.options.compile_models, self.device)
        self.knockoff = self._online_knockoff(self.recipe.online_lr if knockoff_lr is None else knockoff_lr,
                                              self.recipe.online_momentum if knockoff_momentum is None
                                              else knockoff_momentum)
        self.num_classes = self._check_fit()
        self.evaluation = None if self.eval_set is None else Evaluation(self.victim, self.eval_set, self.device)
        self.rewards = RewardFunction(self.reward_weights, self.num_classes, diversity_window, self.device,
                                      max_queries=self.budget)
        self.transfer_set = TransferSet(self.budget, self.num_classes)
        self.lookahead = build_lookahead(self.options.lookahead, self.query_set, self.query_set.fetch, self.device,
                                         self.queries_per_step)
        if self._compile:
            compile_model(self.victim.victim, self._compile)
        self._build_spaces()
        self.spent = 0
        self._needs_reset = True
        # called with (query, answers) as the victim answers, before any learning (a durable run journals there)
        self.on_answers: Callable[[Query, torch.Tensor], None] | None = None

    # --- construction ------------------------------------------------------------------
    def _check_budget(self, budget) -> int:
        if budget is None:
            return len(self.query_set)
        if not is_integer(budget) or budget < 1:
            raise ValueError(f"budget={budget!r} must be a positive integer number of queries")
        if budget > len(self.query_set):
            raise ValueError(f"budget={budget} exceeds the {len(self.query_set)} images of the query set; "
                             "each image is queried at most once, so lower the budget or enlarge P_A")
        return int(budget)

    def _check_domain(self, victim_domain) -> tuple[str, ...]:
        names = (victim_domain,) if isinstance(victim_domain, str) else tuple(victim_domain)
        unknown = sorted(set(names) - set(self.query_set.coarse_names))
        if unknown:
            raise ValueError(f"victim_domain={list(names)}: no coarse node {unknown} in the hierarchy "
                             f"{self.query_set.coarse_names}; name the nodes that hold the victim's own domain")
        return names

    def _black_box(self, victim, num_classes, output, top_k, decimals, defence, remote) -> BlackBox:
        """The victim as a :class:`BlackBox`; a URL is opened on the victim side (its own transport)."""
        if isinstance(victim, str):
            if defence is not None:
                raise ValueError("a served victim's defence runs on its server: start it with `knockoff serve "
                                 "--defence SPEC` (or VictimService(BlackBox(..., defence=...))), not defence= "
                                 "on the attacking env")
            victim = open_victim(victim, output=output, top_k=top_k, decimals=decimals, device=self.device,
                                 **dict(remote or {}))
        if isinstance(victim, BlackBox):
            if defence is not None:
                raise ValueError("the victim is already a BlackBox: give defence= to the BlackBox, not to the env")
            return victim
        return BlackBox(victim, num_classes=num_classes, output=output, top_k=top_k, decimals=decimals,
                        device=self.device, bf16=self.options.bf16, channels_last=self.options.channels_last,
                        defence=defence)

    def _watch(self, detector, on_detection: str, detection_penalty: float) -> None:
        """The owner's monitor of this attack: one per attack (one client), also when envs share a BlackBox."""
        if on_detection not in ON_DETECTION:
            raise ValueError(f"on_detection={on_detection!r}; choose one of {ON_DETECTION}")
        if not isinstance(detection_penalty, (int, float)) or not np.isfinite(detection_penalty):
            raise ValueError(f"detection_penalty={detection_penalty!r} must be a finite number")
        self.detector = self.victim.new_detector() if detector is None else parse_detector(detector, self.device)
        self.on_detection, self.detection_penalty = on_detection, float(detection_penalty)

    def _reward_weights(self, reward) -> dict[str, float]:
        weights = parse_reward(reward)
        if self.train_online:
            return weights
        weights = {k: w for k, w in weights.items() if k != "loss"}  # no online knockoff, so no loss to reward
        if not weights:
            raise ValueError("reward='loss' needs the online knockoff; keep train_online=True or choose "
                             "another reward")
        return weights

    def prefer_online(self, wanted: bool) -> bool:
        """Before an episode: train the online knockoff or not, as a runner prefers for its agent,
        unless the user chose (``train_online=True/False``) or the reward needs it (``"loss"``
        alone). Returns whether it is trained."""
        wanted = bool(wanted)
        if self._online_chosen or wanted == self.train_online or set(parse_reward(self._reward_spec)) == {"loss"}:
            return self.train_online
        self.train_online = wanted
        self.reward_weights = self._reward_weights(self._reward_spec)
        self.rewards.reweight(self.reward_weights)
        self._needs_reset = True
        return wanted

    def _online_knockoff(self, lr: float, momentum: float) -> OnlineKnockoff:
        knockoff = OnlineKnockoff(build_model(self._knockoff_source), self.device, lr, momentum, **self._precision)
        if self._compile:
            compile_model(knockoff.model, self._compile)
        return knockoff

    def _check_fit(self) -> int:
        """K, checking with one probe batch (not counted against the budget) that the parts fit (see
        :mod:`.fit`); an opaque victim (maybe remote, paid or rate-limited) is probed only when K
        must be learned."""
        probe = self.query_set.fetch(np.arange(min(PROBE, len(self.query_set)))).to(self.device)
        local = isinstance(self.victim.victim, nn.Module)
        num_classes = probe_victim(self.victim, probe, "query_set") if local or self.victim.num_classes is None \
            else int(self.victim.num_classes)
        probe_knockoff(self.knockoff.model, probe, "query_set", num_classes)
        if self.eval_set is not None:
            check_eval_set(self.victim if local else None, self.knockoff.model, self.eval_set, num_classes,
                           self.device)
        return num_classes

    def _build_spaces(self) -> None:
        qs = self.query_set
        self.action_space = action_space(qs, self.action_mode)
        size = 1 + qs.num_coarse + qs.num_labels + len(COMPONENTS) + self.num_classes
        self.observation_space = spaces.Box(0.0, 1.0, (size,), np.float32)
        self._label_totals = np.maximum(qs.pool_sizes, 1)
        self._coarse_totals = np.maximum(qs.coarse_remaining(qs.pool_sizes), 1)
        self._last_normalised = np.zeros(len(COMPONENTS), np.float32)
        self._window_mean = np.zeros(self.num_classes, np.float32)

    # --- Gymnasium API ---------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            seed_torch(seed, self.device)
            if not isinstance(self._knockoff_source, nn.Module) and self.train_online:  # a fresh one under the seed
                self.knockoff = self._online_knockoff(self.knockoff.lr, self.knockoff.momentum)
        self.knockoff.reset()
        if self.lookahead:
            self.lookahead.clear()
        self.query_set.reset(self.np_random)
        self.rewards.reset()
        self.transfer_set.clear()
        self._last_normalised[:] = 0
        self._window_mean[:] = 0
        self.spent = self.pending = 0
        self._needs_reset = False
        if self.detector is not None:
            self.detector.reset()
        remaining = self.query_set.remaining()
        return self._observation(remaining), self._info(remaining)

    def step(self, action):
        query = self.prepare(action)
        eager_check = self.device.type == "cpu"  # free there; on a GPU it would be an extra sync
        try:
            answers = self.victim(query.images, check_finite=eager_check)
            if self.on_answers is not None:
                self.on_answers(query, answers)
        except BaseException:
            self.cancel(query)
            raise
        return self.learn(query, answers, eager_check)

    # --- the two halves of a step (MultiKnockoff queries the victim for many envs at once) ---
    def prepare(self, action, *, fetch: bool = True, pending: int = 0) -> "Query":
        """Resolve ``action``, draw the step's images and fetch them: everything before the victim.
        ``fetch=False`` leaves the images to the caller; ``pending``: images drawn for earlier steps
        of a batch that are not learned yet (they count against the budget)."""
        if self._needs_reset:
            raise RuntimeError("the episode is over (or never started); call reset() before step()")
        left = self.budget - self.spent - pending
        if isinstance(action, ImageChoice):  # the agent named the images (see ImageChoice)
            query = choose(action, self.query_set, self.queries_per_step, left)
        else:
            position, resolved = resolve_action(action, self.action_space, self.query_set, self.np_random)
            query = Query(position, resolved, self.query_set.draw(position, min(self.queries_per_step, left)), None)
        if not fetch:
            return query
        images = self.lookahead.take(query.index) if self.lookahead else None
        if images is None:
            images = self.query_set.fetch(query.index).to(self.device, non_blocking=True)  # once, for both models
        return query._replace(images=images)

    def cancel(self, query: "Query") -> None:
        """Undo :meth:`prepare` when the victim never answered: the images go back to their pool."""
        give_back(self.query_set, query, len(query.index))
        if self.lookahead:
            self.lookahead.give_back(query.index, query.images)

    def learn(self, query: "Query", answers: torch.Tensor, checked: bool = False):
        """Everything after the victim: knockoff step, rewards, transfer set, observation.
        ``checked``: the answers were already checked for NaN/inf (else it is done on the host).
        Fewer answers than images (a journal replaying a step cut by the alarm) give the rest back."""
        if len(answers) < len(query.index):
            query = self._shorten(query, len(answers))
        alarm = self.detector.observe(query.images, answers) if self.detector is not None else None
        if alarm is not None and self.on_detection == "terminate" and alarm + 1 < len(answers):
            self.victim.queries -= len(answers) - alarm - 1  # refused after the alarm: not charged
            query, answers = self._shorten(query, alarm + 1), answers[:alarm + 1]
        index = query.index
        # scored before the update, then learned
        loss = self.knockoff.step(query.images, answers) if self.train_online else None
        raw, window_mean = self.rewards.measure(answers, loss)
        # the step's one device→host copy: reward components, ȳ and the answers together
        host = torch.cat([raw, window_mean, answers.reshape(-1)]).cpu().numpy()
        k = self.num_classes
        outputs = host[3 + k:].reshape(-1, k)
        if not checked and not np.isfinite(outputs).all():
            raise_not_finite()
        reward, parts = self.rewards.score(host[:3])
        if alarm is not None:
            reward -= self.detection_penalty
        self.transfer_set.append(index, outputs)
        self._window_mean[:] = host[3:3 + k]
        self.spent += len(index)
        self._last_normalised[:] = [parts[f"{c}_normalised"] for c in COMPONENTS]

        return self._end_step(query, parts, reward)

    def _end_step(self, query: "Query", parts: dict[str, float], reward: float):
        """The step's Gymnasium tuple once it is learned: termination, observation and info."""
        remaining = self.query_set.remaining()
        terminated = self.spent >= self.budget or not remaining.any() \
            or (self.detected_at is not None and self.on_detection == "terminate")
        self._needs_reset = terminated
        info = self._info(remaining)
        info.update(self._step_infos([query], [parts], [self.spent])[0])
        if self.lookahead:
            if not terminated:
                self.lookahead.refresh(self.budget - self.spent)
            info["lookahead"] = self.lookahead.stats()
        return self._observation(remaining), reward, terminated, False, info

    def _shorten(self, query: "Query", n: int) -> "Query":
        """Keep the first ``n`` images of ``query``; the rest go back to their pool."""
        give_back(self.query_set, query, len(query.index) - n)
        return query._replace(index=query.index[:n], images=query.images[:n])

    @property
    def detected_at(self) -> int | None:
        """Queries spent when the detector raised its alarm this episode (None: not raised)."""
        return None if self.detector is None else self.detector.alarm_at

    def hint(self, probabilities: np.ndarray | None = None, plan=None) -> None:
        """What the agent will probably do next, for the look-ahead (nothing without one):
        its label ``probabilities`` (flat order) or the ``plan`` of its next labels."""
        if self.lookahead and not self._needs_reset:
            self.lookahead.hint(probabilities, plan, self.budget - self.spent - self.pending)

    def close(self) -> None:
        """Stop the look-ahead's worker threads (the env stays usable, decoding on demand)."""
        if self.lookahead:
            self.lookahead.close()
            self.lookahead = None

    # --- masks, observation and info ------------------------------------------------
    def action_masks(self) -> np.ndarray:
        """Valid actions for MaskablePPO: per label (flat) or per coarse node then per slot."""
        return action_masks(self.query_set, self.action_mode)

    def _observation(self, remaining: np.ndarray) -> np.ndarray:
        qs = self.query_set
        return np.concatenate([
            [self.spent / self.budget],
            qs.coarse_remaining(remaining) / self._coarse_totals,
            remaining / self._label_totals,
            self._last_normalised,
            self._window_mean,
        ]).astype(np.float32)

    def _info(self, remaining: np.ndarray) -> dict[str, Any]:
        return {"queries": self.spent, "budget": self.budget,
                "transfer_set_size": len(self.transfer_set),
                "action_mask": (remaining > 0).astype(np.int8), "detected": self.detected_at is not None}
