"""Running a sweep's trials: one after another in this process, or as Ray tasks.

``executor="auto"`` (the default) runs a small sweep on one machine in-process, one trial
after another (embedded Ray's start-up and worker imports cost more than it gives back on a
few short trials), and uses Ray for a cluster (``address``), a Ray instance this process
already started, GPU reservations, and sweeps of at least :data:`RAY_FROM_TRIALS` pending
trials (the crossover measured by ``benchmarks/sweep_speedup.py``); ``"inline"`` or
``"ray"`` chooses. Both executors give a
trial the same ``cpus_per_trial`` torch threads, so they give the same numbers.

On Ray each unfinished trial is one task with ``num_cpus=cpus_per_trial`` and
``num_gpus=gpus_per_trial`` (fractions allowed, so small attacks share a GPU); Ray's
scheduler bounds how many run at once. A task whose worker dies is retried ``max_retries``
times (it resumes from the trial's journal); an exception inside the attack is not retried
but recorded in the trial's result. Each task's result comes back to the driver, which
writes it into the sweep folder: the table is complete whatever storage the nodes wrote
their trial directories to. Before any trial starts, a request no node can satisfy is
refused and the nodes that cannot see the trial folders are named.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from knockoff_env.errors import ConfigError

from .cluster import alive_nodes, check_resources, connect, nodes_missing
from .results import write_results
from .spec import SweepSpec, Trial, load_spec
from .trial import RESULT, TRIALS, _write, failure, finished, run_trial, trial_dir

EXECUTORS = ("auto", "inline", "ray")
RAY_FROM_TRIALS = 8  # auto: Ray from this many pending trials on (benchmarks/sweep_speedup.py, 2 cores)


def run_sweep(spec: SweepSpec | str | Path | dict, out: str | Path, *, address: str | None = None,
              num_cpus: int | None = None, cpus_per_trial: float = 1, gpus_per_trial: float = 0,
              max_retries: int = 2, progress: bool = True, executor: str = "auto",
              trial_root: str | Path | None = None, connect_timeout: float = 10.0):
    """Run every unfinished trial of ``spec`` under ``out``; returns the results table (a DataFrame).

    ``out`` is made absolute (Ray workers do not share the driver's working directory).
    Trial directories go to ``trial_root`` (default ``out/trials``; a node-local folder is
    allowed: results still come back to ``out``). Ray: the running instance if ``ray.init``
    was already called, else a cluster at ``address`` or an embedded one with ``num_cpus``
    (default: all cores). Writes ``out/spec.json``, each trial's ``result.json`` under
    ``out/trials/``, ``results.csv`` and ``results.parquet``. On ``KeyboardInterrupt`` the
    running trials are stopped, the table of what finished is written and the interrupt is
    re-raised; running the sweep again resumes it.
    """
    spec = spec if isinstance(spec, SweepSpec) else load_spec(spec)  # every trial's options checked here
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not one of {EXECUTORS}")
    if not cpus_per_trial > 0 or not gpus_per_trial >= 0:
        raise ConfigError(f"cpus_per_trial={cpus_per_trial} must be > 0 and gpus_per_trial={gpus_per_trial} ≥ 0")
    out = Path(out).expanduser().resolve()
    root = Path(trial_root).expanduser().resolve() if trial_root else out / TRIALS
    trials = spec.trials()
    pending = [t for t in trials if not finished(trial_dir(out, t))]
    chosen, why = choose_executor(executor, len(pending), address, num_cpus, cpus_per_trial, gpus_per_trial)
    out.mkdir(parents=True, exist_ok=True)
    root.mkdir(parents=True, exist_ok=True)
    _write(out / "spec.json", spec.to_dict())
    say = print if progress else (lambda *args, **kwargs: None)
    say(f"sweep: {len(trials)} trials, {len(pending)} to run, executor {chosen} ({why}); folder {out}",
        file=sys.stderr)
    try:
        if pending and chosen == "inline":
            _run_inline(pending, out, root, len(trials), cpus_per_trial, gpus_per_trial, num_cpus, progress)
        elif pending:
            _run_on_ray(pending, out, root, len(trials), address, num_cpus, cpus_per_trial, gpus_per_trial,
                        max_retries, progress, connect_timeout)
    except BaseException:  # Ctrl-C above all: the table of what finished; the rest resumes on the next run
        write_results(out, trials)
        raise
    return write_results(out, trials)


def choose_executor(executor: str, pending: int, address: str | None, num_cpus: int | None,
                    cpus_per_trial: float, gpus_per_trial: float) -> tuple[str, str]:
    """``(executor, reason)``: what ``auto`` picks for this sweep, and why."""
    if executor != "auto":
        return executor, "as asked"
    if address:
        return "ray", f"a cluster at {address}"
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        return "ray", "Ray is already running in this process"
    if gpus_per_trial:
        return "ray", f"{gpus_per_trial:g} GPUs per trial"
    slots = int((num_cpus or os.cpu_count() or 1) // cpus_per_trial)
    if slots < 2:
        return "inline", f"room for {slots} trial at a time on this machine; --executor ray to use Ray anyway"
    if pending < RAY_FROM_TRIALS:
        return "inline", (f"{pending} trials: Ray's start-up pays from about {RAY_FROM_TRIALS} short trials on; "
                          "--executor ray to use it anyway")
    return "ray", f"{pending} trials, {slots} at a time; --executor inline to run them one after another"


def _run_inline(pending: list[Trial], out: Path, root: Path, total: int, cpus: float, gpus: float,
                num_cpus: int | None, progress: bool) -> None:
    """One trial after another in this process, with the torch threads a Ray task would get."""
    import torch
    from tqdm.auto import tqdm

    machine = [{"node": None, "host": "this machine", "CPU": float(num_cpus or os.cpu_count() or 1),
                "GPU": float(torch.cuda.device_count())}]
    check_resources(machine, cpus, gpus, "this machine")
    threads = torch.get_num_threads()
    failed = 0
    try:
        with tqdm(total=total, initial=total - len(pending), unit="trial", desc="sweep", disable=not progress) as bar:
            for trial in pending:
                result = run_trial(trial, root / trial.id, max(1, int(cpus)))
                _keep(out, trial, result)
                if result["status"] == "interrupted":
                    raise KeyboardInterrupt
                failed += result["status"] != "ok"
                bar.update(1)
                bar.set_postfix(failed=failed)
    finally:
        torch.set_num_threads(threads)


def _run_on_ray(pending: list[Trial], out: Path, root: Path, total: int, address: str | None,
                num_cpus: int | None, cpus: float, gpus: float, retries: int, progress: bool,
                timeout: float) -> None:
    import ray

    started_here = not ray.is_initialized()
    if started_here and address:
        connect(ray, address, timeout)
    elif started_here:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        nodes = alive_nodes(ray)
        check_resources(nodes, cpus, gpus, f"the Ray cluster at {address}" if address else "this Ray instance")
        blind = nodes_missing(ray, root, nodes) if address or len(nodes) > 1 else []
        if blind:
            where = "; ".join(f"{n['host']} (node {n['node'][:8]}) {n['why']}" for n in blind)
            print(f"warning: {len(blind)} of {len(nodes)} Ray nodes may not share the trial folders in {root}: {where}. "
                  "A trial's folder (journal, checkpoints, logs) stays on the disk of the node that ran it, so a "
                  "trial interrupted there cannot resume on another node; the results table is complete anyway "
                  "(results come back to this driver). Put the sweep folder on storage every node mounts at the "
                  "same path (NFS, a cluster filesystem) to resume across nodes.", file=sys.stderr)
        _wait(ray, pending, out, root, total, cpus, gpus, retries, progress)
    finally:
        if started_here:
            ray.shutdown()


def _wait(ray, pending: list[Trial], out: Path, root: Path, total: int, cpus: float, gpus: float,
          retries: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    task = ray.remote(_remote_trial).options(num_cpus=cpus, num_gpus=gpus, max_retries=retries,
                                             retry_exceptions=False)
    refs = {task.remote(t, str(root / t.id), max(1, int(cpus))): t for t in pending}
    failed = 0
    with tqdm(total=total, initial=total - len(pending), unit="trial", desc="sweep", disable=not progress) as bar:
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
                _keep(out, trial, result)
                failed += result["status"] != "ok"
                bar.update(1)
                bar.set_postfix(failed=failed)
        except KeyboardInterrupt:
            for ref in refs:
                ray.cancel(ref, force=True)
            raise


def _keep(out: Path, trial: Trial, result: dict) -> None:
    """Write a returned result into the driver's sweep folder: the same file the trial wrote when the
    storage is shared (rewritten atomically, same content), the only copy the driver sees when not."""
    mine = trial_dir(out, trial)
    mine.mkdir(parents=True, exist_ok=True)
    _write(mine / RESULT, result)


def _remote_trial(trial: Trial, directory: str, threads: int) -> dict:
    import ray

    os.environ.setdefault("TQDM_DISABLE", "1")
    return run_trial(trial, directory, threads, node=ray.get_runtime_context().get_node_id())


def spec_of(out: str | Path) -> SweepSpec:
    """The spec a sweep directory was last run with."""
    path = Path(out) / "spec.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: SWEEP_DIR must be a folder written by `knockoff sweep`")
    return load_spec(json.loads(path.read_text()))
