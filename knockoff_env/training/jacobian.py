"""Jacobian-based data augmentation (Papernot, McDaniel, Goodfellow, Jha, Celik, Swami,
"Practical Black-Box Attacks against Machine Learning", AsiaCCS 2017): synthetic queries
grown from a few seed images with the attacker's own substitute model.

Round ρ of the paper's Algorithm 1: the points S_ρ are labelled by the victim (the oracle
Õ), the substitute F is trained on every labelled point, and

    S_{ρ+1} = S_ρ ∪ { x + λ_ρ · sign(∇_x F(x)[Õ(x)]) : x ∈ S_ρ },
    λ_ρ = λ · (−1)^⌊ρ/τ⌋   (the periodic step size: the direction flips every τ rounds),

so each round doubles the points and every new point costs one query. F(x)[y] is the
substitute's logit of class y, as in the cleverhans code the paper released; the oracle
label is the top-1 of the victim's answer (the paper's oracle returns labels only). The
substitute keeps its weights from round to round (cleverhans; the prediction-poisoning
reference re-initialises it each round) and is trained with cross-entropy on the oracle
labels (SGD with momentum, a few epochs).

Pieces, for a strategy to build on: :func:`step_size`, :func:`jacobian_augment` (new
images from images, labels and a substitute: batched, no query), :func:`train_substitute`,
and :class:`JacobianAugmentation`, the whole loop against any oracle (a BlackBox counts
the queries; a ``budget`` truncates the last round, as the reference does).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..checks import is_finite_number, is_integer


def step_size(round_: int, lam: float = 0.1, tau: int | None = None) -> float:
    """λ_ρ = λ·(−1)^⌊ρ/τ⌋ for round ρ (counted from 0); ``tau=None``: λ every round."""
    return lam if tau is None else lam * (-1) ** (round_ // tau)


def jacobian_augment(substitute: nn.Module, images: torch.Tensor, labels: torch.Tensor, step: float,
                     clip: tuple[float, float] | None = None, batch_size: int = 256) -> torch.Tensor:
    """x + step·sign(∇_x F(x)[y]) for each image x and its label y: (n, …) new images.

    The substitute runs in eval mode (so one image's gradient never depends on the others
    of its batch); ``clip=(low, high)`` keeps the new images in the valid pixel range."""
    if len(images) != len(labels):
        raise ValueError(f"jacobian_augment: {len(images)} images but {len(labels)} labels")
    was_training = substitute.training
    substitute.eval()
    device = next(substitute.parameters()).device
    out = []
    try:
        with torch.enable_grad():
            for start in range(0, len(images), batch_size):
                x = images[start:start + batch_size].to(device).detach().requires_grad_(True)
                y = labels[start:start + batch_size].to(device)
                logits = substitute(x)
                grad, = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), x)
                new = x.detach() + step * grad.sign()
                out.append(new.clamp(*clip) if clip is not None else new)
    finally:
        substitute.train(was_training)
    return torch.cat(out).to(images.device)


def train_substitute(substitute: nn.Module, images: torch.Tensor, labels: torch.Tensor, epochs: int = 10,
                     lr: float = 0.01, momentum: float = 0.9, batch_size: int = 32,
                     generator: torch.Generator | None = None) -> nn.Module:
    """A few epochs of SGD with momentum on cross-entropy with the oracle's labels."""
    device = next(substitute.parameters()).device
    optimizer = torch.optim.SGD(substitute.parameters(), lr=lr, momentum=momentum)
    substitute.train()
    with torch.enable_grad():
        for _ in range(epochs):
            for rows in torch.randperm(len(labels), generator=generator).split(batch_size):
                loss = nn.functional.cross_entropy(substitute(images[rows].to(device)), labels[rows].to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return substitute.eval()


class JacobianAugmentation:
    """The paper's loop against an oracle (a :class:`~knockoff_env.victim.BlackBox` or any
    callable from images to probability vectors).

    ``substitute``: the attacker's model (trained in place) or a factory of one; ``lam``,
    ``tau``: the step size and its period (paper, MNIST: λ = 0.1, τ = 3); ``epochs``,
    ``lr``: the substitute's training per round; ``clip``: pixel range of new images.
    """

    def __init__(self, substitute: nn.Module | Callable[[], nn.Module], lam: float = 0.1, tau: int | None = 3,
                 epochs: int = 10, lr: float = 0.01, batch_size: int = 32, clip: tuple[float, float] | None = (0, 1),
                 seed: int = 0):
        if not is_finite_number(lam) or lam <= 0:
            raise ValueError(f"jacobian augmentation lam={lam!r} must be a step size > 0 (paper: 0.1)")
        if tau is not None and (not is_integer(tau) or tau < 1):
            raise ValueError(f"jacobian augmentation tau={tau!r} must be a positive number of rounds, or None")
        if not is_integer(epochs) or epochs < 0:
            raise ValueError(f"jacobian augmentation epochs={epochs!r} must be an integer ≥ 0")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.substitute = substitute if isinstance(substitute, nn.Module) else substitute()
        self.lam, self.tau, self.epochs, self.lr = float(lam), tau, int(epochs), float(lr)
        self.batch_size, self.clip = int(batch_size), clip
        self.generator = torch.Generator().manual_seed(seed)

    def rounds(self, oracle: Callable[[torch.Tensor], torch.Tensor], seeds: torch.Tensor, rounds: int,
               budget: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Each round's new queries and the oracle's answers: round 0 is the seeds, round
        ρ ≥ 1 the points augmented from S_{ρ−1}, in order; stops after ``rounds`` rounds or
        at ``budget`` queries (the last round cut short)."""
        budget = float("inf") if budget is None else budget
        points, labels = seeds[:0], torch.zeros(0, dtype=torch.int64)
        new, spent = seeds[:int(min(len(seeds), budget))], 0
        for rho in range(rounds):
            if len(new) == 0:
                return
            with torch.no_grad():
                answers = torch.as_tensor(oracle(new)).detach().cpu()
            spent += len(new)
            yield new, answers
            points, labels = torch.cat([points, new.cpu()]), torch.cat([labels, answers.argmax(1)])
            if rho + 1 == rounds or spent >= budget:
                return
            train_substitute(self.substitute, points, labels, self.epochs, self.lr, batch_size=self.batch_size,
                             generator=self.generator)
            new = jacobian_augment(self.substitute, points, labels, step_size(rho, self.lam, self.tau), self.clip)
            new = new[:int(min(len(new), budget - spent))]

    def stream(self, oracle: Callable[[torch.Tensor], torch.Tensor], seeds: torch.Tensor, rounds: int,
               budget: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Every query of :meth:`rounds` in the order sent, and the answers."""
        parts = list(self.rounds(oracle, seeds, rounds, budget))
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
