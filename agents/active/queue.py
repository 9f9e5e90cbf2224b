"""What the image-choosing agents share: a queue of chosen images, played a step at a time."""
from __future__ import annotations

import numpy as np

from knockoff_env.core.actions import ImageChoice

from ..base import Agent


class QueueAgent(Agent):
    """Plays the images of its current round, ``queries_per_step`` a step (an
    :class:`~knockoff_env.core.actions.ImageChoice` each); :meth:`next_round` fills the queue
    when it runs dry. The queue and the round count are part of the agent's saved state."""

    def __init__(self, env, seed: int | None = None):
        super().__init__(env, seed)
        self.queue, self.rounds = np.empty(0, np.int64), 0

    def reset(self, seed: int | None = None) -> None:
        super().reset(seed)
        self.queue, self.rounds = np.empty(0, np.int64), 0

    def act(self, obs, info):
        core = self.env.unwrapped
        left = core.budget - core.spent - core.pending
        if len(self.queue) == 0:
            if not core.train_online:  # checked before the first query: nothing is paid in vain
                raise ValueError(f"{type(self).__name__} chooses its images with the online knockoff, but this env "
                                 "trains none (train_online=False, --offline-only); let it train the online knockoff")
            self.queue = np.asarray(self.next_round(left), np.int64)
        n = min(core.queries_per_step, left, len(self.queue))
        step, self.queue = self.queue[:n], self.queue[n:]
        return ImageChoice(step)

    def next_round(self, left: int) -> np.ndarray:
        """The indices of the next round's images, at most ``left``, in the order they are queried."""
        raise NotImplementedError

    def label_probabilities(self, label_ok: np.ndarray | None = None) -> np.ndarray:
        """The labels of the images queued for the next steps (what the policy plots show); before
        the first round, the labels' shares of the images left."""
        qs = self.query_set
        counts = np.bincount([qs.position_of(int(i)) for i in self.queue], minlength=qs.num_labels)
        counts = counts.astype(np.float64) if counts.any() else qs.remaining().astype(np.float64)
        if label_ok is not None:
            counts = counts * label_ok
        return counts / counts.sum() if counts.sum() > 0 else counts

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "queue": self.queue.copy(), "rounds": np.int64(self.rounds)}

    def load_state_dict(self, state) -> None:
        super().load_state_dict(state)
        self.queue = np.asarray(state["queue"], np.int64).copy()
        self.rounds = int(np.asarray(state["rounds"]))
