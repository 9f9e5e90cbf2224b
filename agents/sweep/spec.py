"""A sweep spec: the env, fixed options, the axes to cross, and the run options; its trials.

A spec is a YAML or TOML file (or a dict) with these keys::

    env: Knockoff-Digits-v0            # registered env id (required)
    env_options: {queries_per_step: 4} # fixed env options, passed to gym.make
    agent: adaptive                    # fixed agent, unless ``agent`` is an axis
    seed: 0                            # fixed seed, unless ``seed`` is an axis
    agent_options: {alpha: 0.3}        # bandit options; each agent takes those it has (see AGENT_KEYS)
    axes:                              # crossed: one trial per combination
      agent: [random, adaptive, adaptive-flat]
      budget: [100, 500, 1000]
      seed: [0, 1, 2]
    run: {eval_every: 100, retrain_epochs: 30, checkpoint_every: 25}

An axis named ``agent``, ``seed`` or an agent option (:data:`AGENT_KEYS`) sets that; any other axis
name is an env option (``budget``, ``reward``, ``tau_d``, ``action_mode``, ``output``,
``defence``, …) passed to ``gym.make``. Before anything runs, :func:`load_spec` checks the
env id, every option name against what the env id's constructor and world builder take,
and every value's kind against their annotations (the CLI's own checks and messages); a
value of the right kind that the env still refuses (``reward: bogus``) fails that trial,
with its error in the results, rather than the sweep.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tomllib
import yaml

from knockoff_env.errors import ConfigError

from ..registry import BUILT, agent_class
from ..registry import agent_options as options_of

SPEC_KEYS = ("env", "env_options", "agent", "seed", "agent_options", "axes", "run")
RUN_KEYS = ("eval_every", "retrain_epochs", "checkpoint_every")
SWEEP_AGENTS = tuple(BUILT)  # agents with state_dict(): durable, so resumable
AGENT_KEYS = tuple(dict.fromkeys(option for name in SWEEP_AGENTS for option in options_of(name)))
DEFAULT_RUN = {"eval_every": None, "retrain_epochs": 0, "checkpoint_every": 25}


class SpecError(ConfigError):
    """A sweep spec that cannot be run; the message says what to fix."""


@dataclass(frozen=True)
class Trial:
    """One attack of the grid: everything :func:`agents.sweep.trial.run_trial` needs."""

    env: str
    env_options: dict
    agent: str
    seed: int
    agent_options: dict
    run: dict
    axes: dict = field(default_factory=dict)  # this trial's value on each axis (for tables and figures)

    @property
    def id(self) -> str:
        """Stable from the options: a readable slug of the axis values plus a hash of everything."""
        config = {k: v for k, v in asdict(self).items() if k != "axes"}
        digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]
        slug = "_".join(f"{k}-{_text(v)}" for k, v in self.axes.items())
        slug = re.sub(r"[^A-Za-z0-9.=_-]+", "", slug)[:80]
        return f"{slug}_{digest}" if slug else digest


@dataclass(frozen=True)
class SweepSpec:
    env: str
    env_options: dict
    agent: str
    seed: int
    agent_options: dict
    axes: dict
    run: dict

    def trials(self) -> list[Trial]:
        """The cross product of the axes, in the order the axes are listed."""
        names = list(self.axes)
        out = []
        for values in itertools.product(*(self.axes[n] for n in names)):
            point = dict(zip(names, values))
            env_options, agent_options = dict(self.env_options), dict(self.agent_options)
            agent, seed = point.get("agent", self.agent), point.get("seed", self.seed)
            for name, value in point.items():
                if name in AGENT_KEYS:
                    agent_options[name] = value
                elif name not in ("agent", "seed"):
                    env_options[name] = value
            out.append(Trial(self.env, env_options, agent, seed, agent_options, dict(self.run), point))
        return out

    def to_dict(self) -> dict:
        """The spec as :func:`load_spec` reads it back."""
        return {k: v for k, v in asdict(self).items() if k not in self.axes}


def load_spec(source: str | Path | dict) -> SweepSpec:
    """A checked spec from a ``.yaml``/``.yml``/``.toml`` file or a dict."""
    if isinstance(source, dict):
        raw, where = source, "the spec"
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"sweep spec {path} not found (examples: examples/sweeps/*.yaml)")
        where = str(path)
        text = path.read_text()
        try:
            if path.suffix in (".yaml", ".yml"):
                raw = yaml.safe_load(text)
            elif path.suffix == ".toml":
                raw = tomllib.loads(text)
            else:
                raise SpecError(f"{path}: a sweep spec is a .yaml, .yml or .toml file")
        except (yaml.YAMLError, tomllib.TOMLDecodeError) as err:
            raise SpecError(f"{path} does not parse: {err}") from err
    return _check(raw, where)


def _check(raw, where: str) -> SweepSpec:
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be a mapping with keys {SPEC_KEYS}")
    unknown = sorted(set(raw) - set(SPEC_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown keys {unknown}; a spec has {SPEC_KEYS}")
    if not isinstance(raw.get("env"), str):
        raise SpecError(f"{where}: 'env' must name a registered env id, e.g. env: Knockoff-Digits-v0")
    env_options, agent_options, axes = (_mapping(raw, k, where) for k in ("env_options", "agent_options", "axes"))
    run = _mapping(raw, "run", where)
    bad_run = sorted(set(run) - set(RUN_KEYS))
    if bad_run:
        raise SpecError(f"{where}: unknown run options {bad_run}; choose from {RUN_KEYS}")
    run = {**DEFAULT_RUN, **run}
    for key, value in run.items():
        minimum = 0 if key == "retrain_epochs" else 1
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < minimum):
            raise SpecError(f"{where}: run.{key}={value!r} must be an integer ≥ {minimum}")
    if run["checkpoint_every"] is None:
        raise SpecError(f"{where}: run.checkpoint_every must be set: trials are journaled so that they resume")
    for name, values in axes.items():
        if not isinstance(values, list) or not values:
            raise SpecError(f"{where}: axis {name!r} must be a non-empty list of values, got {values!r}")
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise SpecError(f"{where}: axis {name!r} repeats a value: {values}")
        clash = name in env_options or name in agent_options or (name in ("agent", "seed") and name in raw)
        if clash:
            raise SpecError(f"{where}: {name!r} is both an axis and a fixed option; keep one")
    bad_agent = sorted(set(map(str, axes.get("agent", [raw.get("agent", "adaptive")]))) - set(SWEEP_AGENTS))
    if bad_agent:
        raise SpecError(f"{where}: agents {bad_agent} cannot be swept; choose from {SWEEP_AGENTS} "
                        "(sweeps need agents that checkpoint, so trials resume)")
    seeds = axes.get("seed", [raw.get("seed", 0)])
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise SpecError(f"{where}: seeds must be integers, got {seeds}")
    bad_agent_options = sorted(set(agent_options) - set(AGENT_KEYS))
    if bad_agent_options:
        raise SpecError(f"{where}: unknown agent_options {bad_agent_options}; choose from {AGENT_KEYS}")
    _check_options_apply(agent_options, axes, raw, where)
    spec = SweepSpec(raw["env"], env_options, raw.get("agent", "adaptive"), raw.get("seed", 0), agent_options,
                     axes, run)
    _check_options(spec, where)
    return spec


def _check_options(spec: SweepSpec, where: str) -> None:
    """Every trial's env id, option names and value kinds, as the CLI checks them: before Ray starts."""
    import inspect

    from knockoff_env.worlds.registry import check_env_id, check_env_options, check_option_types, env_parameters

    env_axes = [n for n in spec.axes if n not in ("agent", "seed", *AGENT_KEYS)]
    agents = [str(a) for a in spec.axes.get("agent", [spec.agent])]
    bandit = {}  # the parameters of the swept agents' classes, by option name
    for name in agents:
        bandit.update(inspect.signature(agent_class(name)).parameters)
    try:
        if not _registered(spec.env):
            check_env_id(spec.env)
        check_env_options(spec.env, [*spec.env_options, *env_axes])
        parameters = env_parameters(spec.env.split(":", 1)[-1])
        check_option_types(spec.env_options, parameters, spec.env)
        check_option_types(spec.agent_options, bandit, "agent")
        for name, values in spec.axes.items():
            for value in values:
                if name in AGENT_KEYS:
                    check_option_types({name: value}, bandit, "agent")
                elif name in env_axes:
                    check_option_types({name: value}, parameters, spec.env)
    except ConfigError as err:
        raise SpecError(f"{where}: {err}") from err


def _registered(env_id: str) -> bool:
    """Whether gymnasium knows ``env_id``; a ``module:Id`` first imports the module that registers it,
    as ``gym.make`` does in each trial."""
    import importlib

    import gymnasium as gym

    import knockoff_env  # noqa: F401  (registers the ids)
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"env {env_id!r}: cannot import {module!r}, the module that should register "
                              f"{name!r} ({err})", "check the module name and that it is on PYTHONPATH on "
                              "every node") from err
    try:
        gym.spec(name)
    except gym.error.Error:
        return False
    return True


def _check_options_apply(options: dict, axes: dict, raw: dict, where: str) -> None:
    """Each agent option (fixed or an axis) is taken by at least one of the swept agents."""
    agents = [str(a) for a in axes.get("agent", [raw.get("agent", "adaptive")])]
    for name in [*options, *(a for a in axes if a in AGENT_KEYS)]:
        if not any(name in options_of(agent) for agent in agents):
            takers = [agent for agent in SWEEP_AGENTS if name in options_of(agent)]
            raise SpecError(f"{where}: agent option {name!r} applies to none of the agents {agents}; "
                            f"it is an option of {takers}")


def _mapping(raw: dict, key: str, where: str) -> dict:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise SpecError(f"{where}: {key!r} must be a mapping, got {value!r}")
    return dict(value)


def _text(value) -> str:
    if isinstance(value, (list, tuple)):
        return "+".join(map(_text, value))
    return str(value)
