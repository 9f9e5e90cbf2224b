"""A small custom world registered as an env id: ``Knockoff-Glyphs-v0``.

The coloured-glyph world of the tests (``tests/glyph_world.py``: six procedurally drawn glyph
classes, a small CNN victim trained once per process, the victim's training glyphs among
1,200 noise and stripe distractors; no download) under a registered id, so that sweeps and
``gym.make`` reach it as ``examples.glyph_world:Knockoff-Glyphs-v0`` (the ``module:Id`` form
imports this module, which registers the id). Run from the repository root.
"""
from __future__ import annotations

from gymnasium.envs.registration import register, registry

from tests.glyph_world import make_glyph_env

ENV_ID = "Knockoff-Glyphs-v0"


def make_glyphs_env(budget: int = 600, **kwargs):
    """``Knockoff-Glyphs-v0``: every ``KnockoffEnv`` option passes through (defence, detector…)."""
    return make_glyph_env(budget=budget, **kwargs)


if ENV_ID not in registry:
    register(id=ENV_ID, entry_point=make_glyphs_env)
