"""Where Ray starts to pay: the same trials run in-process one after another and on embedded Ray.

    python -m benchmarks.sweep_speedup [--spec examples/sweeps/digits_s1.yaml] [--budgets 1,2,4,8]
                                       [--out runs/bench_sweep] [--cpus N] [--no-write]

For each size, keeps the spec's first seed, every strategy and k of its budgets (a fixed shuffle,
so every size mixes short and long attacks): N = strategies × k trials, run with
``run_sweep(executor="inline")`` and with ``run_sweep(executor="ray")`` (a fresh embedded Ray
each time, its start-up included; one CPU and one torch thread per trial in both, as
``knockoff sweep`` gives them). Prints both wall times and
their ratio per size, checks that both executors gave the same accuracies, fits
``inline ≈ a·N`` and ``ray ≈ O + b·N`` (O: Ray's fixed cost) and prints the crossover O / (a − b):
the number of such trials from which Ray is faster, the figure behind ``RAY_FROM_TRIALS`` in
``agents/sweep/execution.py``. Writes OUT/speedup.json and its section of benchmarks/RESULTS.md.
"""
import argparse
import dataclasses
import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np

from agents.sweep import load_spec, run_sweep
from agents.sweep.execution import RAY_FROM_TRIALS
from benchmarks.results import machine, table, write_section


def timed(spec, out: Path, executor: str, cpus: int):
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = run_sweep(spec, out, executor=executor, num_cpus=cpus, progress=False)
    return time.perf_counter() - start, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="examples/sweeps/digits_s1.yaml")
    parser.add_argument("--budgets", default="1,2,4,8",
                        help="sizes, as numbers of the spec's budgets to keep (comma-separated; default 1,2,4,8)")
    parser.add_argument("--out", default="runs/bench_sweep")
    parser.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs for Ray (default: all cores)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite benchmarks/RESULTS.md")
    args = parser.parse_args()
    spec, out = load_spec(args.spec), Path(args.out)
    budgets = list(spec.axes["budget"])
    random.Random(0).shuffle(budgets)
    load = os.getloadavg()[0]
    rows, sizes, report = [], [], {"spec": args.spec, "cpus": args.cpus, "load_before": round(load, 1), "sizes": {}}
    for k in (int(k) for k in args.budgets.split(",")):
        sub = dataclasses.replace(spec, axes={**spec.axes, "budget": budgets[:k], "seed": spec.axes["seed"][:1]})
        n = len(sub.trials())
        inline_s, inline = timed(sub, out / f"inline_{n}", "inline", args.cpus)
        ray_s, on_ray = timed(sub, out / f"ray_{n}", "ray", args.cpus)
        same = inline["knockoff_accuracy"].tolist() == on_ray["knockoff_accuracy"].tolist()
        sizes.append(n)
        report["sizes"][n] = {"budgets": budgets[:k], "inline_seconds": round(inline_s, 1),
                              "ray_seconds": round(ray_s, 1), "speedup": round(inline_s / ray_s, 2),
                              "same_accuracies": same}
        rows.append([n, f"{inline_s:.1f} s", f"{ray_s:.1f} s", f"{inline_s / ray_s:.2f}×", "yes" if same else "NO"])
        print(rows[-1], flush=True)
    n = np.array(sizes, float)
    a = float(np.linalg.lstsq(n[:, None], [report["sizes"][k]["inline_seconds"] for k in sizes], rcond=None)[0][0])
    b, overhead = np.polyfit(n, [report["sizes"][k]["ray_seconds"] for k in sizes], 1)
    crossover = overhead / (a - b) if a > b else float("inf")
    report.update(inline_per_trial=round(a, 2), ray_per_trial=round(float(b), 2),
                  ray_overhead=round(float(overhead), 1), crossover_trials=round(float(crossover), 1),
                  load_after=round(os.getloadavg()[0], 1))
    out.mkdir(parents=True, exist_ok=True)
    (out / "speedup.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    if not args.no_write:
        command = f"python -m benchmarks.sweep_speedup --budgets {args.budgets}"
        write_section("sweep_speedup", f"""`{command}` — {machine()}; {args.cpus} CPUs for Ray; load average \
{report['load_before']} before, {report['load_after']} after.

N trials of `{args.spec}`: its first seed, every strategy and the first k budgets of a fixed shuffle
({budgets}; each retrained as the spec says),
run in-process one after another (`--executor inline`) and on a fresh embedded Ray (`--executor ray`, start-up
included), one CPU and one torch thread per trial in both.

{table(["trials", "inline", "Ray", "Ray's speed-up", "same accuracies"], rows)}

Fit: inline ≈ {a:.2f} s × N; Ray ≈ {overhead:.1f} s + {b:.2f} s × N. Ray pays from about
**{crossover:.1f} trials** of this size on; `knockoff sweep`'s `--executor auto` switches to Ray from
{RAY_FROM_TRIALS} pending trials.""")


if __name__ == "__main__":
    main()
