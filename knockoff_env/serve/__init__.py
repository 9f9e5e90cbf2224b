"""The owner's service: a victim behind HTTP, as a deployed model an attacker pays per query.

:func:`~.app.create_app` puts a :class:`~knockoff_env.victim.BlackBox` (a world's victim with the
world's output mode and, through the world's options, any defence it applies) behind a
FastAPI app; ``knockoff serve`` builds it from a registered env id and runs it with uvicorn
(:func:`~.app.serve_forever`). The wire format is :mod:`knockoff_env.victim.wire`.

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
from .app import create_app, listening_socket, serve_forever
from .service import FAULTS, ServiceError, VictimService, parse_faults

__all__ = ["create_app", "listening_socket", "serve_forever", "VictimService", "ServiceError", "FAULTS",
           "parse_faults"]
