"""The victim F_V as a black box: the adversary sends images and gets back what the API returns.

`BlackBox` wraps either an ``nn.Module`` that returns logits or any callable that returns
probabilities. It batches, places inputs on the right device, counts queries, checks that
every answer is a probability distribution of the expected width, and passes the answers
through the owner's defences (:mod:`.defences`), of which the output modes of the paper's
truncation study (top-k, rounded, label) are the simplest.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..checks import is_integer
from ..devices import resolve_device
from ..errors import KnockoffError
from .defences import Chain, Defence, Label, Rounded, TopK, parse_defence
from .detectors import Detector, parse_detector

OUTPUT_MODES = ("probs", "top_k", "rounded", "label")
MAX_DECIMALS = 30  # 10^30 × a probability stays finite in float32


class VictimOutputError(KnockoffError, ValueError):
    """The victim answered with something that is not a probability vector of width K."""


def raise_not_finite() -> None:
    raise VictimOutputError("victim returned NaN or infinite values; check the model and its inputs")


class BlackBox:
    """Query-only access to a victim classifier.

    Args:
        victim: an ``nn.Module`` returning logits (softmax is applied here), or any callable
            mapping a batch of images to probabilities (``returns="probs"``).
        num_classes: K, the width every answer must have. Inferred from the first answer
            when omitted.
        output: ``"probs"`` (full vector, the paper's default), ``"top_k"`` (the k largest
            probabilities kept, the rest zeroed, renormalised), ``"rounded"`` (rounded to
            ``decimals`` places, renormalised) or ``"label"`` (one-hot of the top class).
        top_k: k for ``output="top_k"``.
        decimals: r for ``output="rounded"``.
        returns: ``"logits"`` or ``"probs"``; defaults to logits for an ``nn.Module`` and
            probabilities for any other callable.
        device: where the victim runs; ``"auto"`` uses CUDA when present.
        batch_size: the largest batch sent in one call.
        atol: tolerance on "rows sum to one" for callables that return probabilities.
        bf16: run an ``nn.Module`` victim under bfloat16 autocast (answers stay float32).
        channels_last: send 4-d image batches in channels-last memory format (faster
            convolutions on CUDA); the module is converted once.
        defence: the owner's defence of the answers, applied before the ``output`` mode: a
            spec (``"reverse_sigmoid:beta=0.7,gamma=0.2"``, ``"mad:eps=0.5+top_k:k=1"``), a
            :class:`~knockoff_env.defences.Defence` or a list (see :mod:`.defences`).
        detector: the monitor each client of this victim gets (``"prada"``, see
            :mod:`.detectors`); :meth:`new_detector` makes one per attack.
    """

    def __init__(
        self,
        victim: nn.Module | Callable[[torch.Tensor], torch.Tensor],
        *,
        num_classes: int | None = None,
        output: str = "probs",
        top_k: int = 1,
        decimals: int = 2,
        returns: str | None = None,
        device: str | torch.device = "auto",
        batch_size: int = 256,
        atol: float = 1e-3,
        bf16: bool = False,
        channels_last: bool = False,
        defence: str | Defence | list | None = None,
        detector: str | Detector | None = None,
    ):
        if not callable(victim):
            raise TypeError(f"victim must be an nn.Module or a callable, got {type(victim).__name__}")
        if output not in OUTPUT_MODES:
            raise ValueError(f"output={output!r} is not an output mode; choose one of {OUTPUT_MODES}")
        if returns is None:
            returns = "logits" if isinstance(victim, nn.Module) else "probs"
        if returns not in ("logits", "probs"):
            raise ValueError(f"returns={returns!r}: use 'logits' or 'probs'")
        if output == "top_k" and (not is_integer(top_k) or top_k < 1):
            raise ValueError(f"top_k={top_k!r} must be a positive integer")
        if output == "rounded" and (not is_integer(decimals) or not 0 <= decimals <= MAX_DECIMALS):
            raise ValueError(f"decimals={decimals!r} must be an integer from 0 to {MAX_DECIMALS} "
                             "(float32 answers scaled by 10^decimals must not overflow)")
        if num_classes is not None and (not is_integer(num_classes) or num_classes < 2):
            raise ValueError(f"num_classes={num_classes!r} must be an integer ≥ 2, or None to read it from the "
                             "victim's first answer")
        output_mode = {"probs": lambda: None, "top_k": lambda: TopK(top_k), "rounded": lambda: Rounded(decimals),
                       "label": Label}[output]()  # validates top_k / decimals
        if not is_integer(batch_size) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be a positive integer")
        self.device = resolve_device(device)
        self.victim = victim
        if isinstance(victim, nn.Module):
            victim.to(self.device).eval()
            for p in victim.parameters():
                p.requires_grad_(False)
            if channels_last:
                victim.to(memory_format=torch.channels_last)
        self.bf16, self.channels_last = bool(bf16), bool(channels_last)
        self.output, self.top_k, self.decimals = output, int(top_k), int(decimals)
        self.returns, self.batch_size, self.atol = returns, int(batch_size), atol
        self.num_classes = None if num_classes is None else int(num_classes)
        self.queries = 0
        self.defence: Chain = Chain(parse_defence(defence).defences + ([output_mode] if output_mode else []))
        self.defence.bind(victim, self.device)
        parse_detector(detector, self.device)  # refuse a bad spec now, not at the first episode
        self.detector = detector

    def new_detector(self) -> Detector | None:
        """A fresh monitor for one client (None without a detector)."""
        if isinstance(self.detector, Detector):  # a template: each client gets its own copy
            fresh = copy.deepcopy(self.detector)
            fresh.reset()
            return fresh
        return parse_detector(self.detector, self.device)

    @torch.no_grad()  # not inference_mode: the answers become the knockoff's training targets
    def __call__(self, images: torch.Tensor, check_finite: bool = True) -> torch.Tensor:
        """Answer a batch of queries: an (n, K) float32 tensor on ``self.device``.

        ``check_finite=False`` skips the NaN/inf check, a device sync on CUDA, for a caller
        that checks the answers once they are on the host anyway (the env does)."""
        if images.shape[0] == 0:
            raise ValueError("a query needs at least one image")
        chunks = []
        for i in range(0, images.shape[0], self.batch_size):
            batch = images[i:i + self.batch_size].to(self.device, non_blocking=True)
            probs = self._answer(batch, check_finite)
            chunks.append(self.defence(probs, batch) if self.defence else probs)
        self.queries += images.shape[0]
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks)

    @torch.no_grad()
    def true_and_defended(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The owner's view, for the defence's cost: true and defended answers, not counted as queries."""
        images = images.to(self.device)
        probs = self._answer(images, True)
        return probs, self.defence(probs, images) if self.defence else probs

    def _answer(self, images: torch.Tensor, check_finite: bool) -> torch.Tensor:
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, torch.bfloat16, enabled=self.bf16):
            out = self.victim(images)
        if not isinstance(out, torch.Tensor):
            try:
                out = torch.as_tensor(out)
            except (TypeError, ValueError, RuntimeError) as err:
                raise VictimOutputError(f"the victim answered with a {type(out).__name__}, not numbers ({err})",
                                        "make it return a tensor or array of shape (n_images, num_classes)") from None
        if out.dtype == torch.bool or out.is_complex():
            raise VictimOutputError(f"the victim answered with {out.dtype} values",
                                    "make it return real-valued probabilities or logits")
        out = out.to(self.device, torch.float32)
        if out.ndim != 2 or out.shape[0] != images.shape[0]:
            raise VictimOutputError(
                f"victim returned shape {tuple(out.shape)} for {images.shape[0]} images; "
                "expected (n_images, num_classes)")
        if out.shape[1] < 2:
            raise VictimOutputError(f"the victim answered with {out.shape[1]} classes per image",
                                    "a classifier's answer has one entry per class, at least 2")
        if self.num_classes is None:
            self.num_classes = out.shape[1]
        elif out.shape[1] != self.num_classes:
            raise VictimOutputError(
                f"victim returned {out.shape[1]} classes, expected num_classes={self.num_classes}",
                f"pass num_classes={out.shape[1]} (or leave it out), or the victim trained for "
                f"{self.num_classes} classes")
        if (check_finite or self.returns == "probs") and not torch.isfinite(out).all():
            raise_not_finite()
        if self.returns == "logits":
            return torch.softmax(out, dim=1)
        if (out < 0).any() or not torch.allclose(out.sum(1), torch.ones_like(out[:, 0]), atol=self.atol):
            raise VictimOutputError(
                "victim output is not a probability distribution (negative entries or rows not "
                "summing to 1); pass returns='logits' if the callable returns logits")
        return out

    def evaluation_model(self) -> nn.Module | Callable[[torch.Tensor], torch.Tensor]:
        """What answers the victim's evaluation queries (not counted as attack queries)."""
        return self.victim
