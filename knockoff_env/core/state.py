"""The env's episode as named tensors and arrays, for checkpoints: pools, RNGs, the knockoff,
rewards, counters, the detector and (unless a journal holds it) the transfer set."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..durability.checkpoint import load_checkpoint, save_checkpoint, text_tensor


class EpisodeState:
    """What :class:`~knockoff_env.KnockoffEnv` saves and restores; the env provides the parts."""

    def durable_config(self) -> dict[str, Any]:
        """What a checkpoint of this env must agree with to be loaded into it."""
        return {"budget": self.budget, "queries_per_step": self.queries_per_step,
                "num_classes": self.num_classes, "query_set_size": len(self.query_set),
                "labels": self.query_set.label_ids.tolist(), "action_mode": self.action_mode,
                "reward": self.reward_weights, "diversity_window": self.rewards.window,
                "train_online": self.train_online, **self._monitoring_config(),
                **({} if self.query_set.pools == "whole" else {"pools": self.query_set.pools})}  # see .shuffle

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
        """Checkpoint the episode to ``path`` (tensors only; atomic; see :mod:`~knockoff_env.durability.checkpoint`)."""
        save_checkpoint(path, self.state_dict(), self.durable_config())

    def load(self, path) -> None:
        """Continue the episode saved by :meth:`save`; refuses a damaged file or another env's."""
        self.load_state_dict(load_checkpoint(path, self.durable_config()))

    def observe(self) -> tuple[np.ndarray, dict[str, Any]]:
        """The current observation and info, as :meth:`reset` returns them (e.g. after :meth:`load`)."""
        remaining = self.query_set.remaining()
        return self._observation(remaining), self._info(remaining)
