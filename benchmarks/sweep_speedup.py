"""A sweep on embedded Ray against the same trials run one after another in one process.

    python -m benchmarks.sweep_speedup [--spec examples/sweeps/digits_s1.yaml] [--out runs/bench_sweep] [--seeds N]

Runs every trial of the spec twice, into OUT/ray (``run_sweep``: Ray start-up included, one
CPU and one torch thread per trial, as ``knockoff sweep`` does) and OUT/sequential (a plain
loop over the same trials, with the same one torch thread per trial: on a busy machine
torch's default of one thread per core made single trials several times slower), and prints both wall times, the speed-up
and each strategy's mean knockoff accuracy from both, which should agree. Writes
OUT/speedup.json and the Ray sweep's figures.
"""
import argparse
import dataclasses
import json
import os
import time
from pathlib import Path

import torch

from agents.sweep import load_spec, plot_sweep, run_sweep
from agents.sweep.results import write_results
from agents.sweep.trial import run_trial, trial_dir


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/sweeps/digits_s1.yaml")
    parser.add_argument("--out", default="runs/bench_sweep")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs for Ray (default: all cores)")
    parser.add_argument("--seeds", type=int, help="keep only the first N values of the seed axis (a shorter run)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of a sequential trial (default 1)")
    args = parser.parse_args()
    spec, out = load_spec(args.spec), Path(args.out)
    if args.seeds:
        spec = dataclasses.replace(spec, axes={**spec.axes, "seed": spec.axes["seed"][:args.seeds]})
    trials = spec.trials()

    start = time.perf_counter()
    parallel = run_sweep(spec, out / "ray", num_cpus=args.cpus, progress=False)
    ray_seconds = time.perf_counter() - start

    start = time.perf_counter()
    for trial in trials:
        run_trial(trial, trial_dir(out / "sequential", trial), threads=args.threads)
    sequential_seconds = time.perf_counter() - start
    sequential = write_results(out / "sequential", trials)

    plot_sweep(out / "ray")
    means = {name: table[table["status"] == "ok"].groupby("agent")["knockoff_accuracy"].mean().round(4).to_dict()
             for name, table in (("ray", parallel), ("sequential", sequential))}
    report = {"spec": args.spec, "seeds": spec.axes.get("seed"), "trials": len(trials), "cpus": args.cpus, "torch_threads_sequential": args.threads,
              "ray_seconds": round(ray_seconds, 1), "sequential_seconds": round(sequential_seconds, 1),
              "speedup": round(sequential_seconds / ray_seconds, 2),
              "failed": int((parallel["status"] != "ok").sum() + (sequential["status"] != "ok").sum()),
              "mean_knockoff_accuracy": means, "torch": torch.__version__}
    (out / "speedup.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
