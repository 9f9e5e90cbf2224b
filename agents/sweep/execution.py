"""Running a sweep's trials as Ray tasks: embedded Ray by default, a cluster with ``address``.

Each unfinished trial becomes one task with ``num_cpus=cpus_per_trial`` and
``num_gpus=gpus_per_trial`` (fractions allowed, so small attacks share a GPU); Ray's
scheduler then bounds how many run at once by what the machine (or cluster) has. A task
whose worker dies is retried ``max_retries`` times (it resumes from the trial's journal);
an exception inside the attack is not retried but recorded in the trial's result.
Finished trials are skipped, so re-running the same sweep resumes it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from tqdm.auto import tqdm

from .results import write_results
from .spec import SweepSpec, Trial, load_spec
from .trial import RESULT, _write, failure, finished, run_trial, trial_dir


def run_sweep(spec: SweepSpec | str | Path | dict, out: str | Path, *, address: str | None = None,
              num_cpus: int | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
              max_retries: int = 2, progress: bool = True):
    """Run every unfinished trial of ``spec`` under ``out``; returns the results table (a DataFrame).

    Uses the running Ray instance if ``ray.init`` was already called, else starts one:
    in-process with ``num_cpus`` (default: all cores) or connected to ``address``.
    Writes ``out/spec.json``, each trial's directory, ``results.csv`` and ``results.parquet``.
    On ``KeyboardInterrupt`` the pending tasks are cancelled, the table of what finished is
    written, and the interrupt is re-raised; running the sweep again resumes it.
    """
    import ray

    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)
    if cpus_per_trial <= 0 or gpus_per_trial < 0:
        raise ValueError(f"cpus_per_trial={cpus_per_trial} must be > 0 and gpus_per_trial={gpus_per_trial} ≥ 0")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "spec.json", spec.to_dict())
    trials = spec.trials()
    pending = [t for t in trials if not finished(trial_dir(out, t))]
    if pending:
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
        try:
            _run(ray, pending, out, len(trials) - len(pending), len(trials), cpus_per_trial, gpus_per_trial,
                 max_retries, progress)
        finally:
            if started_here:
                ray.shutdown()
    return write_results(out, trials)


def _run(ray, pending: list[Trial], out: Path, done: int, total: int, cpus: float, gpus: float,
         retries: int, progress: bool) -> None:
    task = ray.remote(_remote_trial).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries,
                                             retry_exceptions=False)
    threads = max(1, int(cpus))
    refs = {task.remote(t, str(trial_dir(out, t)), threads): t for t in pending}
    failed = 0
    with tqdm(total=total, initial=done, unit="trial", desc="sweep", disable=not progress) as bar:
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)  # returns to Python: Ctrl-C works
                if not ready:
                    continue
                trial = refs.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except ray.exceptions.RayError as err:  # the worker died more than max_retries times
                    result = failure(f"{type(err).__name__}: {err}")
                    _write(trial_dir(out, trial) / RESULT, result)
                failed += result["status"] != "ok"
                bar.update(1)
                bar.set_postfix(failed=failed)
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise


def _remote_trial(trial: Trial, directory: str, threads: int) -> dict:
    os.environ.setdefault("TQDM_DISABLE", "1")
    return run_trial(trial, directory, threads)


def spec_of(out: str | Path) -> SweepSpec:
    """The spec a sweep directory was last run with."""
    path = Path(out) / "spec.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: SWEEP_DIR must be a folder written by `knockoff sweep`")
    return load_spec(json.loads(path.read_text()))
