"""A victim behind HTTP (``knockoff serve`` or any server speaking its protocol) as a BlackBox.

``KnockoffEnv(victim="http://host:port", remote={...})`` or ``knockoff attack --victim-url``
attacks a remote victim; the world keeps its query set and eval set. :class:`RemoteVictim`
keeps one HTTP connection open (httpx), sends batches of up to the server's ``max_batch``
images, retries what can be retried (timeouts, dropped connections and 5xx with
exponential backoff and jitter; 429 after its ``Retry-After``) and stops with a
:class:`RemoteVictimError` naming the request for what cannot (401, a malformed answer,
one of the wrong width). A step whose answer never came spends nothing: the env gives its
images back to their pool.

Request ids make every paid query count once. A retry reuses its request's id, and the
server answers a repeated id from memory without charging it again. Ids are derived from
the run's id (``run_id``, which a durable run keeps in its journal), the number of queries
paid before the request and the images' digest: a resumed run that re-sends the request
whose answer it paid for but never journaled sends the same id, and gets the answer free.

The ledger (:meth:`RemoteVictim.ledger`) counts what the attack paid: queries, requests,
retries, seconds spent waiting on the server and, with ``price_per_query``, the cost.
The API key is read from an environment variable (``api_key_env``), sent only in the
``X-API-Key`` header, and never logged, printed or saved.
"""
from __future__ import annotations

import hashlib
import os
import random
import time
import uuid
from typing import Callable

import numpy as np
import torch
from torch import nn

from .blackbox import BlackBox, VictimOutputError
from .endpoints import register_transport
from .wire import API_KEY, CLIENT_ID, DEFAULT_KEY_ENV, DETECTED_AT, FORMAT, PURPOSE, REPEAT, REQUEST_ID, decode, encode

RETRY_STATUS = (500, 502, 503, 504)


class RemoteVictimError(VictimOutputError):
    """The remote victim refused a request or answered something unusable; retrying won't help."""


class RemoteEvaluationError(ValueError):
    """The remote victim's eval-set answers are needed but neither allowed nor available locally."""


class RemoteVictim(BlackBox):
    """Query-only access to a victim served over HTTP.

    Args:
        url: the server's base URL, e.g. ``"http://127.0.0.1:8000"``.
        api_key_env: environment variable holding the API key (sent when set).
        client_id: the name the server counts this attacker's queries under.
        timeout: seconds to wait for one answer before retrying.
        retries: attempts after the first before a request is given up.
        backoff / max_backoff: the first retry waits about ``backoff`` seconds, doubling
            (with jitter) up to ``max_backoff``.
        price_per_query: what one query costs, for the ledger's ``cost``.
        eval_via_endpoint: let :meth:`evaluation_model` query the endpoint (evaluation
            queries are counted apart from the attack's).
        local_copy: a local model (or callable returning probabilities) of the victim,
            used for evaluation instead of the endpoint.
        run_id: a UUID string naming the run in request ids (a durable run sets its own).
        output / top_k / decimals / device: as :class:`BlackBox` (applied after the server's).
    """

    def __init__(self, url: str, *, api_key_env: str = DEFAULT_KEY_ENV, client_id: str | None = None,
                 timeout: float = 10.0, retries: int = 6, backoff: float = 0.25, max_backoff: float = 8.0,
                 price_per_query: float | None = None, eval_via_endpoint: bool = False,
                 local_copy: nn.Module | Callable | None = None, run_id: str | None = None,
                 output: str = "probs", top_k: int = 1, decimals: int = 2, device: str | torch.device = "auto"):
        import httpx

        if not str(url).startswith(("http://", "https://")):
            raise ValueError(f"victim URL {url!r} must start with http:// or https://")
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ValueError("timeout must be positive, retries and backoff not negative")
        self.url, self.timeout, self.retries = str(url).rstrip("/"), float(timeout), int(retries)
        self.backoff, self.max_backoff = float(backoff), float(max_backoff)
        self.price_per_query, self.eval_via_endpoint, self.local_copy = price_per_query, eval_via_endpoint, local_copy
        self.client_id = client_id
        self.run_id = uuid.UUID(run_id) if run_id else uuid.uuid4()
        headers = {CLIENT_ID: client_id} if client_id else {}
        key = os.environ.get(api_key_env) if api_key_env else None
        if key:
            headers[API_KEY] = key
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=self.timeout)
        self._paid = {"eval_queries": 0, "requests": 0, "retries": 0, "repeats": 0, "seconds_waiting": 0.0}
        health = self._health()
        self.input_shape, self.max_batch = tuple(health["input_shape"]), int(health["max_batch"])
        self.server_detector = health.get("detector")  # the owner's monitor of this client, if any
        self.server_alarm = self._http.get("/alarm").json()["detected_at"] if self.server_detector else None
        super().__init__(self._request, num_classes=int(health["num_classes"]), output=output, top_k=top_k,
                         decimals=decimals, returns="probs", device=device, batch_size=self.max_batch)
        self._offset = 0
        self.last_requests: list[uuid.UUID] = []  # the ids of the last call's requests, in order

    def _health(self) -> dict:
        import httpx

        try:
            response = self._http.get("/health")
        except httpx.HTTPError as err:
            raise ConnectionError(f"cannot reach the victim at {self.url} ({type(err).__name__}: {err}); "
                                  "is `knockoff serve` running there?") from None
        if response.status_code != 200:
            raise ConnectionError(f"{self.url}/health answered {response.status_code}: {response.text[:200]}")
        health = response.json()
        missing = [k for k in ("num_classes", "input_shape", "max_batch") if k not in health]
        if missing or health.get("format", FORMAT) != FORMAT:
            raise ConnectionError(f"{self.url}/health is not a knockoff victim server's (missing {missing})")
        return health

    # --- queries ------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        self._offset = self.queries  # request ids count from the queries paid before this call
        self.last_requests = []
        return super().__call__(images, check_finite)

    def request_id(self, offset: int, payload: bytes) -> uuid.UUID:
        """The id of the request of the images in ``payload``, sent after ``offset`` paid queries."""
        return uuid.uuid5(self.run_id, f"{offset}:{hashlib.sha256(payload).hexdigest()}")

    def _request(self, images: torch.Tensor) -> np.ndarray:
        payload = encode("images", images.detach().cpu().numpy())
        request = self.request_id(self._offset, payload)
        self.last_requests.append(request)
        self._offset += len(images)
        return self._post(payload, str(request), len(images), "attack")

    def _post(self, payload: bytes, request: str, n: int, purpose: str) -> np.ndarray:
        """Send one request, retrying what can be retried; the validated (n, K) answer."""
        import httpx

        start = time.perf_counter()
        try:
            for attempt in range(self.retries + 1):
                self._paid["requests"] += 1
                self._paid["retries"] += attempt > 0
                try:
                    response = self._http.post("/query", content=payload, headers={
                        REQUEST_ID: request, PURPOSE: purpose, "Content-Type": "application/octet-stream"})
                except (httpx.TimeoutException, httpx.TransportError) as err:
                    failure = f"{type(err).__name__}: {err or 'no answer'}"
                    time.sleep(self._backoff(attempt))
                    continue
                if response.status_code == 200:
                    if DETECTED_AT in response.headers:
                        self.server_alarm = int(response.headers[DETECTED_AT])
                    self._paid["repeats"] += response.headers.get(REPEAT) == "1"
                    return self._validate(response.content, request, n)
                if response.status_code == 429:
                    failure = "429 rate limited"
                    time.sleep(self._retry_after(response, attempt))
                    continue
                if response.status_code in RETRY_STATUS:
                    failure = f"{response.status_code} {_detail(response)}"
                    time.sleep(self._backoff(attempt))
                    continue
                if response.status_code in (401, 403):
                    raise RemoteVictimError(
                        f"request {request}: {self.url} refused the API key ({response.status_code}); set the "
                        "environment variable named by api_key_env (--api-key-env) to the server's key")
                raise RemoteVictimError(f"request {request}: {self.url} answered {response.status_code}: "
                                        f"{_detail(response)}")
            raise RemoteVictimError(f"request {request}: no answer from {self.url} after {self.retries + 1} "
                                    f"attempts (last: {failure}); nothing was spent, the step can be retried")
        finally:
            self._paid["seconds_waiting"] += time.perf_counter() - start

    def _validate(self, body: bytes, request: str, n: int) -> np.ndarray:
        try:
            probs = decode("probs", body)
        except ValueError as err:
            raise RemoteVictimError(f"request {request}: the answer from {self.url} is malformed: {err}") from None
        if probs.shape != (n, self.num_classes):
            raise RemoteVictimError(f"request {request}: the answer from {self.url} has shape {probs.shape}, "
                                    f"expected ({n}, {self.num_classes}) (num_classes from /health)")
        if not np.isfinite(probs).all():
            raise RemoteVictimError(f"request {request}: the answer from {self.url} holds NaN or infinite values")
        return probs

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: about backoff·2^attempt, drawn from its upper half."""
        ceiling = min(self.max_backoff, self.backoff * 2 ** attempt)
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _retry_after(self, response, attempt: int) -> float:
        try:
            return max(0.0, float(response.headers["retry-after"]))
        except (KeyError, ValueError):
            return self._backoff(attempt)

    def new_detector(self):
        """The server's detector, as its answers report it (None when it runs none)."""
        from .detectors.server import ServerAlarm

        return ServerAlarm(self) if self.server_detector else None

    # --- evaluation, ledger ---------------------------------------------------------------
    def evaluation_model(self) -> nn.Module | Callable:
        """What evaluation queries: the local copy if given, else the endpoint if allowed."""
        if self.local_copy is not None:
            return self.local_copy
        if self.eval_via_endpoint:
            return self._evaluate
        raise RemoteEvaluationError(f"evaluating against the remote victim {self.url} needs its answers on the eval set: "
                           "allow evaluation queries through the endpoint (remote={'eval_via_endpoint': True}, "
                           "--eval-via-endpoint; counted apart from the attack's queries) or give a local copy "
                           "(remote={'local_copy': model})")

    def _evaluate(self, images: torch.Tensor) -> torch.Tensor:
        chunks = []
        for i in range(0, len(images), self.max_batch):
            batch = images[i:i + self.max_batch]
            payload = encode("images", batch.detach().cpu().numpy())
            chunk = self._post(payload, f"eval-{uuid.uuid4()}", len(batch), "eval")
            self._paid["eval_queries"] += len(chunk)
            chunks.append(torch.from_numpy(chunk))
        return torch.cat(chunks)

    def ledger(self) -> dict:
        """What the attack paid: ``queries`` (the whole run's, a resumed one's included), and this
        process's ``eval_queries``, ``requests``, ``retries``, ``repeats`` (answers the server gave
        again for free) and ``seconds_waiting``; with a price, ``cost`` and ``eval_cost``."""
        ledger = {"queries": self.queries, **self._paid, "seconds_waiting": round(self._paid["seconds_waiting"], 3),
                  "price_per_query": self.price_per_query}
        if self.price_per_query is not None:
            ledger["cost"] = self.price_per_query * ledger["queries"]
            ledger["eval_cost"] = self.price_per_query * ledger["eval_queries"]
        return ledger

    def usage(self) -> dict:
        """The server's own count of this client's queries (``GET /usage``)."""
        response = self._http.get("/usage")
        response.raise_for_status()
        return response.json().get(self.client_id or "", {})

    def close(self) -> None:
        self._http.close()


def _detail(response) -> str:
    try:
        return str(response.json().get("detail", ""))[:300]
    except ValueError:
        return response.text[:300]


register_transport(("http", "https"), RemoteVictim)
