"""Optional ``torch.compile`` of the victim and the knockoff, against launch overhead.

A 4-image step leaves a GPU launch-bound: many small kernels, each launched from Python.
``torch.compile`` fuses them; mode ``"reduce-overhead"`` also replays the step as a CUDA
graph. Models are compiled in place (``nn.Module.compile``), so their ``state_dict`` keys,
checkpoints and optimisers are unchanged.
"""
from __future__ import annotations

import torch
from torch import nn

MODES = ("default", "reduce-overhead", "max-autotune")


def compile_option(option: bool | str, device: torch.device) -> str | None:
    """The compile mode for ``compile_models``: None (off); True = ``"reduce-overhead"`` on CUDA
    (CUDA graphs), ``"default"`` elsewhere; or a mode by name."""
    if option is None or option is False:
        return None
    if option is True:
        return "reduce-overhead" if device.type == "cuda" else "default"
    if option not in MODES:
        raise ValueError(f"compile_models={option!r}; give True, False or a torch.compile mode {MODES}")
    return option


def compile_model(model, mode: str) -> None:
    """Compile ``model``'s forward in place (a callable victim that is no module is left as is)."""
    if isinstance(model, nn.Module):
        model.compile(mode=mode, dynamic=False)
