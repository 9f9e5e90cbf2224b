"""The wire format between a served victim (:mod:`knockoff_env.serve`) and its client
(:mod:`.remote`): payload codec, header names and defaults. Both sides import it; neither
imports the other.

Payloads are safetensors (a data format: no pickles, no JSON lists of floats) holding one
float32 tensor: ``images`` in a query, ``probs`` in an answer.
"""
from __future__ import annotations

import numpy as np

FORMAT = "safetensors"
DEFAULT_KEY_ENV = "KNOCKOFF_API_KEY"  # where clients and `knockoff serve --api-key-env` read the key
DEFAULT_MAX_BATCH = 256  # images in one request

# request headers
REQUEST_ID = "X-Request-Id"  # required: a retry reuses it and is answered again, not charged again
CLIENT_ID = "X-Client-Id"  # whose count it is (default: the peer's address)
PURPOSE = "X-Purpose"  # "attack" (charged) or "eval" (counted apart)
API_KEY = "X-API-Key"
PURPOSES = ("attack", "eval")
# answer headers
REPEAT = "X-Repeat"  # "1": an answer given before, not charged again
DETECTED_AT = "X-Detected-At"  # the client's charged queries when the owner's detector fired


def encode(name: str, array: np.ndarray) -> bytes:
    """``array`` as the float32 tensor ``name`` of a safetensors body."""
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
