"""The env's speed and runtime switches, apart from the attack itself: where the models run and
how images reach them. None of them changes what the attack does (the draws, answers and
rewards), only how fast it runs."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

import torch


@dataclass(frozen=True)
class EnvOptions:
    """Runtime options of :class:`~knockoff_env.KnockoffEnv`, also accepted as its keywords
    (``gym.make(id, device="cpu", bf16=True)``, ``--env-arg bf16=True``).

    Attributes:
        device: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        bf16: bfloat16 autocast for both models' forward passes (answers and weights stay float32).
        channels_last: channels-last batches and models (faster convolutions on CUDA).
        fetch_workers: threads decoding a Dataset query set's images for each step.
        pin_memory: page-locked batches, for asynchronous copies to the GPU.
        lookahead: True, or a dict of :mod:`~knockoff_env.data.lookahead` options: decode the images
            of probable next steps on worker threads ahead of time (never changes the draws).
        compile_models: ``torch.compile`` both models (True; ``"reduce-overhead"`` = CUDA graphs).
    """

    device: str | torch.device = "auto"
    bf16: bool = False
    channels_last: bool = False
    fetch_workers: int = 0
    pin_memory: bool = False
    lookahead: bool | dict = False
    compile_models: bool | str = False

    @classmethod
    def build(cls, options: "EnvOptions | Mapping | None", keywords: Mapping) -> "EnvOptions":
        """``options`` (an EnvOptions or a dict) with ``keywords`` given to the env on top; an
        unknown name is a TypeError worded as Python words one, naming it."""
        names = {f.name for f in fields(cls)}
        given = dict(options or {}) if not isinstance(options, EnvOptions) else {}
        for name in [*given, *keywords]:
            if name not in names:
                raise TypeError(f"KnockoffEnv.__init__() got an unexpected keyword argument '{name}' "
                                f"(runtime options are {sorted(names)})")
        base = options if isinstance(options, EnvOptions) else cls()
        return replace(base, **given, **keywords)
