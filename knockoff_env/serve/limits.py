"""Bounded requests: no body read past the batch limit, no connection held by a client that stalls.

* :class:`BoundedBodies` (ASGI middleware) refuses a body whose ``Content-Length`` exceeds
  ``max_body_bytes`` with a 413 before reading a byte of it, counts the bytes of a body without
  one (chunked) as they arrive and refuses it once over, and answers 408 to a body that has not
  arrived in full within ``body_timeout`` seconds. Refusals close the connection.
* :func:`protocol` is uvicorn's h11 protocol with a deadline for the request's headers: a
  connection that has not sent complete headers ``header_timeout`` seconds after it opened (or
  after its last answer) is closed. h11 bounds the headers' size (``max_header_bytes``); uvicorn
  closes idle kept-alive connections after ``keep_alive`` seconds and answers 503 above
  ``max_connections``.

``GET /health`` reports these limits (:meth:`Limits.public`).
"""
from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

HEADER_SLACK = 4096  # the safetensors header of an images body, with room to spare


def body_limit(max_batch: int, input_shape: Sequence[int]) -> int:
    """The largest body a query of ``max_batch`` float32 images of ``input_shape`` needs."""
    return int(max_batch) * math.prod(int(s) for s in input_shape) * 4 + HEADER_SLACK


@dataclass(frozen=True)
class Limits:
    """What the server accepts from one connection (seconds and bytes)."""

    max_body_bytes: int
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    keep_alive: float = 5.0
    max_header_bytes: int = 16384
    max_connections: int = 1024

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a positive finite number")

    def public(self) -> dict:
        return asdict(self)


class BoundedBodies:
    """ASGI middleware: read the request's body within the limits, then hand it to ``app``."""

    def __init__(self, app, limits: Limits):
        self.app, self.limits = app, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limits.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await refuse(send, 400, f"Content-Length {declared[:40]!r} is not a number of bytes")
            if int(declared) > limit:
                return await refuse(send, 413, f"a body of {int(declared)} bytes is over this server's limit of "
                                               f"{limit} bytes (max_batch images; see /health)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.body_timeout
        chunks, size, more = [], 0, True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return await refuse(send, 408, f"the body did not arrive within {self.limits.body_timeout:g} s")
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return await refuse(send, 413, f"the body is over this server's limit of {limit} bytes "
                                               "(max_batch images; see /health)")
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


async def refuse(send, status: int, detail: str) -> None:
    """A JSON error that closes the connection (what is left of the body is never read)."""
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def protocol(header_timeout: float):
    """uvicorn's h11 protocol, closing connections whose request headers are overdue."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadline(H11Protocol):
        _timer = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def on_response_complete(self):
            super().on_response_complete()
            self._arm()

        def connection_lost(self, exc):
            if self._timer is not None:
                self._timer.cancel()
            super().connection_lost(exc)

        def _arm(self):
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self.loop.call_later(header_timeout, self._overdue)

        def _overdue(self):
            waiting = self.cycle is None or self.cycle.response_complete
            if waiting and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                try:
                    self.conn.send(h11.ConnectionClosed())
                except h11.LocalProtocolError:
                    pass
                self.transport.close()

    return HeaderDeadline
