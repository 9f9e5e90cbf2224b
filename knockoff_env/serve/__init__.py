"""The owner's service: a victim behind HTTP, as a deployed model an attacker pays per query.

:func:`~.app.create_app` puts a :class:`~knockoff_env.victim.BlackBox` (a world's victim with the
world's output mode and, through the world's options, any defence it applies) behind a
FastAPI app; ``knockoff serve`` builds it from a registered env id and runs it with uvicorn
(:func:`~.app.serve_forever`). The wire format is :mod:`knockoff_env.victim.wire`; the user's
guide is ``docs/serving.md``.

Who a client is. With API keys (``knockoff keys add NAME [--eval] [--owner] --state DIR``, stored
hashed, :mod:`.keys`) every request needs ``Authorization: Bearer KEY`` and the key alone names
the client: ``X-Client-Id``, ``X-Forwarded-For`` or any other header the client chooses are
ignored. Without keys (a local experiment) each peer address is one anonymous client,
``anonymous@ADDRESS`` (``X-Forwarded-For``'s last entry instead only behind ``--trust-proxy``).

Protocol (payloads are safetensors, a data format: no pickles, no JSON lists of floats):

* ``GET /health`` → ``{"num_classes", "input_shape", "max_batch", "format", "output", "auth",
  "identity", "rate_limit", "detector", "eval_monitored", "max_abs_pixel", "keep_answers",
  "durable", "limits": {"max_body_bytes", "header_timeout", "body_timeout", "keep_alive",
  "max_header_bytes", "max_connections"}, ...}`` (no key needed).
* ``POST /query`` with a safetensors body holding ``images`` (float32, ``(n, *input_shape)``,
  1 ≤ n ≤ max_batch, values within ±max_abs_pixel) and the headers ``X-Request-Id``
  (required) and ``X-Purpose`` (``attack``, charged, or ``eval``: evaluation queries, only for
  keys with the eval right, counted apart, not charged, and seen by the detector unless the
  owner serves with ``--unmonitored-eval``). The answer is a safetensors body holding ``probs``
  (float32, ``(n, num_classes)``). A request id answered before is answered again from the
  stored answers (the last ``keep_answers`` of each client), not charged again (``X-Repeat: 1``);
  the same id with other images is 409.
* ``GET /whoami`` → ``{"client", "eval", "owner"}``: the client the key names.
* ``GET /usage`` → ``{client: {"charged", "eval", "requests", "repeats"}}``: the server's own
  count, of the asking client only; an owner key sees every client.
* With a ``detector`` (``--detector prada``) the owner monitors each client; once it fires,
  every answer to that client carries ``X-Detected-At`` (the client's charged queries at the
  alarm), and ``GET /alarm`` → ``{"client", "detected_at"}`` tells a resumed client.

State (:mod:`.store`): keys, counts, stored answers and detector states live in SQLite
(``--state DIR``: ``DIR/state.db``; otherwise in memory), each answer charged, kept and monitored
in one transaction committed before it leaves: a server killed and restarted on the same state
forgets nothing and never charges an answer twice.

Errors: 400 (a body that is not the images described above), 401 (missing, wrong or revoked
key), 403 (an evaluation query without the eval right), 408 (a body that did not arrive in
time), 409 (a reused request id), 413 (a body over ``max_body_bytes``, refused before it is
read, or more than max_batch images), 429 with ``Retry-After`` in seconds (over the rate limit
of queries per second), 503 (too many connections, or too many anonymous addresses).
Connections whose headers are not complete within ``header_timeout`` are closed (:mod:`.limits`).

``faults`` (``--inject-faults``) are **for tests only** (:mod:`.faults`).
"""
from .app import create_app, listening_socket, serve_forever, server
from .faults import FAULTS, parse_faults
from .keys import Identity, issue_key, list_keys, revoke_key
from .limits import Limits, body_limit
from .service import ServiceError, VictimService
from .store import StateStore

__all__ = ["create_app", "listening_socket", "serve_forever", "server", "VictimService", "ServiceError", "FAULTS",
           "parse_faults", "StateStore", "Identity", "issue_key", "list_keys", "revoke_key", "Limits", "body_limit"]
