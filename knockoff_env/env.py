"""KnockoffEnv: the Knockoff Nets attack as a Gymnasium environment."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn
from torch.utils.data import Subset

from .checkpoint import load_checkpoint, save_checkpoint, text_tensor
from .compiled import compile_model, compile_option
from .detectors import parse_detector
from .fit import PROBE, check_eval_set, probe_knockoff, probe_victim
from .knockoff import OnlineKnockoff, _batches, build_model, predict
from .lookahead import build_lookahead
from .offline import OfflineFit, fit_offline
from .query_set import QuerySet, as_images_and_labels
from .recipes import Recipe, resolve_recipe
from .rewards import COMPONENTS, RewardFunction, parse_reward
from .transfer_set import TransferSet
from .validate import is_integer
from .victim import BlackBox, raise_not_finite, resolve_device

ACTION_MODES = ("hierarchical", "flat")
ON_DETECTION = ("terminate", "flag")


class Query(NamedTuple):
    """One step's draw: the label queried, whether the action was redrawn, image indices, images."""
    position: int
    resolved: bool
    index: np.ndarray
    images: torch.Tensor


class KnockoffEnv(gym.Env):
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
    sb3-contrib's MaskablePPO.

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
    :mod:`knockoff_env.defences`); the agent, rewards, knockoff and transfer set only ever
    see the defended answers. ``detector``: the owner's monitor of this attack's query
    stream (``"prada"``, see :mod:`knockoff_env.detectors`). ``info["detected"]`` says
    whether it has fired and ``detected_at`` (attribute) is the query count when it did;
    ``on_detection="flag"`` lets the episode go on; ``detection_penalty`` is subtracted from
    the reward of the step that raised the alarm. :meth:`evaluate` reports the defence's
    cost: the victim's accuracy under the defence and the mean L1 distance between
    defended and true answers on the eval set. A defence fitted on its owner's images
    (adaptive misinformation's misinformation model) is fitted on the eval set.

    ## Arguments
    victim: ``nn.Module`` returning logits, a callable returning probabilities, a
        :class:`BlackBox`, or the URL of a served victim (``"http://host:port"``, see
        :mod:`.remote`; ``remote``: the :class:`~.remote.RemoteVictim` options). query_set: ``(images, labels)`` or a Dataset of (image, label).
    hierarchy: ``{coarse name: [label ids]}`` (default: one node with every label).
    eval_set: the victim's test set, for :meth:`evaluate`. knockoff: ``nn.Module`` or a
        zero-argument factory (rebuilt, under the reset seed, on each seeded reset).
    budget: B, total queries (default: the whole query set). queries_per_step: 4 (paper).
    reward: see Rewards. diversity_window: Δ = 25 (paper). recipe: how the knockoff is
        trained (:mod:`.recipes`): ``"auto"`` (default) is ``"paper"`` when
        ``knockoff_pretrained`` is True (paper worlds set it from ``knockoff_init``), else
        ``"scratch"``; a name, a :class:`Recipe` or ``{"base": name, field: value}``.
    knockoff_lr / knockoff_momentum: the online SGD step (default: the recipe's
        ``online_lr``/``online_momentum``; paper 0.0005 and 0.5). output / top_k / decimals: the victim's
    output mode (paper default full probabilities). device: ``"auto"`` = CUDA if present.
    bf16 / channels_last: bfloat16 autocast and channels-last batches for both models (off by
    default; worth it on CUDA). fetch_workers / pin_memory: threads decoding a Dataset query
    set's images, and page-locked batches for asynchronous copies to the GPU. train_online:
    False skips the online knockoff (as the paper's random strategy, which trains only
    offline): the loss component is then not measured (NaN in ``info``) nor rewarded.
    lookahead: True or a dict of options decodes the images of probable next steps on worker
        threads ahead of time (:mod:`.lookahead`; never changes the draws); agents' hints reach it
        through :meth:`hint`; ``info["lookahead"]`` reports its hit rate. compile_models:
        ``torch.compile`` both models (True; ``"reduce-overhead"`` = CUDA graphs on a GPU).
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        victim: nn.Module | Callable | BlackBox,
        query_set: Any,
        knockoff: nn.Module | Callable[[], nn.Module],
        *,
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
        knockoff_lr: float | None = None,
        knockoff_momentum: float | None = None,
        recipe: str | Recipe | Mapping = "auto",
        knockoff_pretrained: bool | None = None,
        label_names: Mapping[int, str] | None = None,
        device: str | torch.device = "auto",
        render_mode: str | None = None,
        bf16: bool = False,
        channels_last: bool = False,
        fetch_workers: int = 0,
        pin_memory: bool = False,
        train_online: bool = True,
        defence: Any = None,
        detector: Any = None,
        on_detection: str = "terminate",
        detection_penalty: float = 0.0,
        lookahead: bool | dict = False,
        compile_models: bool | str = False,
        remote: Mapping[str, Any] | None = None,
    ):
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}: KnockoffEnv has no rendering; use TensorBoard logs")
        if action_mode not in ACTION_MODES:
            raise ValueError(f"action_mode={action_mode!r}; choose one of {ACTION_MODES}")
        if not is_integer(queries_per_step) or queries_per_step < 1:
            raise ValueError(f"queries_per_step={queries_per_step!r} must be a positive integer (paper: 4)")
        self.device = resolve_device(device)
        images, labels = as_images_and_labels(query_set, "query_set")
        self.query_set = QuerySet(images, labels, hierarchy, label_names, fetch_workers, pin_memory)
        if budget is None:
            budget = len(self.query_set)
        if not is_integer(budget) or budget < 1:
            raise ValueError(f"budget={budget!r} must be a positive integer number of queries")
        if budget > len(self.query_set):
            raise ValueError(f"budget={budget} exceeds the {len(self.query_set)} images of the query set; "
                             "each image is queried at most once, so lower the budget or enlarge P_A")
        if isinstance(victim, str) and defence is not None:
            raise ValueError("a served victim's defence runs on its server: start it with `knockoff serve "
                             "--defence SPEC` (or build_app(defence=...)), not defence= on the attacking env")
        if isinstance(victim, str):  # a served victim: the world keeps its query set and eval set
            from .remote import RemoteVictim
            victim = RemoteVictim(victim, output=output, top_k=top_k, decimals=decimals, device=self.device,
                                  **dict(remote or {}))
        if isinstance(victim, BlackBox) and defence is not None:
            raise ValueError("the victim is already a BlackBox: give defence= to the BlackBox, not to the env")
        if on_detection not in ON_DETECTION:
            raise ValueError(f"on_detection={on_detection!r}; choose one of {ON_DETECTION}")
        if not isinstance(detection_penalty, (int, float)) or not np.isfinite(detection_penalty):
            raise ValueError(f"detection_penalty={detection_penalty!r} must be a finite number")
        self.victim = victim if isinstance(victim, BlackBox) else BlackBox(
            victim, num_classes=num_classes, output=output, top_k=top_k, decimals=decimals, device=self.device,
            bf16=bf16, channels_last=channels_last, defence=defence)
        # one monitor per attack (one client), also when envs share a BlackBox
        self.detector = self.victim.new_detector() if detector is None else parse_detector(detector, self.device)
        self.on_detection, self.detection_penalty = on_detection, float(detection_penalty)
        self._defence_cost: dict[str, float] | None = None
        self.eval_set = None if eval_set is None else as_images_and_labels(eval_set, "eval_set")
        if self.victim.defence.needs_data:  # e.g. adaptive misinformation trains on its owner's images
            if self.eval_set is None:
                raise ValueError(f"the defence {self.victim.defence.spec()!r} is fitted on the owner's images, which "
                                 "the env takes from its eval_set: pass eval_set=(images, labels) or a Dataset")
            data, labels = self.eval_set
            self.victim.defence.fit((data, torch.from_numpy(labels)) if isinstance(data, torch.Tensor) else data)
        self.budget, self.queries_per_step = int(budget), int(queries_per_step)
        self.action_mode = action_mode
        self.reward_weights = parse_reward(reward)
        self.train_online = bool(train_online)
        if not self.train_online:  # no online knockoff, so no loss to reward
            self.reward_weights = {k: w for k, w in self.reward_weights.items() if k != "loss"}
            if not self.reward_weights:
                raise ValueError("reward='loss' needs the online knockoff; keep train_online=True or choose "
                                 "another reward")
        self._knockoff_source = knockoff
        self.recipe, self._pretrained = resolve_recipe(recipe, pretrained=knockoff_pretrained), knockoff_pretrained
        knockoff_lr = self.recipe.online_lr if knockoff_lr is None else knockoff_lr
        knockoff_momentum = self.recipe.online_momentum if knockoff_momentum is None else knockoff_momentum
        self._precision = {"bf16": bf16, "channels_last": channels_last}
        self.knockoff = OnlineKnockoff(build_model(knockoff), self.device, knockoff_lr, knockoff_momentum,
                                       **self._precision)

        # one probe batch, not counted against the budget, checks that the parts fit (see .fit); an opaque
        # victim (a callable: maybe remote, paid or rate-limited) is probed only when K must be learned
        probe = self.query_set.fetch(np.arange(min(PROBE, len(self.query_set)))).to(self.device)
        local = isinstance(self.victim.victim, nn.Module)
        self.num_classes = probe_victim(self.victim, probe, "query_set") if local or self.victim.num_classes is None \
            else int(self.victim.num_classes)
        probe_knockoff(self.knockoff.model, probe, "query_set", self.num_classes)
        if self.eval_set is not None:
            check_eval_set(self.victim if local else None, self.knockoff.model, self.eval_set, self.num_classes,
                           self.device)
        self.rewards = RewardFunction(self.reward_weights, self.num_classes, diversity_window, self.device,
                                      max_queries=self.budget)
        self.transfer_set = TransferSet(self.budget, self.num_classes)
        self.lookahead = build_lookahead(lookahead, self.query_set, self.query_set.fetch, self.device,
                                         self.queries_per_step)
        self._compile = compile_option(compile_models, self.device)
        if self._compile:
            compile_model(self.victim.victim, self._compile)
            compile_model(self.knockoff.model, self._compile)

        qs = self.query_set
        if action_mode == "hierarchical":
            self.action_space = spaces.MultiDiscrete([qs.num_coarse, int(qs.coarse_sizes.max())])
        else:
            self.action_space = spaces.Discrete(qs.num_labels)
        size = 1 + qs.num_coarse + qs.num_labels + len(COMPONENTS) + self.num_classes
        self.observation_space = spaces.Box(0.0, 1.0, (size,), np.float32)
        self._label_totals = np.maximum(qs.pool_sizes, 1)
        self._coarse_totals = np.maximum(qs.coarse_remaining(qs.pool_sizes), 1)
        self._last_normalised = np.zeros(len(COMPONENTS), np.float32)
        self._window_mean = np.zeros(self.num_classes, np.float32)
        self._victim_pred: np.ndarray | None = None
        self.spent = 0
        self._needs_reset = True
        # called with (query, answers) as soon as the victim answers, before the knockoff learns
        # (a durable run journals the paid answers there)
        self.on_answers: Callable[[Query, torch.Tensor], None] | None = None

    # --- Gymnasium API ---------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            torch.manual_seed(seed)
            if not isinstance(self._knockoff_source, nn.Module):
                self.knockoff = OnlineKnockoff(build_model(self._knockoff_source), self.device,
                                               self.knockoff.lr, self.knockoff.momentum, **self._precision)
                if self._compile:
                    compile_model(self.knockoff.model, self._compile)
        self.knockoff.reset()
        if self.lookahead:
            self.lookahead.clear()
        self.query_set.reset(self.np_random)
        self.rewards.reset()
        self.transfer_set.clear()
        self._last_normalised[:] = 0
        self._window_mean[:] = 0
        self.spent = 0
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
    def prepare(self, action) -> "Query":
        """Resolve ``action``, draw the step's images and fetch them: everything before the victim."""
        if self._needs_reset:
            raise RuntimeError("the episode is over (or never started); call reset() before step()")
        position, resolved = self._resolve(action)
        n = min(self.queries_per_step, self.budget - self.spent)
        index = self.query_set.draw(position, n)
        images = self.lookahead.take(index) if self.lookahead else None
        if images is None:
            images = self.query_set.fetch(index).to(self.device, non_blocking=True)  # once, for both models
        return Query(position, resolved, index, images)

    def cancel(self, query: "Query") -> None:
        """Undo :meth:`prepare` when the victim never answered: the images go back to their pool."""
        self.query_set.undraw(query.position, len(query.index))
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
        index, position = query.index, query.position
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

        remaining = self.query_set.remaining()
        terminated = self.spent >= self.budget or not remaining.any() \
            or (self.detected_at is not None and self.on_detection == "terminate")
        self._needs_reset = terminated
        info = self._info(remaining)
        info.update(rewards=parts, resolved=query.resolved, label_position=position,
                    label=int(self.query_set.label_ids[position]),
                    coarse_index=int(self.query_set.coarse_of_label[position]),
                    queries_this_step=len(index))
        info["coarse"] = self.query_set.coarse_names[info["coarse_index"]]
        if self.lookahead:
            if not terminated:
                self.lookahead.refresh(self.budget - self.spent)
            info["lookahead"] = self.lookahead.stats()
        return self._observation(remaining), reward, terminated, False, info

    def _shorten(self, query: "Query", n: int) -> "Query":
        """Keep the first ``n`` images of ``query``; the rest go back to their pool."""
        self.query_set.undraw(query.position, len(query.index) - n)
        return query._replace(index=query.index[:n], images=query.images[:n])

    @property
    def detected_at(self) -> int | None:
        """Queries spent when the detector raised its alarm this episode (None: not raised)."""
        return None if self.detector is None else self.detector.alarm_at
    def hint(self, probabilities: np.ndarray | None = None, plan=None) -> None:
        """What the agent will probably do next, for the look-ahead (nothing without one):
        its label ``probabilities`` (flat order) or the ``plan`` of its next labels."""
        if self.lookahead and not self._needs_reset:
            self.lookahead.hint(probabilities, plan, self.budget - self.spent)

    def close(self) -> None:
        """Stop the look-ahead's worker threads (the env stays usable, decoding on demand)."""
        if self.lookahead:
            self.lookahead.close()
            self.lookahead = None

    # --- actions and masks -----------------------------------------------------------
    def _resolve(self, action) -> tuple[int, bool]:
        """Flat label position for ``action``; exhausted or missing labels are redrawn."""
        a = np.asarray(action)
        shape = self.action_space.shape
        if a.dtype.kind not in "iu" or a.size != max(1, int(np.prod(shape))) \
                or not self.action_space.contains(a.reshape(shape) if shape else int(a.item())):
            raise ValueError(f"action {action!r} is outside the action space {self.action_space}; "
                             "give integer coarse/label indices within its bounds")
        qs = self.query_set
        remaining = qs.remaining()
        if self.action_mode == "flat":
            position = int(a.item())
            coarse = int(qs.coarse_of_label[position])
        else:
            coarse, slot = (int(v) for v in a.reshape(-1))
            position = qs.position(coarse, slot)
        if position >= 0 and remaining[position] > 0:
            return position, False
        start, stop = qs.coarse_offsets[coarse], qs.coarse_offsets[coarse] + qs.coarse_sizes[coarse]
        candidates = start + np.flatnonzero(remaining[start:stop])
        if candidates.size == 0:
            candidates = np.flatnonzero(remaining)
        return int(self.np_random.choice(candidates)), True

    def action_masks(self) -> np.ndarray:
        """Valid actions for MaskablePPO: per label (flat) or per coarse node then per slot."""
        label_ok = self.query_set.remaining() > 0
        if self.action_mode == "flat":
            return label_ok
        qs = self.query_set
        coarse_ok = np.add.reduceat(label_ok, qs.coarse_offsets) > 0
        slots = np.zeros(int(qs.coarse_sizes.max()), bool)
        slot_of_label = np.arange(qs.num_labels) - qs.coarse_offsets[qs.coarse_of_label]
        slots[slot_of_label[label_ok]] = True
        return np.concatenate([coarse_ok, slots])

    # --- observation and info --------------------------------------------------------
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

    # --- evaluation and the offline phase --------------------------------------------
    def transfer_images(self) -> torch.Tensor | Subset:
        """The queried images, in query order (a tensor, or a Subset of the query dataset)."""
        indices, _ = self.transfer_set.view()
        if isinstance(self.query_set.images, torch.Tensor):
            return self.query_set.fetch(indices)
        return Subset(self.query_set.images, indices.tolist())

    def retrain(self, epochs: int | None = None, **kwargs) -> nn.Module:
        """Phase (b): a fresh knockoff trained on the transfer set (see :meth:`fit`); returns the model."""
        return self.fit(epochs, **kwargs).model

    def fit(self, epochs: int | None = None, *, recipe: str | Recipe | None = None, holdout: float = 0.1,
            seed: int = 0, progress: bool = False, workers: int = 0, on_epoch=None, warn: bool = True,
            **overrides) -> OfflineFit:
        """Phase (b): train a fresh knockoff on the transfer set with the env's recipe (or ``recipe``),
        ``epochs`` (default: the recipe's) and any other recipe field overridden by keyword;
        ``holdout`` of the queries judge every epoch and the best epoch is kept (see :mod:`.offline`)."""
        if len(self.transfer_set) == 0:
            raise RuntimeError("the transfer set is empty; play an episode before retraining")
        model = build_model(self._knockoff_source)
        if isinstance(self._knockoff_source, nn.Module):
            model.load_state_dict(self.knockoff.initial_state)
        if epochs is not None:
            overrides["epochs"] = epochs
        _, outputs = self.transfer_set.view()
        return fit_offline(model, self.transfer_images(), torch.from_numpy(outputs.copy()), device=self.device,
                           recipe=self.recipe if recipe is None else resolve_recipe(recipe,
                                                                                    pretrained=self._pretrained),
                           holdout=holdout, seed=seed, progress=progress, workers=workers, on_epoch=on_epoch,
                           warn=warn, **self._precision, **overrides)

    def evaluate(self, model: nn.Module | None = None) -> dict[str, float]:
        """Top-1 accuracy of the knockoff (or ``model``) and the victim on the eval set,
        their ratio (the paper's "×victim"), the knockoff's agreement with the victim, and the
        defence's cost: ``victim_accuracy_defended`` (top-1 of the defended answers) and
        ``defence_l1`` (mean L1 distance between defended and true answers)."""
        if self.eval_set is None:
            raise RuntimeError("no eval_set was given; pass eval_set=(images, labels) or a Dataset")
        data, labels = self.eval_set
        eval_data = (data, torch.from_numpy(labels)) if isinstance(data, torch.Tensor) else data
        victim_pred = self._victim_predictions(eval_data)
        knockoff_pred = predict(model or self.knockoff.model, eval_data, self.device)
        victim_accuracy = float((victim_pred == labels).mean())
        knockoff_accuracy = float((knockoff_pred == labels).mean())
        return {"knockoff_accuracy": knockoff_accuracy, "victim_accuracy": victim_accuracy,
                "times_victim": knockoff_accuracy / victim_accuracy if victim_accuracy > 0 else float("nan"),
                "agreement": float((knockoff_pred == victim_pred).mean()),
                **self._defence_costs(eval_data, labels, victim_accuracy)}

    def _defence_costs(self, eval_data, labels: np.ndarray, victim_accuracy: float) -> dict[str, float]:
        """Victim accuracy under the defence and mean L1 perturbation on the eval set (cached).
        Without a defence in this black box (none, or one that runs on a remote victim's server)
        there is nothing to measure here, and nothing is queried."""
        if not self.victim.defence:
            return {"victim_accuracy_defended": victim_accuracy, "defence_l1": 0.0}
        if self._defence_cost is None:
            hits, l1, first = 0.0, 0.0, 0
            for x, *_ in _batches(eval_data, self.victim.batch_size):
                true, defended = self.victim.true_and_defended(x)
                hits += float((defended.argmax(1).cpu().numpy() == labels[first:first + len(x)]).sum())
                l1 += float((defended - true).abs().sum())
                first += len(x)
            self._defence_cost = {"victim_accuracy_defended": hits / first, "defence_l1": l1 / first}
        return self._defence_cost

    def _victim_predictions(self, eval_data) -> np.ndarray:
        """The victim's labels on the eval set; evaluation is not an attack query, so not counted."""
        if self._victim_pred is None:
            self._victim_pred = predict(self.victim.evaluation_model(), eval_data, self.device)
        return self._victim_pred

    # --- checkpoints -----------------------------------------------------------------
    def durable_config(self) -> dict[str, Any]:
        """What a checkpoint of this env must agree with to be loaded into it."""
        return {"budget": self.budget, "queries_per_step": self.queries_per_step,
                "num_classes": self.num_classes, "query_set_size": len(self.query_set),
                "labels": self.query_set.label_ids.tolist(), "action_mode": self.action_mode,
                "reward": self.reward_weights, "diversity_window": self.rewards.window,
                "train_online": self.train_online, **self._monitoring_config()}

    def _monitoring_config(self) -> dict[str, Any]:
        """Defence and detector, only when present (so undefended runs keep their old configs)."""
        config = {}
        if self.victim.defence:
            config["defence"] = self.victim.defence.spec()
        if self.detector is not None:
            config.update(detector=self.detector.spec(), on_detection=self.on_detection,
                          detection_penalty=self.detection_penalty)
        return config

    def state_dict(self, transfer_set: bool = True) -> dict[str, Any]:
        """The episode's state as named arrays/tensors: pools, RNGs, knockoff, rewards, counters
        and (unless ``transfer_set=False``, when a journal holds it) the transfer set."""
        state = {"np_random": text_tensor(json.dumps(self.np_random.bit_generator.state)),
                 "torch_rng": torch.get_rng_state(), "spent": np.int64(self.spent),
                 "needs_reset": np.bool_(self._needs_reset), "last_normalised": self._last_normalised,
                 "victim_queries": np.int64(self.victim.queries)}
        state.update({f"query_set.{k}": v for k, v in self.query_set.state_dict().items()})
        state.update({f"knockoff.{k}": v for k, v in self.knockoff.state_dict().items()})
        state.update({f"rewards.{k}": v for k, v in self.rewards.state_dict().items()})
        if self.detector is not None:
            state.update({f"detector.{k}": v for k, v in self.detector.state_dict().items()})
        if transfer_set:
            indices, outputs = self.transfer_set.view()
            state.update({"transfer_set.indices": indices, "transfer_set.outputs": outputs})
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; without a saved transfer set the caller refills it."""
        state = {k: v.numpy() if isinstance(v, torch.Tensor) and k != "torch_rng" and not k.startswith("knockoff.")
                 else v for k, v in state.items()}
        self.query_set.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("query_set.")},
                                       self.np_random)
        self.np_random.bit_generator.state = json.loads(np.asarray(state["np_random"], np.uint8).tobytes().decode())
        torch.set_rng_state(torch.as_tensor(state["torch_rng"], dtype=torch.uint8))
        self.knockoff.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("knockoff.")})
        self.rewards.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("rewards.")})
        self._window_mean[:] = (self.rewards.buffer.sum(0) / max(self.rewards.filled, 1)).cpu().numpy()
        self.spent, self._needs_reset = int(state["spent"]), bool(state["needs_reset"])
        self._last_normalised[:] = state["last_normalised"]
        self.victim.queries = int(state["victim_queries"])
        if self.detector is not None:
            self.detector.load_state_dict({k[9:]: v for k, v in state.items() if k.startswith("detector.")})
        self.transfer_set.clear()
        if self.lookahead:
            self.lookahead.clear()
        if "transfer_set.indices" in state:
            self.transfer_set.append(state["transfer_set.indices"], state["transfer_set.outputs"])

    def save(self, path) -> None:
        """Checkpoint the episode to ``path`` (tensors only; atomic; see :mod:`.checkpoint`)."""
        save_checkpoint(path, self.state_dict(), self.durable_config())

    def load(self, path) -> None:
        """Continue the episode saved by :meth:`save`; refuses a damaged file or another env's."""
        self.load_state_dict(load_checkpoint(path, self.durable_config()))

    def observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        """The current observation and info, as :meth:`reset` returns them (e.g. after :meth:`load`)."""
        remaining = self.query_set.remaining()
        return self._observation(remaining), self._info(remaining)
