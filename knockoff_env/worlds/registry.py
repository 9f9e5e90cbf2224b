"""The registered env ids and the options each accepts, so that a misspelt id or option is
refused (with the nearest name) before any work starts: by the command line, by sweeps, by you."""
from __future__ import annotations

import difflib
import inspect
import os
from dataclasses import fields
from pathlib import Path

from gymnasium.envs.registration import load_env_creator, register, registry

from ..core.env import KnockoffEnv
from ..core.options import EnvOptions
from ..errors import ConfigError

ENV_IDS = {
    "Knockoff-Digits-v0": "knockoff_env.worlds.digits:make_digits_env",
    "Knockoff-Caltech256-v0": "knockoff_env.worlds.paper:make_caltech256_env",
    "Knockoff-CUBS200-v0": "knockoff_env.worlds.paper:make_cubs200_env",
    "Knockoff-Indoor67-v0": "knockoff_env.worlds.paper:make_indoor67_env",
    "Knockoff-Diabetic5-v0": "knockoff_env.worlds.paper:make_diabetic5_env",
    "Knockoff-MNIST-v0": "knockoff_env.worlds.small_scale:make_mnist_env",
    "Knockoff-CIFAR10-v0": "knockoff_env.worlds.small_scale:make_cifar10_env",
    "Knockoff-CIFAR100-v0": "knockoff_env.worlds.small_scale:make_cifar100_env",
}
LIBRARY = str(Path(__file__).resolve().parents[1]) + os.sep  # functions whose **kwargs are followed


def register_worlds() -> None:
    """Register every id of :data:`ENV_IDS` (idempotent: Gymnasium ≥ 1.0 has no plugin entry points)."""
    for env_id, entry_point in ENV_IDS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=entry_point)


def knockoff_ids() -> list[str]:
    """Every registered ``Knockoff-*`` id (this package's and any a user registered)."""
    register_worlds()
    return sorted(k for k in registry if k.startswith("Knockoff-"))


def check_env_id(env_id: str) -> None:
    if env_id.split(":", 1)[-1] not in knockoff_ids():
        raise ConfigError(unknown_env(env_id))


def unknown_env(env_id: str) -> str:
    ids = knockoff_ids()
    close = difflib.get_close_matches(env_id.split(":", 1)[-1], ids, n=1, cutoff=0.5)
    suggestion = f"did you mean {close[0]}? " if close else ""
    return f"unknown env id {env_id!r} — {suggestion}the registered ids are {', '.join(ids)}"


def env_option_defaults(env_id: str) -> dict[str, str]:
    """Every keyword an env id accepts, with its default: the entry point's own options, those of
    the world builders it forwards ``**kwargs`` to, :class:`KnockoffEnv`'s and its runtime options."""
    functions = forwarded_to(load_env_creator(registry[env_id.split(":", 1)[-1]].entry_point))
    functions.append(KnockoffEnv.__init__)
    options: dict[str, str] = {}
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in parameters:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name == "self" or p.name in options:
                continue
            if p.kind is p.POSITIONAL_ONLY or p.default is p.empty:
                continue  # set by the world itself (its victim, query set, knockoff)
            options[p.name] = repr(p.default)
    for field in fields(EnvOptions):
        options.setdefault(field.name, repr(field.default))
    return options


def forwarded_to(function) -> list:
    """``function`` and the library's functions it hands its ``**kwargs`` on to (a world's entry
    point to its builder, say), found by name in its code: the keywords an env id accepts."""
    chain, todo = [], [function]
    while todo:
        f = todo.pop()
        if f in chain or not callable(f):
            continue
        chain.append(f)
        code = getattr(f, "__code__", None)
        if code is None or not code.co_flags & inspect.CO_VARKEYWORDS:
            continue
        for name in code.co_names:
            callee = getattr(f, "__globals__", {}).get(name)
            callee_code = getattr(callee, "__code__", None)
            if inspect.isfunction(callee) and callee_code.co_filename.startswith(LIBRARY) \
                    and callee_code.co_flags & inspect.CO_VARKEYWORDS:
                todo.append(callee)
    return chain


def check_env_options(env_id: str, names) -> None:
    """Refuse an option no function on the env id's construction path takes."""
    options = env_option_defaults(env_id.split(":", 1)[-1])
    for name in names:
        if name not in options:
            raise ConfigError(unknown_option(name, env_id, options))


def unknown_option(name: str, env_id: str | None, options: dict[str, str] | None = None) -> str:
    """The message for an option ``env_id`` does not take, with the nearest name and the full list."""
    if not isinstance(env_id, str) or env_id.split(":", 1)[-1] not in knockoff_ids():
        return f"unexpected option {name!r} — remove it; see the env's documentation for its options"
    options = options or env_option_defaults(env_id.split(":", 1)[-1])
    close = difflib.get_close_matches(name, options, n=1)
    suggestion = f"did you mean {close[0]}? " if close else ""
    listed = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"{env_id} has no option {name!r} — {suggestion}its options (with defaults) are: {listed}"
