"""Many steps, one victim call: the env's batched steps, for strategies whose actions do not
depend on the victim's answers (the random strategy; CopycatCNN).

Such a strategy's next actions are known before any answer comes back, so the env can draw
the images of many steps (:meth:`~BatchedSteps.prepare_batch` acting step by step, or
:meth:`~BatchedSteps.prepare_ahead` given the labels of all of them at once), send them to
the victim in one call (split by the :class:`~knockoff_env.victim.BlackBox` into batches of
its ``batch_size``, a served victim's ``max_batch``) and then learn the steps in order. Each
step keeps what makes it a step:

* the draws are the ones :meth:`~KnockoffEnv.step` would make, action after action, so the
  transfer set is the same as step by step (the answers equal to the victim's float rounding
  of a larger batch);
* the budget is exact and no image is drawn twice (a step drawn ``pending`` images into a
  batch counts them against the budget);
* the detector sees the batch in query order, in one call; with ``on_detection="terminate"``
  the steps after the alarm's are given back, not charged and not journaled, as the images
  after the alarm in a step are;
* every kept step is handed to ``on_answers_batch`` (a durable run journals the batch
  atomically) before anything learns from it;
* the knockoff (when trained online) takes one SGD step per step, in order; the rewards of all
  steps are computed together (:meth:`RewardFunction.measure_many`: equal to the step-by-step
  ones up to float rounding). Intermediate observations are not computed (the strategy does
  not read them): ``step_batch`` returns the observation after the last step.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..victim.blackbox import raise_not_finite
from .actions import Query, give_back
from .rewards import COMPONENTS


class BatchedSteps:
    """:meth:`step_batch` and its halves for :class:`~knockoff_env.KnockoffEnv`."""

    # called with (queries, their answers in query order) once a batch's kept answers are known, before
    # anything learns from them; without it, on_answers is called step by step
    on_answers_batch: Callable[[list[Query], torch.Tensor], None] | None = None
    pending = 0  # images drawn by prepare_batch and not yet answered (they count against the budget)

    def step_batch(self, act: Callable[[], Any], max_images: int | None = None, stop_at: int | None = None):
        """Steps whose actions come from ``act()`` (None: no more), answered by one victim call.

        ``max_images``: the most images in the call (whole steps; default: the victim's
        ``batch_size``); ``stop_at``: stop once this many queries are spent (an evaluation is
        due). Returns ``(observation, rewards, terminated, truncated, infos)``: the observation
        after the last step, one reward and one info per step (the last info is the full one
        :meth:`step` returns; the others say the step's queries, reward components and label)."""
        return self.answer_batch(self.prepare_batch(act, max_images, stop_at))

    def prepare_batch(self, act: Callable[[], Any], max_images: int | None = None,
                      stop_at: int | None = None) -> list[Query]:
        """Draw the steps of a batch and fetch their images: everything before the victim."""
        cap, left = self._batch_room(max_images)
        queries: list[Query] = []
        drawn = 0
        try:
            while drawn < left and (not queries or (drawn + self.queries_per_step <= cap
                                                    and (stop_at is None or self.spent + drawn < stop_at))):
                action = act()
                if action is None:
                    break
                queries.append(self.prepare(action, fetch=False, pending=drawn))
                drawn += len(queries[-1].index)
            if not queries:
                raise ValueError("act() gave no action: a batch needs at least one step")
            images = self._images([q.index for q in queries])
        except BaseException:
            self.cancel_batch(queries)
            raise
        self.pending = drawn
        return [q._replace(images=step_images) for q, step_images in zip(queries, images)]

    def prepare_ahead(self, act_ahead: Callable[[int], Sequence[int]], max_images: int | None = None,
                      stop_at: int | None = None) -> list[Query]:
        """:meth:`prepare_batch` for a strategy that names the labels of its next steps at once:
        ``act_ahead(steps)`` gives the flat label positions of up to ``steps`` steps, each with
        images left at its turn (as its step-by-step actions would choose them). The steps get
        the images :meth:`prepare_batch` would draw for those actions, without the per-step
        round of acting and resolving actions (see :meth:`QuerySet.draw_steps`)."""
        cap, left = self._batch_room(max_images)
        per_step, room = self.queries_per_step, min(cap, left)
        if stop_at is not None:
            room = min(room, stop_at - self.spent)
        plan = [int(p) for p in act_ahead(max(1, min(cap // per_step, -(-room // per_step))))]
        if not plan or left <= 0:
            raise ValueError("act_ahead() named no label (or nothing is left to query): a batch needs a step")
        indices = self.query_set.draw_steps(plan, per_step, left)
        try:
            images = self._images(indices)
        except BaseException:
            self.cancel_batch([Query(p, False, index, None) for p, index in zip(plan, indices)])
            raise
        self.pending = sum(len(index) for index in indices)
        return [Query(p, False, index, step_images) for p, index, step_images in zip(plan, indices, images)]

    def _batch_room(self, max_images: int | None) -> tuple[int, int]:
        """(images per victim call, images the budget and the pools have left) for a new batch."""
        if self._needs_reset:
            raise RuntimeError("the episode is over (or never started); call reset() before step_batch()")
        cap = self.victim.batch_size if max_images is None else int(max_images)
        if cap < 1:
            raise ValueError(f"max_images={max_images!r} must be a positive number of images")
        return cap, min(self.budget - self.spent, int(self.query_set.remaining().sum()))

    def _images(self, indices: list[np.ndarray]) -> list[torch.Tensor]:
        """Each step's images: from the look-ahead, else all in one gather, split per step."""
        steps = [self.lookahead.take(index) for index in indices] if self.lookahead else [None] * len(indices)
        missing = [i for i, images in enumerate(steps) if images is None]
        if missing:
            fetched = self.query_set.fetch(np.concatenate([indices[i] for i in missing]))
            parts = fetched.to(self.device, non_blocking=True).split([len(indices[i]) for i in missing])
            for i, images in zip(missing, parts):
                steps[i] = images
        return steps

    def cancel_batch(self, queries: list[Query]) -> None:
        """Undo :meth:`prepare_batch` when the victim never answered: the images go back to their pools."""
        self.pending = 0
        for query in reversed(queries):
            if query.images is None:
                give_back(self.query_set, query, len(query.index))
            else:
                self.cancel(query)

    def answer_batch(self, queries: list[Query]):
        """Query the victim once for the batch, hand the kept answers on, learn the steps."""
        eager_check, self.pending = self.device.type == "cpu", 0
        try:
            answers = self.victim(torch.cat([q.images for q in queries]), check_finite=eager_check)
        except BaseException:
            self.cancel_batch(queries)
            raise
        if len(queries) == 1:  # exactly a step(): handed on, then watched and learned
            self._hand_on(queries, answers)
            return self.learn_batch(queries, answers, eager_check)
        kept, alarm, answers = self._watch_batch(queries, answers)
        self._hand_on(queries[:kept], answers)
        return self._learn_batch(queries[:kept], answers, eager_check, alarm)

    def _hand_on(self, queries: list[Query], answers: torch.Tensor) -> None:
        """The paid answers to ``on_answers_batch`` (else ``on_answers``, step by step)."""
        try:
            if self.on_answers_batch is not None:
                self.on_answers_batch(queries, answers)
            elif self.on_answers is not None:
                for query, step_answers in zip(queries, answers.split([len(q.index) for q in queries])):
                    self.on_answers(query, step_answers)
        except BaseException:
            self.cancel_batch(queries)
            raise

    def learn_batch(self, queries: list[Query], answers: torch.Tensor | list[torch.Tensor], checked: bool = False):
        """Everything after the victim for a batch (a durable run replays journaled batches here):
        ``answers`` the steps' answers in query order, as one tensor or one per step."""
        answers = torch.cat(answers) if isinstance(answers, (list, tuple)) else answers
        if len(queries) == 1:
            obs, reward, terminated, truncated, info = self.learn(queries[0], answers, checked)
            return obs, np.array([reward]), terminated, truncated, [info]
        kept, alarm, answers = self._watch_batch(queries, answers)
        return self._learn_batch(queries[:kept], answers, checked, alarm)

    def _watch_batch(self, queries: list[Query], answers: torch.Tensor) -> tuple[int, int | None, torch.Tensor]:
        """The detector over the batch, in query order: how many steps are kept (through the
        alarm's, whole), the alarm's index in the kept images and the kept steps' answers. The
        steps after the alarm's go back."""
        if self.detector is None:
            return len(queries), None, answers
        alarm = self.detector.observe(torch.cat([q.images for q in queries]), answers)
        if alarm is None or self.on_detection != "terminate":
            return len(queries), alarm, answers
        ends = np.cumsum([len(q.index) for q in queries])
        kept = int(np.searchsorted(ends, alarm, side="right")) + 1
        for query in reversed(queries[kept:]):
            self.victim.queries -= len(query.index)  # refused after the alarm: not charged
            self.cancel(query)
        return kept, alarm, answers[:ends[kept - 1]]

    def _learn_batch(self, queries: list[Query], y: torch.Tensor, checked: bool, alarm: int | None):
        """The steps' knockoff updates, rewards, transfer set and counters; the step tuples."""
        sizes = [len(q.index) for q in queries]
        alarm_step = None if alarm is None else int(np.searchsorted(np.cumsum(sizes), alarm, side="right"))
        if alarm is not None and self.on_detection == "terminate":  # the alarm's step keeps its images up to it
            cut = alarm + 1 - (sum(sizes) - sizes[-1])
            if cut < sizes[-1]:
                self.victim.queries -= sizes[-1] - cut
                y = y[:len(y) - (sizes[-1] - cut)]
                queries[-1], sizes[-1] = self._shorten(queries[-1], cut), cut
        losses = torch.stack([self.knockoff.step(q.images, a).mean() for q, a in zip(queries, y.split(sizes))]) \
            if self.train_online else None
        outputs = y.cpu().numpy()  # the batch's one device→host copy (with the losses')
        if not checked and not np.isfinite(outputs).all():
            raise_not_finite()
        raw, window_mean = self.rewards.measure_many(outputs, sizes, None if losses is None else losses.cpu().numpy())
        rewards, parts = self.rewards.score_many(raw)
        if alarm_step is not None:
            rewards[alarm_step] -= self.detection_penalty
        self.transfer_set.append(np.concatenate([q.index for q in queries]), outputs)
        self._window_mean[:] = window_mean
        self._last_normalised[:] = [parts[-1][f"{c}_normalised"] for c in COMPONENTS]
        queries_after = (self.spent + np.cumsum(sizes)).tolist()
        self.spent = queries_after[-1]
        infos = self._step_infos(queries, parts, queries_after)
        obs, _, terminated, truncated, infos[-1] = self._end_step(queries[-1], parts[-1], float(rewards[-1]))
        return obs, rewards, terminated, truncated, infos

    def _step_infos(self, queries: list[Query], parts: list[dict], queries_after: list[int]) -> list[dict]:
        """Each step's info: the queries spent after it, its reward components, the label queried."""
        qs = self.query_set
        positions = np.fromiter((q.position for q in queries), np.int64, len(queries))
        coarse = qs.coarse_of_label[positions].tolist()
        labels = qs.label_ids[positions].tolist()
        return [{"queries": spent, "rewards": p, "resolved": q.resolved, "label_position": q.position,
                 "label": label, "coarse_index": c, "coarse": qs.coarse_names[c], "queries_this_step": len(q.index),
                 "chosen": q.chosen}
                for spent, p, q, label, c in zip(queries_after, parts, queries, labels, coarse)]
