"""One trial of a sweep: a durable :func:`agents.run_attack` in its own run directory.

A trial directory (``SWEEP_DIR/trials/<trial id>/`` by default) holds the attack's run files
(journal, checkpoint, TensorBoard logs, transfer set, ``summary.json``) plus

* ``trial.json`` — the trial's options, written before it starts;
* ``starts.jsonl`` — one line per time the trial started (time, pid, host, Ray node, whether
  it resumed), so a re-run's work can be audited;
* ``clock.json`` — the seconds each start has run so far, rewritten every few seconds, so
  that a trial's total time counts the starts that were killed too;
* ``result.json`` — written last, atomically: the summary, seen/unseen per-class accuracy,
  ``status`` (``ok``, ``failed`` or ``interrupted``), ``error``, where it ran and its total
  seconds. A trial is finished when this file says ``ok``; anything else is run again
  (resumed from its journal) by the next sweep.

The result is also the trial's return value: the sweep's driver writes it into its own
sweep folder, so the results table is complete even when a node wrote the trial directory
on storage the driver cannot see.

An exclusive lock on ``.lock`` keeps two processes (say, a killed sweep's orphaned worker
and its re-run) from writing one trial directory at once.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

from .spec import Trial

TRIALS = "trials"  # trial directories live in SWEEP_DIR/trials/<trial id>/
RESULT, OPTIONS, STARTS, CLOCK, LOCK = "result.json", "trial.json", "starts.jsonl", "clock.json", ".lock"
TICK = 1.0  # seconds between two rewrites of clock.json: a killed start is counted to within this


def trial_dir(out: str | Path, trial: Trial) -> Path:
    """Where the sweep in ``out`` keeps ``trial``'s directory."""
    return Path(out) / TRIALS / trial.id


def finished(directory: Path) -> bool:
    """Whether the trial in ``directory`` has a result with status ``ok``."""
    return read_result(directory).get("status") == "ok"


def read_result(directory: Path) -> dict:
    """The trial's ``result.json``, or ``{}`` if it has none (yet)."""
    try:
        return json.loads((Path(directory) / RESULT).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def run_trial(trial: Trial, directory: str | Path, threads: int = 1, node: str | None = None) -> dict:
    """Run (or resume) ``trial`` in ``directory`` and write its ``result.json``; returns the result.

    Any exception of the attack is caught and recorded as ``status: failed`` with its error,
    so one bad cell does not stop the grid; an attack stopped by Ctrl-C is ``interrupted``
    (its journal resumes it). ``threads`` caps torch's intra-op threads so that trials running
    side by side do not oversubscribe the cores; ``node`` is the Ray node id, if any.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # waits while another process still works on this trial
        if finished(directory):
            return read_result(directory)
        _write(directory / OPTIONS, {"id": trial.id, **asdict(trial)})
        journal = directory / "journal.bin"
        if journal.exists() and journal.stat().st_size == 0:
            journal.unlink()  # killed between creating the journal and writing its header: nothing paid
        resume = journal.exists()
        where = {"node": node, "host": socket.gethostname()}
        with open(directory / STARTS, "a") as starts:
            starts.write(json.dumps({"time": time.time(), "pid": os.getpid(), **where, "resumed": resume}) + "\n")
        with _Clock(directory / CLOCK) as clock:
            try:
                result = {"status": "ok", "error": None, **_attack(trial, directory, threads, resume)}
                if result.pop("interrupted", False):
                    result.update(status="interrupted", error="stopped by Ctrl-C; the next run resumes it")
            except Exception as err:  # noqa: BLE001 - recorded in the results table, the sweep goes on
                result = failure(f"{type(err).__name__}: {err}", traceback.format_exc())
        result.update(resumed=resume, starts=len((directory / STARTS).read_text().splitlines()),
                      total_seconds=clock.total, **where)
        _write(directory / RESULT, result)
        return result


def failure(error: str, details: str = "") -> dict:
    """The result of a trial that did not finish."""
    return {"status": "failed", "error": error, "traceback": details}


class _Clock:
    """Counts this start's seconds into ``clock.json`` beside the earlier starts' (a thread ticks)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.past = [float(s) for s in json.loads(path.read_text())["starts"]]
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            self.past = []
        self.start, self.stop, self.elapsed = time.perf_counter(), threading.Event(), None
        self.thread = threading.Thread(target=self._tick, daemon=True)

    @property
    def total(self) -> float:
        """All starts' seconds: the earlier ones and this one (up to its end, once it ended)."""
        return sum(self.past) + (self.elapsed if self.elapsed is not None else time.perf_counter() - self.start)

    def _save(self) -> None:
        now = self.elapsed if self.elapsed is not None else time.perf_counter() - self.start
        _write(self.path, {"starts": [*self.past, now]}, sync=False)

    def _tick(self) -> None:
        while not self.stop.wait(TICK):
            self._save()

    def __enter__(self) -> "_Clock":
        self._save()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.elapsed = time.perf_counter() - self.start
        self._save()


def _attack(trial: Trial, directory: Path, threads: int, resume: bool) -> dict:
    import gymnasium as gym
    import torch

    import knockoff_env  # noqa: F401  (registers the ids)

    from .. import agent_options, make_agent, run_attack
    from ..registry import env_preset

    torch.set_num_threads(max(1, threads))
    env = gym.make(trial.env, **{**env_preset(trial.agent), **trial.env_options})
    takes = agent_options(trial.agent)  # a grid over agents gives each agent the options it has
    agent = make_agent(trial.agent, env, seed=trial.seed,
                       **{k: v for k, v in trial.agent_options.items() if k in takes})
    result = run_attack(env, agent, seed=trial.seed, logdir=directory, eval_every=trial.run["eval_every"],
                        retrain_epochs=trial.run["retrain_epochs"], progress=False,
                        checkpoint_every=trial.run["checkpoint_every"], resume=resume)
    result.pop("figures", None)
    env.close()
    return result


def _write(path: Path, data: dict, sync: bool = True) -> None:
    """Atomically: a reader sees the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    tmp.replace(path)
