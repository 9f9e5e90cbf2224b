"""The served victim and what the owner keeps about its clients (the protocol is in
:mod:`knockoff_env.serve`): who a client is (:mod:`.keys`, or its address without keys), its
counts, rate limit, stored answers and detector (:mod:`.store`, :mod:`.monitors`).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..victim.blackbox import BlackBox, VictimOutputError
from ..victim.detectors import Detector, parse_detector
from ..victim.wire import DEFAULT_MAX_BATCH, PURPOSES, REPEAT, decode, encode
from .faults import FAULT_DELAY, RETRY_AFTER
from .keys import Identity, any_keys, digest, identify
from .monitors import Monitors, pack_state
from .rates import TokenBuckets
from .store import StateStore

ANONYMOUS = "anonymous@"  # without keys, a client is its address: "anonymous@127.0.0.1"
ADDRESS = re.compile(r"[0-9A-Fa-f:.]{1,64}")
MIB = 2 ** 20


class ServiceError(Exception):
    """A refusal the server answers with ``status`` and a JSON ``detail`` (and ``headers``)."""

    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


class VictimService:
    """The victim behind the API and the owner's state about each client.

    Args:
        blackbox, input_shape: the victim and the shape of one image.
        max_batch: most images in one request.
        state: the state directory (``DIR/state.db``), a :class:`StateStore`, or None (in memory).
        owner_key: a key with every right, held in memory only (``--api-key-env``, the shorthand).
        trust_proxy: without keys, take a client's address from ``X-Forwarded-For`` (its last
            entry, the one the proxy in front added) instead of the peer's.
        rate_limit: queries per second per client (429 above).
        keep_answers / max_answer_mib: answers kept for repeated request ids, per client and in all.
        live_monitors: detectors kept in memory (the rest wait in the database).
        max_anonymous: distinct addresses served without keys (503 beyond: issue keys instead).
        monitor_eval: whether the detector also sees evaluation queries (default: yes).
        max_abs_pixel: images with larger values are refused (400).
        faults / fault_delay: test faults, see :mod:`.faults`.
        detector: the owner's monitor of each client, a spec (``"prada"``) or a Detector.
        info: what ``/health`` adds about the victim (its world or checkpoint).
        fsync: commit every answer to disk (survives a power loss; slower).
    """

    def __init__(self, blackbox: BlackBox, input_shape: Sequence[int], *, max_batch: int = DEFAULT_MAX_BATCH,
                 state: StateStore | str | Path | None = None, owner_key: str | None = None,
                 trust_proxy: bool = False, rate_limit: float | None = None, keep_answers: int = 256,
                 max_answer_mib: float = 256, live_monitors: int = 64, max_anonymous: int = 1024,
                 monitor_eval: bool = True, max_abs_pixel: float = 1e4,
                 faults: Mapping[str, Mapping[int, str]] | None = None, fault_delay: float = FAULT_DELAY,
                 detector: str | Detector | None = None, info: Mapping | None = None, fsync: bool = False):
        if max_batch < 1 or keep_answers < 1 or max_anonymous < 1:
            raise ValueError("max_batch, keep_answers and max_anonymous must be positive")
        if rate_limit is not None and not rate_limit > 0:
            raise ValueError(f"rate_limit={rate_limit!r} must be a positive number of queries per second")
        if not max_abs_pixel > 0 or not max_answer_mib > 0:
            raise ValueError("max_abs_pixel and max_answer_mib must be positive")
        self.blackbox, self.input_shape = blackbox, tuple(int(s) for s in input_shape)
        if blackbox.num_classes is None:  # learn K from one probe, as the env does; not a charged query
            blackbox(torch.zeros(1, *self.input_shape))
            blackbox.queries = 0
        self.max_batch, self.keep, self.max_answer_bytes = int(max_batch), int(keep_answers), int(max_answer_mib * MIB)
        self.trust_proxy, self.max_anonymous, self.monitor_eval = trust_proxy, int(max_anonymous), monitor_eval
        self.max_abs_pixel, self.rate, self.info = float(max_abs_pixel), rate_limit, dict(info or {})
        self._owner = ((digest(owner_key), Identity("owner", eval=True, owner=True)),) if owner_key else ()
        self.buckets = None if rate_limit is None else TokenBuckets(rate_limit, max(rate_limit, self.max_batch))
        self.faults = {c: dict(plan) for c, plan in (faults or {}).items()}
        self.fault_delay = fault_delay
        template = parse_detector(detector)  # a bad spec is refused before serving
        self.detector = None if template is None else template.spec()
        self.store = state if isinstance(state, StateStore) else StateStore(state, fsync=fsync)
        self.monitors = None if template is None else Monitors(template, self.store, live_monitors)
        self._lock = threading.Lock()  # the victim and the monitors, across the threadpool
        self._check_state()

    def _check_state(self) -> None:
        """A state directory serves the victim and detector it was made with, or none."""
        served = {"num_classes": self.blackbox.num_classes, "input_shape": list(self.input_shape),
                  "output": self.blackbox.output, "defence": self.blackbox.defence.spec() or None,
                  "detector": self.detector, **self.info}
        saved = self.store.meta("service")
        if saved is None:
            self.store.set_meta("service", json.dumps(served, sort_keys=True))
        elif json.loads(saved) != json.loads(json.dumps(served)):
            raise ValueError(f"{self.store.path} keeps the state of another service ({saved}), not of this one "
                             f"({json.dumps(served, sort_keys=True)}): its stored answers and detectors belong to "
                             "that victim — serve it as before, or give this one a new --state folder")

    # --- who is asking -------------------------------------------------------------------------
    @property
    def requires_key(self) -> bool:
        return bool(self._owner) or any_keys(self.store)

    def identify(self, token: str | None) -> Identity | None:
        """The client an API key names (None: no key, a wrong or a revoked one)."""
        return None if not token else identify(self.store, token, self._owner)

    def anonymous(self, address: str) -> Identity:
        """Without keys, the client at ``address``; a bounded number of them."""
        if not ADDRESS.fullmatch(address):
            raise ServiceError(400, f"client address {address[:70]!r} is not an IP address")
        name = ANONYMOUS + address
        if not self.store.known(name) and self.store.count_clients(ANONYMOUS) >= self.max_anonymous:
            raise ServiceError(503, f"this server without API keys serves at most {self.max_anonymous} client "
                                    "addresses; its owner can issue keys (knockoff keys add)")
        return Identity(name, eval=True)

    def usage(self, identity: Identity | None = None) -> dict[str, dict[str, int]]:
        """Every client's counts (the owner, or in-process), else only ``identity``'s own."""
        if identity is None or identity.owner:
            return self.store.usage()
        return self.store.usage(identity.name) or {identity.name: dict.fromkeys(("charged", "eval", "requests",
                                                                                 "repeats"), 0)}

    def alarm(self, client: str) -> int | None:
        """The client's charged queries when the owner's detector raised its alarm."""
        return self.store.alarm(client)

    def health(self) -> dict:
        return {"status": "ok", "num_classes": self.blackbox.num_classes, "input_shape": list(self.input_shape),
                "max_batch": self.max_batch, "output": self.blackbox.output, "auth": self.requires_key,
                "identity": "api key" if self.requires_key else
                            "forwarded address" if self.trust_proxy else "peer address",
                "rate_limit": self.rate, "detector": self.detector,
                "eval_monitored": bool(self.detector) and self.monitor_eval, "max_abs_pixel": self.max_abs_pixel,
                "keep_answers": self.keep, "durable": self.store.path is not None, **self.info}

    # --- one query ---------------------------------------------------------------------------------
    def query(self, identity: Identity, request_id: str, purpose: str, body: bytes) -> tuple[bytes, dict, str | None]:
        """Answer ``POST /query``: (answer body, headers, test fault to apply to it)."""
        if not 1 <= len(request_id) <= 128:
            raise ServiceError(400, "every query needs an X-Request-Id header (1 to 128 characters)")
        if purpose not in PURPOSES:
            raise ServiceError(400, f"X-Purpose {purpose[:40]!r}: use 'attack' or 'eval'")
        if purpose == "eval" and not identity.eval:
            raise ServiceError(403, f"the key of {identity.name!r} may not make evaluation queries; its owner can "
                                    "issue one that may (knockoff keys add NAME --eval)")
        client, images_digest = identity.name, hashlib.sha256(body).hexdigest()
        fault = self.faults.get(client, {}).get(self.store.count(client, "requests"))
        if fault == "500":
            raise ServiceError(500, "injected fault: internal error")
        if fault == "429" or (fault or "").startswith(RETRY_AFTER):
            after = "1" if fault == "429" else fault[len(RETRY_AFTER):]
            raise ServiceError(429, "injected fault: rate limited", {"Retry-After": after})
        answer = self.recall(client, request_id, images_digest)
        headers = {REPEAT: "1"} if answer is not None else {}
        if answer is None:
            images = self.images(body)
            wait = 0.0 if self.buckets is None else self.buckets.wait(client, len(images))
            if wait > 0:
                raise ServiceError(429, f"over the rate limit of {self.rate:g} queries per second",
                                   {"Retry-After": str(max(1, math.ceil(wait)))})  # whole seconds (RFC 9110)
            answer = self.answer(client, request_id, images_digest, images, purpose)
        if fault == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        return answer, headers, fault

    def recall(self, client: str, request_id: str, images_digest: str) -> bytes | None:
        """The kept answer to a repeated request id (not charged again); 409 for other images."""
        stored = self.store.stored(client, request_id)
        if stored is None:
            return None
        if stored[0] != images_digest:
            raise ServiceError(409, f"request id {request_id!r} was already used for other images; "
                                    "use a new id for a new query")
        self.store.count(client, "repeats")
        return stored[1]

    def images(self, body: bytes) -> torch.Tensor:
        """The images of a query body, or a 400/413 saying what is wrong with them."""
        try:
            array = decode("images", body)
        except ValueError as err:
            raise ServiceError(400, str(err)) from None
        if array.ndim < 1 or array.shape[1:] != self.input_shape or array.shape[0] < 1:
            raise ServiceError(400, f"images must have shape (n, {', '.join(map(str, self.input_shape))}) "
                                    f"with n ≥ 1, got {tuple(array.shape)}")
        if array.shape[0] > self.max_batch:
            raise ServiceError(413, f"{array.shape[0]} images in one request; the limit is {self.max_batch} "
                                    "(see /health)")
        if not np.isfinite(array).all():
            raise ServiceError(400, "images hold NaN or infinite values")
        largest = float(np.abs(array).max())
        if largest > self.max_abs_pixel:
            raise ServiceError(400, f"images hold values up to {largest:.3g} in magnitude; this server takes "
                                    f"values within ±{self.max_abs_pixel:g} (the victim's normalised inputs)")
        return torch.from_numpy(array.copy())

    def answer(self, client: str, request_id: str, images_digest: str, images: torch.Tensor, purpose: str) -> bytes:
        """Query the victim, then charge, keep and monitor the answer in one transaction."""
        with self._lock:
            stored = self.recall(client, request_id, images_digest)  # a retry that overtook its first attempt
            if stored is not None:
                return stored
            try:
                probs = self.blackbox(images).detach().cpu().numpy()
            except VictimOutputError as err:
                raise ServiceError(400, f"the victim cannot answer these images ({err.what}); nothing was "
                                        "charged") from None
            body = encode("probs", probs)
            state, alarm_at = self._observe(client, images, probs, purpose)
            try:
                self.store.record(client, request_id, images_digest, body, charged=len(probs) * (purpose == "attack"),
                                  evaluated=len(probs) * (purpose == "eval"), monitor=state, alarm_at=alarm_at,
                                  keep=self.keep, max_bytes=self.max_answer_bytes)
            except BaseException:
                if self.monitors is not None:
                    self.monitors.forget(client)  # it saw a batch that was never charged
                raise
            return body

    def _observe(self, client: str, images: torch.Tensor, probs: np.ndarray, purpose: str):
        """The client's detector after seeing this batch: (its state to save, the alarm if raised now)."""
        if self.monitors is None or (purpose == "eval" and not self.monitor_eval):
            return None, None
        detector = self.monitors.get(client)
        if detector.alarm_at is not None:
            return None, None  # the alarm latches
        index = detector.observe(images, torch.from_numpy(probs))
        alarm_at = None
        if index is not None:  # counted in charged queries, which is what the attacker counts
            charged = self.store.usage(client).get(client, {}).get("charged", 0)
            alarm_at = charged + (index + 1 if purpose == "attack" else 0)
        return pack_state(detector.state_dict()), alarm_at
