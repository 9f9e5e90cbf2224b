"""Check at construction that the parts of a world fit each other, with one probe batch.

A victim, a knockoff, a query set and an eval set are given separately, so nothing stops
a 7-way knockoff for a 10-way victim, or an eval set of 32×32 images for an 8×8 model; left
alone, such a world fails many steps later inside torch with a message about matrix sizes.
:func:`check_fit` sends a couple of query-set images through the victim (as the uncounted
probe that learns K; an opaque callable victim only when K is not given) and the knockoff,
and a couple of eval-set images through both, and
raises a :class:`~knockoff_env.errors.FitError` naming which part disagrees with which,
with the numbers. The probe is not charged to the budget.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..errors import FitError, KnockoffError
from ..victim.blackbox import BlackBox

PROBE = 2  # images per probe batch: two, so a model that mixes up the batch dimension shows it


def describe(images: torch.Tensor) -> str:
    return f"a batch of shape {tuple(images.shape)} ({str(images.dtype).replace('torch.', '')})"


def probe_victim(victim: BlackBox, images: torch.Tensor, source: str) -> int:
    """K, the width of the victim's answers to ``images``; the query counter is left as it was."""
    queries = victim.queries
    try:
        return int(victim(images).shape[1])
    except KnockoffError as err:
        raise type(err)(f"probing the victim with {source} images: {err.what}", err.hint) from err
    except Exception as err:  # noqa: BLE001 - any failure here means the parts do not fit
        raise FitError(f"the victim cannot take the {source} images ({describe(images)}): "
                       f"{type(err).__name__}: {err}",
                       f"give {source} images in the shape and dtype the victim was built for") from err
    finally:
        victim.queries = queries


@torch.no_grad()
def probe_knockoff(model: nn.Module, images: torch.Tensor, source: str, num_classes: int) -> None:
    """The knockoff must map ``images`` to (n, num_classes) logits."""
    was_training = model.training
    model.eval()  # batch-norm statistics untouched by the probe
    try:
        out = model(images)
    except Exception as err:  # noqa: BLE001
        raise FitError(f"the knockoff cannot take the {source} images ({describe(images)}): "
                       f"{type(err).__name__}: {err}",
                       f"build the knockoff for {source} images of shape {tuple(images.shape[1:])}") from err
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[0] != len(images):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise FitError(f"the knockoff returned {shape} for {len(images)} images",
                       "it must return logits of shape (n_images, num_classes)")
    if out.shape[1] != num_classes:
        raise FitError(f"the knockoff outputs {out.shape[1]} classes but the victim answers {num_classes}",
                       f"build the knockoff with {num_classes} outputs (its last layer)")


def first_images(data, n: int = PROBE) -> torch.Tensor:
    """The first ``n`` images of a tensor or of a Dataset of (image, label), as one batch."""
    if isinstance(data, torch.Tensor):
        return data[:n]
    return torch.stack([torch.as_tensor(data[i][0]) for i in range(min(n, len(data)))])


def check_eval_set(victim: BlackBox | None, model: nn.Module, eval_set, num_classes: int, device) -> None:
    """The eval set's images fit both models (the victim unless None) and its labels are classes of the victim."""
    data, labels = eval_set
    if len(labels) == 0:
        raise FitError("eval_set is empty", "give the victim's test set, or eval_set=None")
    low, high = int(np.min(labels)), int(np.max(labels))
    if low < 0 or high >= num_classes:
        raise FitError(f"eval_set labels run from {low} to {high} but the victim has {num_classes} classes "
                       f"(0…{num_classes - 1})", "give the victim's own test set with its class labels")
    images = first_images(data).to(device)
    if victim is not None:
        probe_victim(victim, images, "eval_set")  # its width is checked against K by the BlackBox
    probe_knockoff(model, images, "eval_set", num_classes)
