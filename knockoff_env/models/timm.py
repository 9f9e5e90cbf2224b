"""Victims and knockoffs from timm model names, with local weight files and the model's own
preprocessing (its ``pretrained_cfg``: input size, mean/std, interpolation, crop fraction).

Nothing is downloaded: models are built with ``pretrained=False`` and filled from a state-dict
file (``.pt``/``.pth`` read with ``weights_only=True``, or ``.safetensors``); tensors whose name
and shape match are copied, so a classifier trained for another task stays freshly initialised.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ..data.decode import Preprocess


def timm_model(name: str, num_classes: int | None = None, weights: str | Path | None = None,
               strict: bool = False) -> nn.Module:
    """timm model ``name`` with weights from the file ``weights``. ``num_classes``: default the
    width of the file's classifier, else the model's own. ``strict``: every tensor must load
    (a victim); else those that match (a knockoff initialised from another task's weights)."""
    import timm

    if not timm.is_model(name):
        raise ValueError(f"timm has no model {name!r}; see timm.list_models()")
    state = None if weights is None else read_state(weights)
    if num_classes is None and state is not None:
        head = f"{timm.models.get_pretrained_cfg_value(name, 'classifier') or 'fc'}.weight"
        num_classes = state[head].shape[0] if head in state else None
    options = {} if num_classes is None else {"num_classes": int(num_classes)}
    model = timm.create_model(name, pretrained=False, **options)
    if state is not None:
        load_matching(model, state, weights, strict)
    return model


def load_matching(model: nn.Module, state: dict, weights, strict: bool) -> nn.Module:
    """Copy every tensor of ``state`` whose name and shape match into ``model`` (all, if ``strict``)."""
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matched or (strict and len(matched) != len(own)):
        raise ValueError(f"the tensors of {weights} do not fit this model ({len(matched)} of {len(own)} match): "
                         "they were saved from another architecture or class count")
    model.load_state_dict(matched, strict=False)
    return model


def read_state(weights: str | Path) -> dict:
    """The state dict in the file ``weights``."""
    path = Path(weights).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"weights file {path} not found; give the path of a saved state dict "
                                "(.pt/.pth or .safetensors)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict (a mapping of parameter names to tensors)")
    return state


def timm_preprocess(model: nn.Module | str) -> Preprocess:
    """The evaluation preprocessing of a timm model (or model name), as timm's own transform does it."""
    from timm.data import resolve_data_config

    if isinstance(model, str):
        model = timm_model(model)
    cfg = resolve_data_config({}, model=model)
    _, h, w = cfg["input_size"]
    crop_pct = cfg.get("crop_pct") or 0.875
    mode = cfg.get("crop_mode") or "center"
    if mode == "squash":
        resize = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    elif mode == "center" and h == w:
        resize = math.floor(h / crop_pct)
    else:
        raise ValueError(f"timm preprocessing with crop_mode={mode!r} and input {h}×{w} is not supported; "
                         "pass a Preprocess of your own")
    interpolation = cfg.get("interpolation") or "bilinear"
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        interpolation = "bilinear"
    return Preprocess(resize, (h, w), tuple(cfg["mean"]), tuple(cfg["std"]), interpolation)
