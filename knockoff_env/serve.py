"""``knockoff serve``: a victim behind HTTP, as a deployed model an attacker pays per query.

:func:`create_app` puts a :class:`~knockoff_env.victim.BlackBox` (a world's victim with the
world's output mode and, through the world's options, any defence it applies) behind a
FastAPI app; ``knockoff serve`` builds it from a registered env id and runs it with uvicorn.

Protocol (payloads are safetensors, a data format: no pickles, no JSON lists of floats):

* ``GET /health`` → ``{"num_classes", "input_shape", "max_batch", "format", "output", ...}``.
* ``POST /query`` with a safetensors body holding ``images`` (float32, ``(n, *input_shape)``,
  1 ≤ n ≤ max_batch) and the headers ``X-Request-Id`` (required), ``X-Client-Id`` (whose
  count it is; default the peer's address), ``X-Purpose`` (``attack`` or ``eval``: evaluation
  queries are counted apart and not charged) and ``X-API-Key`` (when the server has a key).
  The answer is a safetensors body holding ``probs`` (float32, ``(n, num_classes)``).
  A request id answered before is answered again from memory, not charged again (the
  server keeps the last ``keep_answers`` answers); the same id with other images is 409.
* ``GET /usage`` → ``{client: {"charged", "eval", "requests", "repeats"}}``: the server's
  own count of the queries it charged each client.
* With a ``detector`` (``--detector prada``) the owner monitors each client's attack queries;
  once it fires, every answer to that client carries ``X-Detected-At`` (the client's charged
  queries at the alarm), and ``GET /alarm`` → ``{"detected_at"}`` tells a resumed client.

Errors: 401 (missing or wrong key), 400 (a body that is not the images described above),
409 (a reused request id), 413 (more than max_batch images), 429 with ``Retry-After``
(the client is over its rate limit of queries per second).

``faults`` (``--inject-faults``) is **for tests only**: it makes chosen requests of chosen
clients fail the way networks and servers fail, so the client's retries can be tested
against a real server (see :data:`FAULTS`).
"""
import argparse
import asyncio
import copy
import hashlib
import hmac
import json
import math
import os
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from .detectors import Detector, parse_detector
from .victim import BlackBox

FORMAT = "safetensors"
DEFAULT_KEY_ENV = "KNOCKOFF_API_KEY"
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


def encode(name: str, array: np.ndarray) -> bytes:
    from safetensors.numpy import save
    return save({name: np.ascontiguousarray(array, np.float32)})


def decode(name: str, body: bytes) -> np.ndarray:
    """The float32 array ``name`` of a safetensors body; ValueError for anything else."""
    from safetensors.numpy import load
    try:
        tensors = load(body)
    except Exception as err:  # noqa: BLE001 - any parse failure is one kind of bad body
        raise ValueError(f"the body is not safetensors ({type(err).__name__}: {str(err)[:120]})") from None
    if set(tensors) != {name}:
        raise ValueError(f"the body must hold exactly one tensor named {name!r}, it holds {sorted(tensors)}")
    array = tensors[name]
    if array.dtype != np.float32:
        raise ValueError(f"{name!r} must be float32, got {array.dtype}")
    return array


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

    def __init__(self, blackbox: BlackBox, input_shape: Sequence[int], *, max_batch: int = 256,
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
    def __init__(self, status: int, detail: str, headers: dict | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def create_app(service: VictimService, *, info: Mapping | None = None):
    """The FastAPI app serving ``service`` (see the module docstring for the protocol)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response

    app = FastAPI(title="knockoff victim", description="A black-box victim classifier, answering per query.")
    health = {"status": "ok", "num_classes": service.blackbox.num_classes, "input_shape": list(service.input_shape),
              "max_batch": service.max_batch, "format": FORMAT, "output": service.blackbox.output,
              "auth": service.requires_key, "rate_limit": service.rate, "detector": service.detector,
              **(info or {})}

    @app.exception_handler(ServiceError)
    async def _error(_request, err: ServiceError):
        return JSONResponse({"detail": err.detail}, status_code=err.status, headers=err.headers)

    def client_of(request: Request) -> str:
        given = request.headers.get("x-client-id")
        if given:
            return given[:128]
        return request.client.host if request.client else "unknown"

    def check_key(request: Request) -> None:
        if not service.authorised(request.headers.get("x-api-key")):
            raise ServiceError(401, "missing or wrong X-API-Key")

    @app.get("/health")
    async def get_health():
        return health

    @app.get("/usage")
    async def get_usage(request: Request):
        check_key(request)
        return service.usage

    @app.get("/alarm")
    async def get_alarm(request: Request):
        check_key(request)
        return {"detected_at": service.alarm(client_of(request))}

    @app.post("/query")
    async def query(request: Request):
        check_key(request)
        client = client_of(request)
        request_id = request.headers.get("x-request-id", "")
        if not 1 <= len(request_id) <= 128:
            raise ServiceError(400, "every query needs an X-Request-Id header (1 to 128 characters)")
        purpose = request.headers.get("x-purpose", "attack")
        if purpose not in ("attack", "eval"):
            raise ServiceError(400, f"X-Purpose {purpose!r}: use 'attack' or 'eval'")
        body = await request.body()
        digest = hashlib.sha256(body).hexdigest()
        fault = service.fault(client)
        if fault == "500":
            raise ServiceError(500, "injected fault: internal error")
        if fault == "429":
            raise ServiceError(429, "injected fault: rate limited", {"Retry-After": "1"})
        answer = service.recall(client, request_id, digest)
        headers = {"X-Repeat": "1"} if answer is not None else {}
        if answer is None:
            images = service.images(body)
            wait = service.wait_needed(client, len(images))
            if wait > 0:
                raise ServiceError(429, f"over the rate limit of {service.rate:g} queries per second",
                                   {"Retry-After": str(max(1, math.ceil(wait)))})
            answer = await run_in_threadpool(service.answer, client, request_id, digest, images, purpose)
        if fault == "timeout":
            await asyncio.sleep(service.fault_delay)
        elif fault == "drop":
            return _DroppedResponse(answer)
        elif fault == "malformed":
            return Response(b"not safetensors", media_type="application/octet-stream")
        elif fault == "width":
            from .remote import decode_answer  # noqa: PLC0415 - the same decoder the client uses
            probs = decode_answer(answer)
            answer = encode("probs", np.concatenate([probs, np.zeros((len(probs), 1), np.float32)], 1))
        if service.alarm(client) is not None:
            headers["X-Detected-At"] = str(service.alarm(client))
        return Response(answer, media_type="application/octet-stream", headers=headers)

    return app


class _DroppedResponse:
    """Test fault: starts the answer, sends half of it and cuts the connection."""

    def __init__(self, body: bytes):
        self.body = body

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(self.body)).encode()),
                                (b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": self.body[:len(self.body) // 2], "more_body": True})
        raise ConnectionAbortedError("injected fault: connection dropped mid-answer")


# --- the `knockoff serve` subcommand ------------------------------------------------------
def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from .cli import _env_arg

    p = subparsers.add_parser(
        "serve", help="serve a world's victim (or a victim checkpoint) over HTTP",
        description="Serve the victim of a registered world (with the world's output mode and defences) or "
                    "of a victim checkpoint over HTTP; attack it with `knockoff attack --victim-url URL`.")
    p.add_argument("--env", default="Knockoff-Digits-v0", help="registered env id whose victim is served")
    p.add_argument("--env-arg", type=_env_arg, action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the world, as for `knockoff attack` (repeatable)")
    p.add_argument("--output", choices=("probs", "top_k", "rounded", "label"), help="victim output mode")
    p.add_argument("--top-k", type=int)
    p.add_argument("--decimals", type=int)
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda…")
    p.add_argument("--defence", help="applied to every answer before it leaves the server, as for "
                                     "`knockoff attack --defence`, e.g. mad:eps=0.5")
    p.add_argument("--detector", help="the owner's monitor of each client's queries, e.g. prada; answers carry "
                                      "X-Detected-At once it fires (the attacking env ends or flags the episode)")
    p.add_argument("--victim-checkpoint", help="serve this checkpoint of `knockoff train-victim` instead of --env")
    p.add_argument("--input-shape", help="C,H,W of the checkpoint's images (default: 3,S,S; 1,S,S for MNIST)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--max-batch", type=int, default=256, help="most images in one request")
    p.add_argument("--api-key-env", metavar="NAME",
                   help=f"require the key held in environment variable NAME (e.g. {DEFAULT_KEY_ENV})")
    p.add_argument("--rate-limit", type=float, metavar="QPS", help="queries per second per client (429 above)")
    p.add_argument("--keep-answers", type=int, default=4096, help="recent answers kept for repeated request ids")
    p.add_argument("--inject-faults", metavar="JSON", help="FOR TESTS ONLY: {client: {request number: fault}} "
                                                          f"with faults {sorted(FAULTS)}")
    p.add_argument("--fault-delay", type=float, default=FAULT_DELAY, help="FOR TESTS ONLY: a 'timeout' fault's delay")
    p.set_defaults(func=serve)


def world_victim(args) -> tuple[BlackBox, tuple[int, ...], dict]:
    """The BlackBox to serve, its input shape and what /health says about it."""
    options = {k: v for k, v in (("output", args.output), ("top_k", args.top_k), ("decimals", args.decimals),
                                 ("device", args.device), ("defence", args.defence)) if v is not None}
    if args.victim_checkpoint:
        from .victim_training import load_victim
        model, meta = load_victim(args.victim_checkpoint)
        if args.input_shape:
            shape = tuple(int(s) for s in args.input_shape.split(","))
        else:
            shape = (1 if meta["dataset"] == "mnist" else 3, meta["image_size"], meta["image_size"])
        return BlackBox(model, num_classes=int(meta["num_classes"]), **options), shape, {
            "victim": os.path.basename(args.victim_checkpoint), "dataset": meta["dataset"]}
    import gymnasium as gym

    import knockoff_env  # noqa: F401  (registers the ids)
    options.update(dict(args.env_arg))
    world = gym.make(args.env, **options).unwrapped
    shape = tuple(world.query_set.fetch(np.zeros(1, np.int64)).shape[1:])
    return world.victim, shape, {"world": args.env}


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket (port 0: a free one). Created as IPPROTO_TCP, so that asyncio sets
    TCP_NODELAY on its connections: without it, an answer's body waits ~40 ms for a delayed ACK."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve(args) -> int:
    import uvicorn

    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ValueError(f"--api-key-env {args.api_key_env}: that environment variable is empty or unset")
    blackbox, shape, info = world_victim(args)
    service = VictimService(blackbox, shape, max_batch=args.max_batch, api_key=key, rate_limit=args.rate_limit,
                            keep_answers=args.keep_answers, faults=parse_faults(args.inject_faults),
                            fault_delay=args.fault_delay, detector=args.detector)
    app = create_app(service, info=info)
    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"serving {info.get('world') or info.get('victim')} ({blackbox.num_classes} classes, input "
          f"{shape}, max batch {args.max_batch}) on http://{host}:{port}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0
