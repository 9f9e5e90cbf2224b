"""Batched DeepFool (Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016) on the knockoff: DFAL's score.

DFAL (Ducoffe & Precioso 2018), as ActiveThief uses it, queries the pool images whose
smallest adversarial perturbation on the current knockoff is smallest: those nearest its
decision boundary. DeepFool finds that perturbation by linearising the classifier f around
the current point x + r: for every candidate class j ≠ k₀ (k₀ the original prediction),
f'_j = f_j − f_k₀ and w_j = ∇f_j − ∇f_k₀; the nearest linearised boundary is
l = argmin_j |f'_j| / ‖w_j‖₂, and the step r_l = (|f'_l| + 10⁻⁴) w_l / ‖w_l‖₂² moves onto it.
Steps add up until the prediction of x + (1 + η) r changes (η the overshoot) or ``max_iter``
steps were taken. For a linear classifier one step is exact: the distance is the smallest
|f'_j| / ‖w_j‖, the distance to the region's nearest face.

Compared with ActiveThief's TensorFlow code (``attacks/deepfool.py``, batch mode):

* it linearises the softmax probabilities; here the logits by default (as DeepFool does,
  exact for linear models), ``on="probs"`` for theirs. The decision boundary is the same;
  the steps, and so the perturbations found, differ (``benchmarks/strategies.py`` measures
  how many of the chosen images agree).
* its step is |f'_l| w_l / ‖w_l‖, longer than DeepFool's by the factor ‖w_l‖ (an earlier
  version of the code it adapted); here DeepFool's step.
* it runs all 20 iterations whether or not the prediction changed, and ranks by the final
  perturbation; here each image stops when its prediction changes, and an image still
  unchanged after ``max_iter`` steps ranks after every image that changed.
* it clips to [0, 1]; the env's images are normalised (ImageNet mean/std), so no clipping.
* gradients of the ``candidates`` classes the knockoff ranks highest at x (DeepFool's own
  code uses 10), not of all classes: one forward pass per step and one backward pass
  batched over the candidates (``is_grads_batched``; faster on CPU than a backward pass per
  candidate, and than one pass over a copy of each image per candidate).

Both use the overshoot η = 0.01 and at most 20 steps (ActiveThief's values).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

MAX_ITER = 20
OVERSHOOT = 0.01
CANDIDATES = 10
STEP_EPSILON = 1e-4  # added to |f'_l| so that a step always reaches past the linearised boundary


@contextmanager
def evaluating(model: nn.Module):
    """The model in eval mode (no dropout, BatchNorm's running statistics), restored after."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _scores(model: nn.Module, x: torch.Tensor, on: str) -> torch.Tensor:
    logits = model(x).float()
    return logits.softmax(1) if on == "probs" else logits


def deepfool_batch(model: nn.Module, x0: torch.Tensor, max_iter: int = MAX_ITER, overshoot: float = OVERSHOOT,
                   candidates: int = CANDIDATES, on: str = "logits") -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool on one batch (on the model's device, in eval mode).

    Returns ``distance`` (N,), the L2 norm of the perturbation (1 + η) r, and ``changed`` (N,),
    whether it changed the prediction within ``max_iter`` steps (if not, ``distance`` is
    the norm reached so far, a lower bound).
    """
    if on not in ("logits", "probs"):
        raise ValueError(f"on={on!r}: DeepFool linearises the 'logits' or the 'probs' (softmax) of the knockoff")
    if max_iter < 1 or overshoot < 0 or candidates < 2:
        raise ValueError(f"need max_iter ≥ 1, overshoot ≥ 0 and candidates ≥ 2; got {max_iter}, {overshoot}, "
                         f"{candidates}")
    x0 = x0.detach().float()
    n = len(x0)
    with torch.no_grad():
        first = _scores(model, x0, on)
    classes = first.topk(min(candidates, first.shape[1]), dim=1).indices  # (N, C); column 0 is k₀
    r = torch.zeros_like(x0)
    changed = torch.zeros(n, dtype=torch.bool, device=x0.device)
    active = torch.arange(n, device=x0.device)
    for step in range(max_iter + 1):
        x = (x0[active] + (1 + overshoot) * r[active]).requires_grad_(True)
        with torch.enable_grad():
            scores = _scores(model, x, on)
            done = scores.argmax(1) != classes[active, 0]
            changed[active[done]] = True
            if step == max_iter or bool(done.all()):
                break
            picked = scores.gather(1, classes[active])  # (A, C): f at each row's candidate classes
            one_hot = torch.eye(picked.shape[1], device=x.device)[:, None, :].expand(-1, len(x), -1)
            grads = torch.autograd.grad(picked, x, grad_outputs=one_hot,  # all C gradients in one batched pass
                                        is_grads_batched=True)[0].transpose(0, 1)  # (A, C, ...)
        keep = ~done
        active, x, picked, grads = active[keep], x[keep], picked[keep].detach(), grads[keep]
        f = picked[:, 1:] - picked[:, :1]  # f'_j for the candidates j ≠ k₀
        w = (grads[:, 1:] - grads[:, :1]).flatten(2)
        norm = w.norm(dim=2).clamp_min(1e-12)
        nearest = (f.abs() / norm).argmin(1)
        at = torch.arange(len(active), device=x0.device)
        w_l, norm_l = w[at, nearest], norm[at, nearest]
        step_size = (f[at, nearest].abs() + STEP_EPSILON) / norm_l ** 2
        r[active] += (step_size[:, None] * w_l).view_as(x)
    distance = ((1 + overshoot) * r).flatten(1).norm(dim=1)
    return distance, changed


def deepfool_distances(model: nn.Module, images, batch_size: int = 64,
                       **options) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepFool over a pool in batches on the model's device: ``distance`` and ``changed`` (CPU tensors).

    ``images``: an (N, ...) tensor or anything with ``len`` and slicing to tensors (e.g.
    :class:`agents.active.selection.FetchedPool`). ``options`` go to :func:`deepfool_batch`.
    """
    device = model_device(model)
    distances, changed = [], []
    with evaluating(model):
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(device, non_blocking=True)
            d, c = deepfool_batch(model, batch, **options)
            distances.append(d.cpu())
            changed.append(c.cpu())
    return torch.cat(distances), torch.cat(changed)
