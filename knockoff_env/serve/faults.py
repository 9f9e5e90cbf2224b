"""Test faults (``knockoff serve --inject-faults``), **for tests only**: chosen requests of chosen
clients fail the way networks and servers fail, so that clients can be tested against a real
server. A plan is ``{client: {request number: kind}}``; a client's requests are numbered from 1
by the server's own count (which a state directory keeps across restarts).
"""
from __future__ import annotations

import json

FAULTS = {
    "500": "a 500 error before answering (nothing charged)",
    "429": "a 429 with Retry-After: 1 before answering (nothing charged)",
    "retry-after=VALUE": "a 429 whose Retry-After header is VALUE verbatim (nothing charged)",
    "timeout": "charged and answered, but the answer is held back past the client's timeout",
    "drop": "charged and answered, but the connection is cut halfway through the answer",
    "malformed": "charged, but the body is not safetensors",
    "width": "charged, but the answer has num_classes + 1 columns",
    "die": "charged and kept, then the server process kills itself (SIGKILL) before answering",
}
FAULT_DELAY = 3.0  # seconds a "timeout" fault holds its answer back
RETRY_AFTER = "retry-after="


def parse_faults(text: str | None) -> dict[str, dict[int, str]]:
    """``{"client": {"n": "kind", ...}, ...}`` (JSON) → ``{client: {n: kind}}``."""
    if not text:
        return {}
    try:
        raw = json.loads(text)
        faults = {str(c): {int(n): str(k) for n, k in plan.items()} for c, plan in raw.items()}
    except (ValueError, AttributeError, TypeError) as err:
        raise ValueError(f"--inject-faults {text!r}: expected JSON {{client: {{request number: kind}}}} "
                         f"({err})") from None
    unknown = {k for plan in faults.values() for k in plan.values()
               if k not in FAULTS and not k.startswith(RETRY_AFTER)}
    if unknown:
        raise ValueError(f"--inject-faults: unknown fault kinds {sorted(unknown)}; choose from {sorted(FAULTS)}")
    return faults
