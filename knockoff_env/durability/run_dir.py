"""A run directory (RUN_DIR), as an attack writes it and later commands read it back:

* ``config.json``: ``{"env_id": str, "env_kwargs": {...}, "agent": str, "seed": int, "budget": int}``
* ``transfer_set.npz``: the transfer set: ``indices`` (int64 query-set indices, in query order) and
  ``outputs`` (float32 victim answers), loaded without unpickling
* ``synthetic_images.npz``: only when the strategy made its queries (Jacobian augmentation): ``images``
  (float32) and ``positions`` (the label position each inherited), the images at indices
  ``len(query_set)`` onwards of the transfer set
* ``knockoff.pt``: the reported knockoff's state dict (``torch.load(weights_only=True)``)
* ``summary.json``: the attack's summary

A durable run also keeps its journal and checkpoint there (see ``agents.durable``).
"""
from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

RUN_KEYS = ("env_id", "env_kwargs", "seed")
CONFIG, TRANSFER_SET, KNOCKOFF, SUMMARY = "config.json", "transfer_set.npz", "knockoff.pt", "summary.json"
SYNTHETIC = "synthetic_images.npz"


def is_json(value) -> bool:
    """Whether ``value`` survives JSON (only such env options go into configs)."""
    try:
        json.dumps(value)
        return True
    except TypeError:
        return False


def write_transfer_set(path: str | Path, indices: np.ndarray, outputs: np.ndarray) -> Path:
    """The transfer set as an ``.npz`` of ``indices`` and ``outputs``; returns its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, indices=indices, outputs=outputs)
    return path


def read_transfer_set(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, outputs)`` of a transfer-set file; refuses anything that is not one."""
    try:
        with np.load(path, allow_pickle=False) as data:
            indices, outputs = data["indices"], data["outputs"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path} is not a transfer set saved by TransferSet.save: {err}") from err
    if indices.ndim != 1 or outputs.ndim != 2 or len(indices) != len(outputs):
        raise ValueError(f"{path}: indices {indices.shape} and outputs {outputs.shape} do not match")
    return indices, outputs


def save_run(run_dir: str | Path, env: gym.Env, model: torch.nn.Module, summary: dict) -> None:
    """Transfer set (npz), knockoff weights (state dict), config and summary (JSON) into ``run_dir``."""
    run_dir, core = Path(run_dir), env.unwrapped
    core.transfer_set.save(run_dir / TRANSFER_SET)
    if core.query_set.synthetic is not None:  # the images a strategy made are part of the transfer set
        np.savez(run_dir / SYNTHETIC, images=core.query_set.synthetic.numpy(),
                 positions=core.query_set.synthetic_positions)
    torch.save(model.state_dict(), run_dir / KNOCKOFF)
    spec = getattr(env, "spec", None) or getattr(core, "spec", None)
    if spec is not None:
        kwargs = {k: v for k, v in spec.kwargs.items() if is_json(v)}
        config = {"env_id": spec.id, "env_kwargs": kwargs, "agent": summary["agent"], "seed": summary["seed"],
                  "budget": core.budget}
        (run_dir / CONFIG).write_text(json.dumps(config, indent=2))
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2))


def load_run(run_dir: str | Path) -> tuple[dict, gym.Env]:
    """(config, env with the run's transfer set loaded) for a RUN_DIR."""
    config_path = config_path_of(run_dir)
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config_path} is not valid JSON: {err}") from err
    missing = [k for k in RUN_KEYS if not isinstance(config, dict) or k not in config]
    if missing or not isinstance(config["env_kwargs"], dict):
        raise ValueError(f"{config_path} needs {list(RUN_KEYS)} with env_kwargs an object; missing {missing}")
    transfer_path = Path(run_dir) / TRANSFER_SET
    if not transfer_path.exists():
        raise FileNotFoundError(f"{transfer_path} not found; the run saved no transfer set")
    indices, outputs = read_transfer_set(transfer_path)
    env = gym.make(config["env_id"], **config["env_kwargs"])
    world = env.unwrapped
    if (Path(run_dir) / SYNTHETIC).exists():
        with np.load(Path(run_dir) / SYNTHETIC, allow_pickle=False) as made:
            world.query_set.load_synthetic_state({"synthetic": made["images"], "synthetic_positions": made["positions"],
                                                  "synthetic_queried": np.ones(len(made["positions"]), bool)})
    outside = len(indices) > 0 and (indices.min() < 0 or indices.max() >= world.query_set.size_with_synthetic)
    if outputs.shape[1] != world.num_classes or outside or len(indices) > world.budget:
        raise ValueError(f"{transfer_path} does not fit {config['env_id']} with these env_kwargs: "
                         f"{outputs.shape[1]} classes for a {world.num_classes}-class victim, indices "
                         f"outside its {len(world.query_set)}-image query set, or more than its budget "
                         f"of {world.budget} queries")
    world.transfer_set.clear()
    world.transfer_set.append(indices, outputs)
    return config, env


def config_path_of(run_dir: str | Path) -> Path:
    path = Path(run_dir) / CONFIG
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; RUN_DIR must be a folder written by `knockoff attack`")
    return path
