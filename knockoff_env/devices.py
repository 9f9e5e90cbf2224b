"""Where the models run: ``"auto"`` picks CUDA when present, else the CPU."""
from __future__ import annotations

import torch

from .errors import DeviceError


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; anything else must name a device torch
    knows and this machine has (a :class:`~knockoff_env.errors.DeviceError` says which is not)."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    usage = "use 'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'"
    try:
        resolved = device if isinstance(device, torch.device) else torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise DeviceError(f"device={device!r} is not a device torch knows", usage) from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "built without CUDA"
            raise DeviceError(f"device={str(device)!r} but this machine has no usable CUDA GPU (torch "
                              f"{torch.__version__} is {build})", "use device 'auto' or 'cpu'")
        if resolved.index is not None and resolved.index >= count:
            raise DeviceError(f"device={str(device)!r} but this machine has {count} CUDA GPU(s), "
                              f"cuda:0…cuda:{count - 1}", usage)
    elif resolved.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"device={str(device)!r} but MPS (Apple GPU) is not available here", usage)
    elif resolved.type not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"device={str(device)!r}: the models run on the CPU, CUDA or MPS only", usage)
    return resolved


def seed_torch(seed: int, device: torch.device) -> None:
    """Seed torch's generators: the CPU's, and every GPU's when ``device`` is a GPU or CUDA is
    in use (``torch.manual_seed``). On the CPU alone only the CPU's: ``torch.manual_seed`` also
    queues a seeding of CUDA, MPS and others for later, which costs more than a batch of steps."""
    if device.type == "cpu" and not torch.cuda.is_initialized():
        torch.default_generator.manual_seed(seed)
    else:
        torch.manual_seed(seed)
