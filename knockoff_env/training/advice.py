"""What to try when a knockoff stays near chance: what differs, in this run, from a run that works.

A run that works is one trained with the recipe that fits how its knockoff was initialised
(``"paper"`` for pretrained knockoffs, ``"scratch"`` otherwise; :mod:`.recipes`), for that
recipe's epochs, on a transfer set with at least ``QUERIES_PER_CLASS`` queries per victim class
whose answers name at least half of the victim's classes as top-1. The advice names each way this run departs from
that, with its value and the working one, rather than a list of everything one could try.
"""
from __future__ import annotations

from .recipes import RECIPES, Recipe

QUERIES_PER_CLASS = 20  # below this a transfer set is small: the digits world's scratch knockoff needs ~20 a class
COMPARED = ("optimizer", "lr", "momentum", "batch_size", "schedule", "weight_decay", "epochs")


def working_recipe(pretrained: bool | None) -> Recipe:
    """The recipe of a run that works for a knockoff initialised this way."""
    return RECIPES["paper" if pretrained else "scratch"]


def recipe_differences(recipe: Recipe, pretrained: bool | None, fields=COMPARED) -> list[str]:
    """How ``recipe`` departs from the working one: the wrong recipe for the initialisation, or
    the fields changed from it (each with both values)."""
    working = working_recipe(pretrained)
    if recipe.name in RECIPES and recipe.name != working.name:
        init = "pretrained weights" if pretrained else "random weights" + (
            "" if pretrained is False else " (knockoff_pretrained is unset; say True if it is pretrained)")
        return [f"recipe '{recipe.name}' is made for {'random' if recipe.name == 'scratch' else 'pretrained'} "
                f"knockoffs but this one starts from {init}: use recipe='{working.name}' (or 'auto')"]
    return [f"{field} {getattr(recipe, field)!r} where the '{working.name}' recipe that works uses "
            f"{getattr(working, field)!r}" for field in fields if getattr(recipe, field) != getattr(working, field)]


def data_differences(queries: int, num_classes: int, answered_classes: int) -> list[str]:
    """A transfer set too small, or answers covering too few of the victim's classes."""
    notes = []
    if queries < QUERIES_PER_CLASS * num_classes:
        notes.append(f"budget: {queries} queries, {queries / num_classes:.1f} per victim class, where runs that "
                     f"work have at least {QUERIES_PER_CLASS} (a larger budget)")
    if answered_classes < num_classes / 2:  # a class or two unanswered is common in runs that work
        notes.append(f"answers: the victim's top-1 names only {answered_classes} of its {num_classes} classes (a "
                     "larger budget, or a query set closer to the victim's task)")
    return notes


def offline_advice(recipe: Recipe, pretrained: bool | None, best_epoch: int, queries: int, num_classes: int,
                   answered_classes: int) -> str:
    """What to try after an offline fit near chance."""
    notes = recipe_differences(recipe, pretrained) + data_differences(queries, num_classes, answered_classes)
    if best_epoch == recipe.epochs and not any(n.startswith("epochs") for n in notes):
        notes.append(f"epochs: the held-out agreement was still rising at the last of {recipe.epochs} (more epochs)")
    return _join(notes, recipe, pretrained)


def online_advice(recipe: Recipe, pretrained: bool | None, online_lr: float, queries: int, num_classes: int,
                  answered_classes: int, retraining: bool) -> str:
    """What to try after an online knockoff near chance (``retraining``: an offline phase follows)."""
    working = working_recipe(pretrained)
    notes = [n for n in recipe_differences(recipe, pretrained, fields=()) if n.startswith("recipe")]
    if not notes and online_lr < working.online_lr:
        notes.append(f"knockoff_lr {online_lr:g} where the '{working.name}' recipe uses {working.online_lr:g}")
    notes += data_differences(queries, num_classes, answered_classes)
    if retraining and not notes:  # the reported knockoff is the retrained one; this is about the loss reward
        return f"A larger knockoff_lr than {online_lr:g} may give an adaptive agent's loss reward more signal."
    if not retraining:
        notes.append(f"no offline phase: this run skipped it (retrain_epochs=None trains the recipe's {recipe.epochs} "
                     "epochs; on the command line, leave out --retrain-epochs 0)")
    return _join(notes, recipe, pretrained)


def _join(notes: list[str], recipe: Recipe, pretrained: bool | None) -> str:
    if notes:
        return "What differs from runs that work: " + "; ".join(notes) + "."
    init = "pretrained" if pretrained else "randomly initialised"
    return (f"This run already uses what works for {init} knockoffs (recipe '{recipe.name}', lr {recipe.lr:g}, "
            f"{recipe.epochs} epochs, at least {QUERIES_PER_CLASS} queries per class), so check that the knockoff "
            "can represent the task and that the query set holds images the victim tells apart.")
