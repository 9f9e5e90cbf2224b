"""Images ready before the step needs them: a decoded look-ahead of the draws to come.

A label's pool gets its shuffle seed when it is first drawn from, and from then on its next
images are fixed (:meth:`QuerySet.upcoming`, settled as far as asked, :mod:`.shuffle`). So while the models work on one step, worker threads can
decode (on CUDA: decode and copy to the device) the images the next steps will probably
draw. Which labels are "probable" comes from a hint:

* a **plan**: the exact labels of the next steps (the random strategy can say; see
  :meth:`agents.RandomAgent.plan`). Pools not drawn from yet are predicted by settling
  copies with seeds from a copy of the env's RNG (:meth:`QuerySet.peek`), so the whole query order
  is decoded ahead in large batches;
* label **probabilities** (a bandit's current policy): the ``labels`` most probable;
* neither: every label when there are at most ``labels``, else those with most images left.

For each candidate label the next ``steps`` batches are kept ready. A step whose images are
all ready (or being decoded) is a *hit*; anything else is a *miss* and is decoded on demand
as without the look-ahead. The look-ahead settles fixed orders further and predicts the
others on copies: it never changes which images are drawn, nor their order.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Sequence

import numpy as np
import torch

from .query_set import QuerySet


class Lookahead:
    """Decoded batches of the images the next steps will probably draw.

    Args:
        query_set: the env's :class:`QuerySet` (read, never drawn from).
        fetch: ``fetch(index) -> (n, ...) tensor``, the on-demand decoder.
        device: where ready batches live (CUDA: device-resident, copied on side streams).
        queries_per_step: images per step.
        steps: batches kept ready per candidate label.
        labels: candidate labels when guessing from probabilities or pool sizes.
        fresh: at most this many candidate labels whose pool is not shuffled yet (their
            prediction holds only if they are the next new label drawn, so more is mostly waste).
        plan_steps: steps of a plan decoded ahead (see :meth:`needs_plan`).
        workers: decoding threads.
        chunk: images per decoding job (larger batches pay off with GPU decoding).
    """

    def __init__(self, query_set: QuerySet, fetch: Callable[[np.ndarray], torch.Tensor], device: torch.device,
                 queries_per_step: int, *, steps: int = 2, labels: int = 64, fresh: int = 2, plan_steps: int = 64,
                 workers: int = 2, chunk: int = 32):
        for name, value in (("steps", steps), ("labels", labels), ("plan_steps", plan_steps),
                            ("workers", workers), ("chunk", chunk)):
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise ValueError(f"lookahead {name}={value!r} must be a positive integer")
        if isinstance(fresh, bool) or int(fresh) != fresh or fresh < 0:
            raise ValueError(f"lookahead fresh={fresh!r} must be an integer ≥ 0")
        self.query_set, self.fetch, self.device, self.n = query_set, fetch, device, int(queries_per_step)
        self.steps, self.labels, self.fresh, self.plan_steps = int(steps), int(labels), int(fresh), int(plan_steps)
        self.chunk = int(chunk)
        self._pool = ThreadPoolExecutor(int(workers), "knockoff-lookahead")
        self._cuda = device.type == "cuda"
        self._local = threading.local()
        self._ready: dict[int, tuple[Future, int]] = {}  # image index -> (its job, its row in the job's batch)
        self._plan: deque[np.ndarray] = deque()
        self._probabilities: np.ndarray | None = None
        self.hits = self.late = self.misses = 0

    # --- hints -------------------------------------------------------------------------
    def hint(self, probabilities: np.ndarray | None = None, plan: Sequence[int] | None = None,
             limit: int | None = None) -> None:
        """Tell the look-ahead what comes next: label ``probabilities`` (flat order) or the
        ``plan`` of the next steps' labels (``limit``: the budget left)."""
        if plan is not None:
            self._plan = deque(self.query_set.peek(plan, self.n, limit))
            wanted = {int(i) for b in self._plan for i in b}
            self._ready = {i: entry for i, entry in self._ready.items() if i in wanted}
            self._submit(list(self._plan))
        if probabilities is not None:
            probabilities = np.asarray(probabilities, np.float64).reshape(-1)
            if probabilities.shape != (self.query_set.num_labels,):
                raise ValueError(f"{probabilities.shape[0]} label probabilities for "
                                 f"{self.query_set.num_labels} labels")
            self._probabilities = probabilities

    def needs_plan(self) -> bool:
        """Whether fewer than half of ``plan_steps`` planned steps are left (time for a new plan)."""
        return len(self._plan) < self.plan_steps // 2 + 1

    def refresh(self, limit: int | None = None) -> None:
        """Keep the next batches of the candidate labels decoding; drop what no longer fits."""
        if self._plan:
            return
        qs = self.query_set
        remaining = qs.remaining()
        score = self._probabilities if self._probabilities is not None else remaining.astype(np.float64)
        score = np.where(remaining > 0, score, -1.0)
        k = min(self.labels, len(score))
        candidates = np.argpartition(-score, k - 1)[:k] if k < len(score) else np.arange(len(score))
        candidates = candidates[score[candidates] > 0]
        candidates = candidates[np.argsort(-score[candidates], kind="stable")]
        batches, fresh = [], 0
        for p in candidates:
            if qs.shuffled[p]:
                upcoming = qs.upcoming(p, self.steps * self.n).copy()
                batches += [upcoming[i:i + self.n] for i in range(0, len(upcoming), self.n)]
            elif fresh < self.fresh:
                fresh += 1
                batches += qs.peek([p] * self.steps, self.n, limit)
        wanted = {int(i) for b in batches for i in b}
        self._ready = {i: entry for i, entry in self._ready.items() if i in wanted}
        self._submit(batches)

    def _submit(self, batches: list[np.ndarray]) -> None:
        """Start decoding every image of ``batches`` not ready yet, ``chunk`` images per job, in order."""
        missing, seen = [], set()
        for batch in batches:
            for i in batch:
                i = int(i)
                if i not in self._ready and i not in seen:
                    seen.add(i)
                    missing.append(i)
        for start in range(0, len(missing), self.chunk):
            index = np.asarray(missing[start:start + self.chunk], np.int64)
            job = self._pool.submit(self._decode, index)
            for row, i in enumerate(index):
                self._ready[int(i)] = (job, row)

    def _decode(self, index: np.ndarray):
        """In a worker: the batch, on the device; on CUDA copied on the worker's own stream, with
        an event the consuming stream waits for."""
        if not self._cuda:
            return self.fetch(index).to(self.device), None
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream):
            batch = self.fetch(index).to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(stream)
        return batch, event

    # --- the step ------------------------------------------------------------------------
    def take(self, index: np.ndarray) -> torch.Tensor | None:
        """The images at ``index`` if all are ready or decoding (a hit), else None (a miss)."""
        if self._plan:
            if np.array_equal(self._plan[0], index):
                self._plan.popleft()
            else:  # the steps went another way than planned
                self._plan.clear()
        entries = [self._ready.get(int(i)) for i in index]
        if any(e is None for e in entries):
            self.misses += 1
            for i in index:
                self._ready.pop(int(i), None)
            return None
        late = not all(job.done() for job, _ in entries)
        try:
            results = [job.result() for job, _ in entries]
        except Exception:  # noqa: BLE001 - decoding failed in a worker: decode on demand, where it raises
            self.misses += 1
            for i in index:
                self._ready.pop(int(i), None)
            return None
        self.hits += 1
        self.late += late
        for (batch, event) in {id(r): r for r in results}.values():
            if event is not None:
                current = torch.cuda.current_stream(self.device)
                current.wait_event(event)
                batch.record_stream(current)
        for i in index:
            del self._ready[int(i)]
        first, row0 = entries[0]
        if all(job is first and row == row0 + k for k, (job, row) in enumerate(entries)):
            return results[0][0][row0:row0 + len(entries)]  # one job, consecutive rows: a view
        return torch.stack([batch[row] for (batch, _), (_, row) in zip(results, entries)])

    def give_back(self, index: np.ndarray, images: torch.Tensor) -> None:
        """Images drawn but never answered (a failed victim call) are ready again for the redraw."""
        done: Future = Future()
        done.set_result((images, None))
        for row, i in enumerate(index):
            self._ready[int(i)] = (done, row)

    def clear(self) -> None:
        """Forget every prediction (a reset or a restored checkpoint changes the pools)."""
        self._ready.clear()
        self._plan.clear()
        self._probabilities = None

    # --- report ----------------------------------------------------------------------------
    @property
    def hit_rate(self) -> float:
        """Fraction of steps whose images were all ready or decoding when drawn."""
        total = self.hits + self.misses
        return self.hits / total if total else float("nan")

    def stats(self) -> dict[str, float]:
        """Hits, late hits (still decoding when drawn), misses, hit rate, images held."""
        return {"hits": self.hits, "late": self.late, "misses": self.misses, "hit_rate": self.hit_rate,
                "ready": len(self._ready)}

    def reset_stats(self) -> None:
        self.hits = self.late = self.misses = 0

    def close(self) -> None:
        """Stop the worker threads (idempotent)."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def build_lookahead(option, query_set: QuerySet, fetch, device: torch.device, queries_per_step: int) -> Lookahead | None:
    """The env's ``lookahead`` option: False/None (off), True (defaults) or a dict of :class:`Lookahead` options."""
    if option is None or option is False:
        return None
    if option is True:
        option = {}
    if not isinstance(option, dict):
        raise ValueError(f"lookahead={option!r}: give True, False or a dict of options "
                         "(steps, labels, fresh, plan_steps, workers, chunk)")
    unknown = set(option) - {"steps", "labels", "fresh", "plan_steps", "workers", "chunk"}
    if unknown:
        raise ValueError(f"unknown lookahead options {sorted(unknown)}; "
                         "choose from steps, labels, fresh, plan_steps, workers, chunk")
    return Lookahead(query_set, fetch, device, queries_per_step, **option)


HINT_EVERY = 8  # steps between policy hints (a policy moves slowly; computing it costs)


def hint_from(core, agent, step: int) -> None:
    """The runner's hint before ``agent`` acts: its plan when it can say (random strategy),
    else its label probabilities every :data:`HINT_EVERY` steps, else nothing."""
    lookahead = getattr(core, "lookahead", None)
    if lookahead is None:
        return
    if callable(getattr(agent, "plan", None)):
        if lookahead.needs_plan():
            core.hint(plan=agent.plan(lookahead.plan_steps))
    elif step % HINT_EVERY == 0 and callable(getattr(agent, "label_probabilities", None)):
        try:
            probabilities = agent.label_probabilities(core.query_set.remaining() > 0)
        except NotImplementedError:
            return
        core.hint(probabilities=probabilities)
