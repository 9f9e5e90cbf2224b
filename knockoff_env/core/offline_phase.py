"""Phase (b) of the attack and its evaluation, as methods of :class:`~knockoff_env.KnockoffEnv`:
a fresh knockoff trained offline on the transfer set, scored against the victim."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import Subset

from ..training.offline import OfflineFit, fit_offline
from ..training.online import build_model
from ..training.recipes import Recipe, resolve_recipe


class OfflinePhase:
    """What the env offers once the transfer set is paid for; the env provides the parts."""

    def transfer_images(self) -> torch.Tensor | Subset:
        """The queried images, in query order (a tensor, or a Subset of the query dataset)."""
        return self.query_set.gather(self.transfer_set.view()[0])

    def retrain(self, epochs: int | None = None, **kwargs) -> nn.Module:
        """Phase (b): a fresh knockoff trained on the transfer set (see :meth:`fit`); returns the model."""
        return self.fit(epochs, **kwargs).model

    def fit(self, epochs: int | None = None, *, recipe: str | Recipe | None = None, holdout: float = 0.1,
            seed: int = 0, progress: bool = False, workers: int = 0, on_epoch=None, warn: bool = True,
            **overrides) -> OfflineFit:
        """Phase (b): train a fresh knockoff on the transfer set with the env's recipe (or ``recipe``),
        ``epochs`` (default: the recipe's) and any other recipe field overridden by keyword;
        ``holdout`` of the queries judge every epoch and the best epoch is kept (see
        :mod:`~knockoff_env.training.offline`). ``seed`` sets the fresh knockoff's initial weights,
        the held-out split and the batches' order: the same transfer set and seed give the same fit."""
        if len(self.transfer_set) == 0:
            raise RuntimeError("the transfer set is empty; play an episode before retraining")
        with torch.random.fork_rng(devices=[]):  # the fresh knockoff's weights follow ``seed``, not the caller's RNG
            torch.manual_seed(seed)
            model = build_model(self._knockoff_source)
        if isinstance(self._knockoff_source, nn.Module):
            model.load_state_dict(self.knockoff.initial_state)
        if epochs is not None:
            overrides["epochs"] = epochs
        _, outputs = self.transfer_set.view()
        pretrained = self.knockoff_pretrained
        return fit_offline(model, self.transfer_images(), torch.from_numpy(outputs.copy()), device=self.device,
                           recipe=self.recipe if recipe is None else resolve_recipe(recipe, pretrained=pretrained),
                           pretrained=pretrained, holdout=holdout, seed=seed, progress=progress, workers=workers,
                           on_epoch=on_epoch, warn=warn, **self._precision, **overrides)

    def evaluate(self, model: nn.Module | None = None) -> dict[str, Any]:
        """The knockoff (or ``model``) against the victim on the eval set: top-1 accuracy of both, their
        ratio (the paper's "×victim"), agreement, per-class accuracy on the classes seen and unseen in
        the transfer set (supplement D.2), the defence's cost, and ``not_measured`` (see
        :class:`~knockoff_env.training.evaluation.Evaluation`)."""
        if self.evaluation is None:
            raise RuntimeError("no eval_set was given; pass eval_set=(images, labels) or a Dataset")
        return self.evaluation.report(model or self.knockoff.model, self.transfer_set.view()[1])
