"""The FastAPI app in front of a :class:`~.service.VictimService`, and running it with uvicorn."""
import asyncio
import socket

import numpy as np

from ..victim.wire import AUTHORIZATION, DETECTED_AT, FORMAT, PURPOSE, REQUEST_ID, bearer_token, decode, encode
from .keys import Identity
from .limits import BoundedBodies, Limits, body_limit, protocol
from .service import ServiceError, VictimService


def create_app(service: VictimService, *, limits: Limits | None = None):
    """The FastAPI app serving ``service`` (see :mod:`knockoff_env.serve` for the protocol), its
    bodies bounded by ``limits`` (default: ``max_batch`` images and the default timeouts)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse, Response

    limits = limits or Limits(max_body_bytes=body_limit(service.max_batch, service.input_shape))
    app = FastAPI(title="knockoff victim", description="A black-box victim classifier, answering per query.")
    app.state.limits = limits

    @app.exception_handler(ServiceError)
    async def _error(_request, err: ServiceError):
        return JSONResponse({"detail": err.detail}, status_code=err.status, headers=err.headers)

    @app.get("/health")
    async def get_health():
        return {**service.health(), "format": FORMAT, "limits": limits.public()}

    @app.get("/whoami")
    async def get_whoami(request: Request):
        identity = await run_in_threadpool(client_of, service, request)
        return {"client": identity.name, "eval": identity.eval, "owner": identity.owner}

    @app.get("/usage")
    async def get_usage(request: Request):
        identity = await run_in_threadpool(client_of, service, request)
        return await run_in_threadpool(service.usage, identity)

    @app.get("/alarm")
    async def get_alarm(request: Request):
        identity = await run_in_threadpool(client_of, service, request)
        return {"client": identity.name, "detected_at": await run_in_threadpool(service.alarm, identity.name)}

    @app.post("/query")
    async def query(request: Request):
        body = await request.body()  # read within the limits by BoundedBodies
        answer, headers, fault = await run_in_threadpool(_answer, service, request, body)
        if fault in ("timeout", "drop", "malformed", "width"):
            return await _faulty(fault, answer, headers, service.fault_delay)
        return Response(answer, media_type="application/octet-stream", headers=headers)

    app.add_middleware(BoundedBodies, limits=limits)
    return app


def client_of(service: VictimService, request) -> Identity:
    """Who sent ``request``: the owner of its API key, or (without keys) its address. Headers the
    client chooses (X-Client-Id, X-Forwarded-For) never name it; X-Forwarded-For only with
    ``trust_proxy``, where the proxy in front of the server adds the last entry."""
    if service.requires_key:
        identity = service.identify(bearer_token(request.headers.get(AUTHORIZATION)))
        if identity is None:
            raise ServiceError(401, "missing, wrong or revoked API key: send it as 'Authorization: Bearer KEY' "
                                    "(the owner issues keys with `knockoff keys add NAME`)",
                               {"WWW-Authenticate": "Bearer"})
        return identity
    forwarded = request.headers.get("x-forwarded-for") if service.trust_proxy else None
    address = forwarded.split(",")[-1].strip() if forwarded else (request.client.host if request.client else "")
    return service.anonymous(address)


def _answer(service: VictimService, request, body: bytes):
    identity = client_of(service, request)
    answer, headers, fault = service.query(identity, request.headers.get(REQUEST_ID, ""),
                                           request.headers.get(PURPOSE, "attack"), body)
    alarm = service.alarm(identity.name)
    if alarm is not None:
        headers[DETECTED_AT] = str(alarm)
    return answer, headers, fault


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


def server(app, limits: Limits | None = None):
    """A uvicorn server for ``app`` (see :func:`create_app`) that enforces its limits."""
    import uvicorn

    limits = limits or app.state.limits
    return uvicorn.Server(uvicorn.Config(  # proxy_headers=False: uvicorn would take X-Forwarded-For from loopback
        app, log_level="warning", http=protocol(limits.header_timeout), timeout_keep_alive=limits.keep_alive,
        h11_max_incomplete_event_size=limits.max_header_bytes, limit_concurrency=limits.max_connections,
        proxy_headers=False, server_header=False))


def serve_forever(app, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` with uvicorn until interrupted."""
    server(app).run(sockets=[sock])
