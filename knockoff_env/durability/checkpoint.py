"""Checkpoint files: a flat ``{name: tensor}`` dict, written atomically, loaded without unpickling code.

The file is ``torch.save`` of tensors only, so :func:`load_checkpoint` reads it with
``torch.load(weights_only=True)``, which refuses arbitrary objects. Two extra entries guard
it: ``__config__`` (the run's configuration as JSON bytes; a checkpoint of another run is
refused with the keys that differ) and ``__digest__`` (SHA-256 over every entry; a
tampered or truncated file is refused). Writing goes to a temporary file that is fsynced
and then renamed over the old checkpoint, so a kill leaves either the old or the new one.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from ..errors import DamagedFileError

CONFIG_KEY, DIGEST_KEY = "__config__", "__digest__"


class CheckpointError(DamagedFileError):
    """A checkpoint that is damaged, tampered with, or belongs to another run."""


def load_tensors(path: str | Path, what: str, remedy: str, error: type = DamagedFileError):
    """``torch.load(path, weights_only=True)``; a file it cannot read is refused as damaged or not
    ``what``, with ``remedy``, and never with torch's advice to load it unsafely."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:  # noqa: BLE001 - whatever torch raises, the file is not trustworthy
        reason = ("it holds objects other than tensors, which are never unpickled here"
                  if "Unsupported global" in str(err) else "truncated, garbled or not a torch file")
        raise error(f"{path} is unreadable: it is damaged or not {what} ({reason})", remedy) from None


def check_config(saved: Mapping, expected: Mapping, what: str, error: type = None) -> None:
    """Refuse ``what`` when the configuration it was written for differs from this run's."""
    expected = json.loads(json.dumps(dict(expected), sort_keys=True))  # compare as saved: JSON types
    keys = sorted(set(saved) | set(expected))
    differ = [k for k in keys if saved.get(k) != expected.get(k)]
    if differ:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r}, now {expected.get(k)!r}" for k in differ)
        raise (error or CheckpointError)(f"{what} belongs to a different attack configuration ({detail}); "
                              "resume with the same options, or start a new run directory")


def as_tensor(value) -> torch.Tensor:
    """A CPU tensor holding ``value`` (tensor, array or number), detached and contiguous."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().contiguous().clone()
    return torch.from_numpy(np.array(value, order="C"))  # a C-ordered copy; keeps 0-d shape


def text_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(text.encode()), dtype=torch.uint8)


def tensor_text(tensor: torch.Tensor) -> str:
    return bytes(tensor.numpy().tobytes()).decode()


def _digest(tensors: Mapping[str, torch.Tensor]) -> torch.Tensor:
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return torch.frombuffer(bytearray(h.digest()), dtype=torch.uint8)


def save_checkpoint(path: str | Path, state: Mapping[str, object], config: Mapping) -> Path:
    """Write ``state`` (names → tensors, arrays or numbers) for the run ``config``, atomically."""
    path = Path(path)
    tensors = {name: as_tensor(value) for name, value in state.items()}
    tensors[CONFIG_KEY] = text_tensor(json.dumps(dict(config), sort_keys=True))
    tensors[DIGEST_KEY] = _digest(tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(tensors, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def load_checkpoint(path: str | Path, config: Mapping) -> dict[str, torch.Tensor]:
    """Read a checkpoint of the run ``config``; its state without the guard entries."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    tensors = load_tensors(path, "a knockoff_env checkpoint", "use an earlier copy, or resume from the journal "
                           "alone by deleting the checkpoint file (the run replays every journaled step)",
                           CheckpointError)
    if not isinstance(tensors, dict) or DIGEST_KEY not in tensors or CONFIG_KEY not in tensors \
            or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in tensors.items()):
        raise CheckpointError(f"{path} is not a knockoff_env checkpoint (expected named tensors with a digest)")
    digest = tensors.pop(DIGEST_KEY)
    if not torch.equal(digest, _digest(tensors)):
        raise CheckpointError(f"{path} fails its SHA-256 digest: it was modified or damaged; "
                              "use an earlier copy or start a new run")
    check_config(json.loads(tensor_text(tensors.pop(CONFIG_KEY))), config, str(path))
    return tensors


def fsync_dir(directory: Path) -> None:
    """Make a new or renamed directory entry durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
