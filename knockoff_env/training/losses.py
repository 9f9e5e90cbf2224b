"""The soft-label cross-entropy the knockoff learns by (online and offline) and the env's loss
reward measures."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_EPS = math.log(1e-12)  # log-probabilities are clamped here: a 0 answer never meets a −inf


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image cross-entropy −Σ_k y_k log softmax(logits)_k, stable for any logits."""
    return -(target * F.log_softmax(logits.float(), dim=1).clamp_min(LOG_EPS)).sum(1)
