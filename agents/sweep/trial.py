"""One trial of a sweep: a durable :func:`agents.run_attack` in its own run directory.

A trial directory holds the attack's run files (journal, checkpoint, TensorBoard logs,
transfer set, ``summary.json``) plus

* ``trial.json`` — the trial's options, written before it starts;
* ``starts.jsonl`` — one line per time the trial started (pid, whether it resumed), so a
  re-run's work can be audited;
* ``result.json`` — written last, atomically: the summary, seen/unseen per-class accuracy,
  ``status`` (``ok`` or ``failed``) and ``error``. A trial is finished when this file
  says ``ok``; anything else is run again (resumed from its journal) by the next sweep.

An exclusive lock on ``.lock`` keeps two processes (say, a killed sweep's orphaned worker
and its re-run) from writing one trial directory at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from .spec import Trial

RESULT, OPTIONS, STARTS, LOCK = "result.json", "trial.json", "starts.jsonl", ".lock"


def finished(trial_dir: Path) -> bool:
    """Whether the trial in ``trial_dir`` has a result with status ``ok``."""
    try:
        return json.loads((Path(trial_dir) / RESULT).read_text()).get("status") == "ok"
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def run_trial(trial: Trial, trial_dir: str | Path, threads: int = 1) -> dict:
    """Run (or resume) ``trial`` in ``trial_dir`` and write its ``result.json``; returns the result.

    Any exception of the attack is caught and recorded as ``status: failed`` with its error,
    so one bad cell does not stop the grid. ``threads`` caps torch's intra-op threads so that
    trials running side by side do not oversubscribe the cores.
    """
    trial_dir = Path(trial_dir)
    trial_dir.mkdir(parents=True, exist_ok=True)
    with open(trial_dir / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process still works on this trial
        if finished(trial_dir):
            return json.loads((trial_dir / RESULT).read_text())
        _write(trial_dir / OPTIONS, {"id": trial.id, **asdict(trial)})
        journal = trial_dir / "journal.bin"
        if journal.exists() and journal.stat().st_size == 0:
            journal.unlink()  # killed between creating the journal and writing its header: nothing paid
        resume = journal.exists()
        with open(trial_dir / STARTS, "a") as starts:
            starts.write(json.dumps({"time": time.time(), "pid": os.getpid(), "resumed": resume}) + "\n")
        start = time.perf_counter()
        try:
            result = {"status": "ok", "error": None, **_attack(trial, trial_dir, threads, resume)}
        except Exception as err:  # noqa: BLE001 - recorded in the results table, the sweep goes on
            result = failure(f"{type(err).__name__}: {err}", traceback.format_exc())
            result["seconds"] = time.perf_counter() - start
        result["resumed"] = resume
        _write(trial_dir / RESULT, result)
        return result


def failure(error: str, details: str = "") -> dict:
    """The result of a trial that did not finish."""
    return {"status": "failed", "error": error, "traceback": details}


def _attack(trial: Trial, trial_dir: Path, threads: int, resume: bool) -> dict:
    import gymnasium as gym
    import torch

    import knockoff_env  # noqa: F401  (registers the ids)
    from agents import agent_options, make_agent, run_attack
    from knockoff_env.commands import evaluate_model

    torch.set_num_threads(max(1, threads))
    env = gym.make(trial.env, **trial.env_options)
    takes = agent_options(trial.agent)  # a grid over agents gives each agent the options it has
    agent = make_agent(trial.agent, env, seed=trial.seed,
                       **{k: v for k, v in trial.agent_options.items() if k in takes})
    result = run_attack(env, agent, seed=trial.seed, logdir=trial_dir, eval_every=trial.run["eval_every"],
                        retrain_epochs=trial.run["retrain_epochs"], progress=False,
                        checkpoint_every=trial.run["checkpoint_every"], resume=resume)
    core = env.unwrapped
    core.knockoff.model.load_state_dict(torch.load(trial_dir / "knockoff.pt", map_location=core.device,
                                                   weights_only=True))  # the reported (maybe retrained) one
    report = evaluate_model(env, core.knockoff.model)
    keep = ("seen_classes", "unseen_classes", "seen_class_accuracy", "unseen_class_accuracy")
    result.update({k: report[k] for k in keep})
    result.pop("figures", None)
    env.close()
    return result


def _write(path: Path, data: dict) -> None:
    """Atomically: a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
