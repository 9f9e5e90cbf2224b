"""The FastAPI app in front of a :class:`~.service.VictimService`, and running it with uvicorn."""
import asyncio
import hashlib
import math
import socket
from collections.abc import Mapping

import numpy as np

from ..victim.wire import API_KEY, CLIENT_ID, DETECTED_AT, FORMAT, PURPOSE, PURPOSES, REPEAT, REQUEST_ID, decode, encode
from .service import ServiceError, VictimService


def health_of(service: VictimService, info: Mapping | None = None) -> dict:
    """What ``GET /health`` says: the victim's shape, the limits and the owner's settings."""
    return {"status": "ok", "num_classes": service.blackbox.num_classes, "input_shape": list(service.input_shape),
            "max_batch": service.max_batch, "format": FORMAT, "output": service.blackbox.output,
            "auth": service.requires_key, "rate_limit": service.rate, "detector": service.detector, **(info or {})}


def create_app(service: VictimService, *, info: Mapping | None = None):
    """The FastAPI app serving ``service`` (see :mod:`knockoff_env.serve` for the protocol)."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="knockoff victim", description="A black-box victim classifier, answering per query.")
    health = health_of(service, info)

    @app.exception_handler(ServiceError)
    async def _error(_request, err: ServiceError):
        return JSONResponse({"detail": err.detail}, status_code=err.status, headers=err.headers)

    @app.get("/health")
    async def get_health():
        return health

    @app.get("/usage")
    async def get_usage(request: Request):
        _check_key(service, request)
        return service.usage

    @app.get("/alarm")
    async def get_alarm(request: Request):
        _check_key(service, request)
        return {"detected_at": service.alarm(_client_of(request))}

    @app.post("/query")
    async def query(request: Request):
        return await _answer_query(service, request)

    return app


def _client_of(request) -> str:
    given = request.headers.get(CLIENT_ID)
    if given:
        return given[:128]
    return request.client.host if request.client else "unknown"


def _check_key(service: VictimService, request) -> None:
    if not service.authorised(request.headers.get(API_KEY)):
        raise ServiceError(401, f"missing or wrong {API_KEY}")


async def _answer_query(service: VictimService, request):
    """``POST /query``: check, rate-limit, answer (or recall) and charge one request."""
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import Response

    _check_key(service, request)
    client = _client_of(request)
    request_id = request.headers.get(REQUEST_ID, "")
    if not 1 <= len(request_id) <= 128:
        raise ServiceError(400, f"every query needs an {REQUEST_ID} header (1 to 128 characters)")
    purpose = request.headers.get(PURPOSE, "attack")
    if purpose not in PURPOSES:
        raise ServiceError(400, f"{PURPOSE} {purpose!r}: use 'attack' or 'eval'")
    body = await request.body()
    digest = hashlib.sha256(body).hexdigest()
    fault = service.fault(client)
    if fault == "500":
        raise ServiceError(500, "injected fault: internal error")
    if fault == "429":
        raise ServiceError(429, "injected fault: rate limited", {"Retry-After": "1"})
    answer = service.recall(client, request_id, digest)
    headers = {REPEAT: "1"} if answer is not None else {}
    if answer is None:
        images = service.images(body)
        wait = service.wait_needed(client, len(images))
        if wait > 0:
            raise ServiceError(429, f"over the rate limit of {service.rate:g} queries per second",
                               {"Retry-After": str(max(1, math.ceil(wait)))})
        answer = await run_in_threadpool(service.answer, client, request_id, digest, images, purpose)
    if service.alarm(client) is not None:
        headers[DETECTED_AT] = str(service.alarm(client))
    if fault in ("timeout", "drop", "malformed", "width"):
        return await _faulty(fault, answer, headers, service.fault_delay)
    return Response(answer, media_type="application/octet-stream", headers=headers)


async def _faulty(fault: str, answer: bytes, headers: dict, delay: float):
    """Test faults after the answer was charged: late, cut, malformed or one column too wide."""
    from fastapi.responses import Response

    if fault == "timeout":
        await asyncio.sleep(delay)
    elif fault == "drop":
        return _DroppedResponse(answer)
    elif fault == "malformed":
        return Response(b"not safetensors", media_type="application/octet-stream")
    else:
        probs = decode("probs", answer)
        answer = encode("probs", np.concatenate([probs, np.zeros((len(probs), 1), np.float32)], 1))
    return Response(answer, media_type="application/octet-stream", headers=headers)


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


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (port 0: a free one): clients that connect before the server runs
    wait in its backlog. Created as IPPROTO_TCP, so that asyncio sets TCP_NODELAY on its
    connections: without it, an answer's body waits ~40 ms for a delayed ACK."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def serve_forever(app, sock: socket.socket) -> None:
    """Serve ``app`` (see :func:`create_app`) on ``sock`` with uvicorn until interrupted."""
    import uvicorn

    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
