"""The owner's detector, one per client: at most ``live`` in memory, every one in the database.

A client's detector is made from the server's template on its first monitored query, kept in a
least-recently-used set of ``live`` detectors and, after every batch it observes, saved as its
``state_dict`` (arrays in an ``.npz`` blob, no pickles) with the answer in the same transaction
(:meth:`.store.StateStore.record`). One evicted, or lost with the process, is restored from its
saved state when its client comes back: the alarm and everything the detector learnt survive.
"""
from __future__ import annotations

import copy
import io
from collections import OrderedDict

import numpy as np
import torch

from ..victim.detectors import Detector
from .store import StateStore


def pack_state(state: dict) -> bytes:
    """A detector's ``state_dict`` as an uncompressed ``.npz`` blob."""
    arrays = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in state.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def unpack_state(blob: bytes) -> dict:
    with np.load(io.BytesIO(blob), allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


class Monitors:
    """Live detectors by client, restored from ``store`` on demand."""

    def __init__(self, template: Detector, store: StateStore, live: int = 64):
        if live < 1:
            raise ValueError(f"live={live!r}: keep at least one detector in memory")
        self.template, self.store, self.live = template, store, int(live)
        self._live: OrderedDict[str, Detector] = OrderedDict()

    def __len__(self) -> int:
        return len(self._live)

    def get(self, client: str) -> Detector:
        """``client``'s detector, as it was after the last batch it observed."""
        detector = self._live.get(client)
        if detector is None:
            detector = copy.deepcopy(self.template)
            detector.reset()
            saved = self.store.monitor(client)
            if saved is not None:
                detector.load_state_dict(unpack_state(saved))
            self._live[client] = detector
            while len(self._live) > self.live:
                self._live.popitem(last=False)
        self._live.move_to_end(client)
        return detector

    def forget(self, client: str) -> None:
        """Drop the live copy (its last saved state is what counts, e.g. after a failed write)."""
        self._live.pop(client, None)
