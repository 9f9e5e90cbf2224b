"""Pieces every data-backed world shares: its victim, its hierarchy option and its default budget."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..victim.endpoints import open_victim
from ..victim.training import DEFAULT_ARCH, default_checkpoint, load_victim
from .hierarchy import load_hierarchy, validate_hierarchy


def world_victim(victim_dataset: str, root: Path, checkpoint, options: dict) -> tuple:
    """The world's victim and what the world needs to know of it (``num_classes``,
    ``image_size``, ``arch``): the local checkpoint, or, when ``options["victim"]`` is the URL
    of a served victim, the black box :func:`~knockoff_env.victim.endpoints.open_victim` gives, described by its
    ``/health`` (the knockoff then takes the dataset's default architecture unless ``arch``
    is given). ``options`` are the env's; the victim and ``remote`` options are taken out."""
    url = options.pop("victim", None)
    if url is None:
        options.pop("remote", None)
        return load_victim(checkpoint or default_checkpoint(victim_dataset, root), victim_dataset, root)
    if not isinstance(url, str):
        raise TypeError(f"victim={url!r}: a registered world takes its own victim or the URL of a served one "
                        "(`knockoff serve`); for any other victim build KnockoffEnv(victim=...) yourself")
    output = {k: options[k] for k in ("output", "top_k", "decimals", "device") if k in options}
    victim = open_victim(url, **output, **dict(options.pop("remote", None) or {}))
    return victim, {"num_classes": victim.num_classes, "image_size": victim.input_shape[-1],
                    "arch": DEFAULT_ARCH[victim_dataset]}


def resolve_hierarchy(hierarchy, labels: np.ndarray, auto_path: Path | None = None,
                      build_command: str = "") -> dict[str, list[int]] | None:
    """The ``hierarchy`` option of a world as KnockoffEnv takes it.

    ``None``: one coarse node with every label. A mapping: used as given (validated). A path:
    a JSON file (see :mod:`knockoff_env.hierarchy`). ``"auto"``: the file at ``auto_path``,
    which must have been built (the error names ``build_command``).
    """
    if hierarchy is None:
        return None
    if isinstance(hierarchy, Mapping):
        return validate_hierarchy(hierarchy, labels)
    if hierarchy == "auto":
        if auto_path is None:
            return None
        if not auto_path.exists():
            raise FileNotFoundError(
                f"no label hierarchy at {auto_path}; build it with\n  {build_command}\n"
                "or pass hierarchy=None (one coarse node), hierarchy=PATH (a JSON file) or a dict "
                "{coarse name: [label ids]}")
        return load_hierarchy(auto_path, labels)[0]
    if isinstance(hierarchy, (str, Path)):
        return load_hierarchy(hierarchy, labels)[0]
    raise TypeError(f"hierarchy={hierarchy!r}: give 'auto', None, a JSON file path or a dict {{coarse name: [label ids]}}")


def default_budget(budget: int | None, limit: int, query_set_size: int) -> int:
    """``budget`` as given, else the paper's ``limit`` capped at the size of the query set."""
    return min(limit, query_set_size) if budget is None else budget
