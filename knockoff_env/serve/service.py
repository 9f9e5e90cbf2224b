"""The served victim's state: the victim, per-client counts and rate limits, recent answers
and the owner's detector per client (the protocol is in :mod:`knockoff_env.serve`).

``faults`` are **for tests only**: they make chosen requests of chosen clients fail the way
networks and servers fail, so the client's retries can be tested against a real server.
"""
import copy
import hmac
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..victim.blackbox import BlackBox
from ..victim.detectors import Detector, parse_detector
from ..victim.wire import DEFAULT_MAX_BATCH, decode, encode

# test-only faults: what the n-th request of a client gets instead of a normal answer
FAULTS = {
    "500": "a 500 error before answering (nothing charged)",
    "429": "a 429 with Retry-After: 1 before answering (nothing charged)",
    "timeout": "charged and answered, but the answer is held back past the client's timeout",
    "drop": "charged and answered, but the connection is cut halfway through the answer",
    "malformed": "charged, but the body is not safetensors",
    "width": "charged, but the answer has num_classes + 1 columns",
}
FAULT_DELAY = 3.0  # seconds a "timeout" fault holds its answer back



def parse_faults(text: str | None) -> dict[str, dict[int, str]]:
    """``{"client": {"n": "kind", ...}, ...}`` (JSON) → ``{client: {n: kind}}``; test-only."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
        faults = {str(c): {int(n): str(k) for n, k in plan.items()} for c, plan in raw.items()}
    except (ValueError, AttributeError, TypeError) as err:
        raise ValueError(f"--inject-faults {text!r}: expected JSON {{client: {{request number: kind}}}} "
                         f"({err})") from None
    unknown = {k for plan in faults.values() for k in plan.values()} - set(FAULTS)
    if unknown:
        raise ValueError(f"--inject-faults: unknown fault kinds {sorted(unknown)}; choose from {sorted(FAULTS)}")
    return faults


class VictimService:
    """The server's state: the victim, per-client counts and token buckets, recent answers."""

    def __init__(self, blackbox: BlackBox, input_shape: Sequence[int], *, max_batch: int = DEFAULT_MAX_BATCH,
                 api_key: str | None = None, rate_limit: float | None = None, keep_answers: int = 4096,
                 faults: Mapping[str, Mapping[int, str]] | None = None, fault_delay: float = FAULT_DELAY,
                 detector: str | Detector | None = None):
        if max_batch < 1 or keep_answers < 1:
            raise ValueError("max_batch and keep_answers must be positive")
        if rate_limit is not None and rate_limit <= 0:
            raise ValueError(f"rate_limit={rate_limit!r} must be a positive number of queries per second")
        self.blackbox, self.input_shape = blackbox, tuple(int(s) for s in input_shape)
        if blackbox.num_classes is None:  # learn K from one probe, as the env does; not a charged query
            blackbox(torch.zeros(1, *self.input_shape))
            blackbox.queries = 0
        self.max_batch, self.keep = int(max_batch), int(keep_answers)
        self._key = api_key.encode() if api_key else None
        self.rate = rate_limit
        self.faults = {c: dict(plan) for c, plan in (faults or {}).items()}
        self.fault_delay = fault_delay
        self.usage: dict[str, dict[str, int]] = {}
        self.answers: OrderedDict[tuple[str, str], tuple[str, bytes]] = OrderedDict()
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()  # the victim and the counts, across the threadpool
        template = parse_detector(detector)  # a bad spec is refused before serving
        self.detector = None if template is None else template.spec()
        self._template = template  # the owner's monitor: a copy per client, over its attack queries
        self.monitors: dict[str, Detector] = {}

    @property
    def requires_key(self) -> bool:
        return self._key is not None

    def authorised(self, key: str | None) -> bool:
        return self._key is None or (key is not None and hmac.compare_digest(key.encode(), self._key))

    def count(self, client: str) -> dict[str, int]:
        return self.usage.setdefault(client, {"charged": 0, "eval": 0, "requests": 0, "repeats": 0})

    def fault(self, client: str) -> str | None:
        """Count the client's request; the test fault scheduled for it, if any."""
        counts = self.count(client)
        counts["requests"] += 1
        return self.faults.get(client, {}).get(counts["requests"])

    def recall(self, client: str, request_id: str, digest: str) -> bytes | None:
        """The stored answer to a repeated request id (not charged again); 409 on other images."""
        stored = self.answers.get((client, request_id))
        if stored is None:
            return None
        if stored[0] != digest:
            raise ServiceError(409, f"request id {request_id!r} was already used for other images; "
                                    "use a new id for a new query")
        self.count(client)["repeats"] += 1
        return stored[1]

    def alarm(self, client: str) -> int | None:
        """The client's attack queries counted when the owner's detector raised its alarm."""
        monitor = self.monitors.get(client)
        return None if monitor is None else monitor.alarm_at

    def wait_needed(self, client: str, n: int) -> float:
        """Seconds until ``client`` may send ``n`` more queries (token bucket); 0 takes them now."""
        if self.rate is None:
            return 0.0
        capacity = max(self.rate, self.max_batch)
        now = time.monotonic()
        tokens, last = self._buckets.get(client, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * self.rate)
        if tokens < n:
            self._buckets[client] = (tokens, now)
            return (n - tokens) / self.rate
        self._buckets[client] = (tokens - n, now)
        return 0.0

    def images(self, body: bytes) -> torch.Tensor:
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
        return torch.from_numpy(array.copy())

    def answer(self, client: str, request_id: str, digest: str, images: torch.Tensor, purpose: str) -> bytes:
        """Query the victim, charge the client (attack queries) and keep the answer by id."""
        with self._lock:
            stored = self.recall(client, request_id, digest)  # a retry that overtook its first attempt
            if stored is not None:
                return stored
            probs = self.blackbox(images).detach().cpu().numpy()
            body = encode("probs", probs)
            self.count(client)["charged" if purpose == "attack" else "eval"] += len(probs)
            if purpose == "attack" and self._template is not None:
                monitor = self.monitors.setdefault(client, copy.deepcopy(self._template))
                if monitor.alarm_at is None:
                    monitor.observe(images, torch.from_numpy(probs))
            self.answers[(client, request_id)] = (digest, body)
            while len(self.answers) > self.keep:
                self.answers.popitem(last=False)
            return body


class ServiceError(Exception):
    """A refusal the server answers with ``status`` and a JSON ``detail`` (and ``headers``)."""

    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}
