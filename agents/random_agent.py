"""The paper's random strategy: uniform over the query set's images, drawn without replacement
(equivalently, a label is chosen with probability proportional to the images it has left);
and CopycatCNN, the random strategy on images from outside the victim's domain, with labels only.
"""
from __future__ import annotations

import copy

import numpy as np

from .base import Agent, action_for
from .weighted import Counts, pick


class RandomAgent(Agent):
    """Picks label z with probability (images of z left) / (images left).

    It reads neither the answers nor the rewards, so the runner trains no online knockoff for it
    and queries its steps in batches (see :mod:`agents.batching`)."""

    needs_online_knockoff = False  # the paper's random strategy trains the knockoff only offline
    answer_independent = True  # its actions never depend on the victim's answers
    allowed: np.ndarray | None = None  # labels it may query (flat order); None: all

    def act(self, obs, info):
        remaining = self.query_set.remaining()
        return action_for(self.env, pick(self.rng, remaining if self.allowed is None else remaining * self.allowed))

    def label_probabilities(self, label_ok: np.ndarray | None = None) -> np.ndarray:
        remaining = self.query_set.remaining().astype(np.float64)
        if self.allowed is not None:
            remaining = remaining * self.allowed
        if label_ok is not None:
            remaining = remaining * label_ok
        total = remaining.sum()
        return remaining / total if total > 0 else remaining

    def act_ahead(self, steps: int) -> list[int]:
        """The labels (flat positions) of the next ``steps`` steps, chosen as ``steps`` calls of
        :meth:`act` would choose them while the env draws them (the runner's batches,
        :meth:`~knockoff_env.KnockoffEnv.prepare_ahead`); fewer once the query set runs out."""
        return self._choose(self.rng, steps, self.env.unwrapped.queries_per_step * steps)

    def plan(self, steps: int) -> list[int]:
        """The labels (flat positions) :meth:`act` will choose in the next ``steps`` steps, as
        long as the env draws as expected: acting is replayed on copies of the RNG and pools.
        The env's look-ahead decodes their images ahead (see :mod:`knockoff_env.lookahead`)."""
        core = self.env.unwrapped
        left = core.budget - core.spent - core.pending  # images drawn for a batch not answered yet count
        return self._choose(copy.deepcopy(self.rng), steps, left)

    def _choose(self, rng: np.random.Generator, steps: int, left: int) -> list[int]:
        """Up to ``steps`` labels picked with ``rng`` as :meth:`act` picks them, each step taking
        up to ``queries_per_step`` images of its label (at most ``left`` in all) from a copy of
        the pools' counts. The uniforms are drawn at once; ``rng`` ends as after one per label."""
        remaining = self.query_set.remaining()  # a fresh array
        if self.allowed is not None:
            remaining *= self.allowed
        state = rng.bit_generator.state
        chosen = Counts(remaining).draws(rng.random(steps).tolist(), self.env.unwrapped.queries_per_step, left)
        if len(chosen) < steps:  # the uniforms not used are given back
            rng.bit_generator.state = state
            rng.random(len(chosen))
        return chosen


class CopycatCNN(RandomAgent):
    """CopycatCNN (Correia-Silva et al., IJCNN 2018): the random strategy over images from
    outside the victim's problem domain, answered with labels only.

    ``exclude``: the coarse nodes of the hierarchy that hold the victim's own domain (default:
    the env's ``victim_domain``, which its world declares: ``digits`` in the digits world, whose
    ``letters``, ``shapes`` and ``textures`` nodes are the non-problem-domain images; a paper
    world's own source in D², none with ILSVRC or OpenImages). The env must answer with labels
    (``output="label"``: ``make_agent("copycat", ...)``'s env preset, see
    :data:`agents.registry.ENV_PRESETS`); anything else is a ValueError. The labels are the
    victim's top-1 as one-hot vectors, and the knockoff is trained on them offline, as
    CopycatCNN trains its copy on the stolen labels."""

    def __init__(self, env, seed: int | None = None, exclude: tuple[str, ...] | list[str] | str | None = None):
        super().__init__(env, seed)
        core = env.unwrapped
        if core.victim.output != "label":
            raise ValueError(f"CopycatCNN steals with labels only, but this env answers with output="
                             f"{core.victim.output!r}; build it with output=\"label\" (make_agent and "
                             "`knockoff attack --agent copycat` do)")
        qs = core.query_set
        exclude = core.victim_domain if exclude is None else exclude
        names = [exclude] if isinstance(exclude, str) else list(exclude)
        unknown = sorted(set(names) - set(qs.coarse_names))
        if unknown:
            raise ValueError(f"CopycatCNN exclude={names}: no coarse node {unknown} in this hierarchy "
                             f"{qs.coarse_names}; name the nodes of the victim's own domain")
        self.exclude = tuple(names)
        self.allowed = ~np.isin(np.asarray(qs.coarse_names)[qs.coarse_of_label], names)
        images = int(qs.pool_sizes[self.allowed].sum())
        if images < core.budget:
            raise ValueError(f"CopycatCNN: the query set has {images} images outside {names}, fewer than the "
                             f"budget of {core.budget}; lower the budget or exclude fewer nodes")

