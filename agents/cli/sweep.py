"""``knockoff sweep SPEC``: a grid of attacks on Ray, resumable, tabulated (see :mod:`agents.sweep`)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("sweep", help="run a grid of attacks on Ray (resumable) and tabulate them",
                              description="Run every trial of the sweep spec SPEC (YAML or TOML) as a Ray task, "
                                          "each a durable attack in OUT/trials/<trial id>/, then write "
                                          "OUT/results.csv and OUT/results.parquet. Re-running resumes.")
    p.add_argument("spec", type=Path, help="sweep spec file (see examples/sweeps/)")
    p.add_argument("--out", type=Path, help="sweep folder (default: runs/sweeps/<spec file stem>)")
    p.add_argument("--address", help="a running Ray cluster (e.g. ray://head:10001 or auto); "
                                     "default: start Ray in this process")
    p.add_argument("--cpus", type=int, help="CPUs for the embedded Ray (default: all cores)")
    p.add_argument("--cpus-per-trial", type=float, default=1, help="CPUs each trial reserves (default 1)")
    p.add_argument("--gpus-per-trial", type=float, default=0,
                   help="GPUs each trial reserves; fractions share a GPU, e.g. 0.25 (default 0)")
    p.add_argument("--max-retries", type=int, default=2, help="retries of a trial whose worker died")
    p.add_argument("--plot", action="store_true", help="also draw the figures when the sweep is done")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_sweep_command)


def sweep_modules():
    try:
        from ..sweep import execution, figures
    except ImportError as err:
        raise SystemExit(f"knockoff: error: sweeps need the sweep extra ({err}): "
                         "pip install 'knockoff-env[sweep]'") from err
    return execution.run_sweep, figures.plot_sweep


def run_sweep_command(args) -> int:
    run_sweep, plot_sweep = sweep_modules()

    out = args.out or Path("runs") / "sweeps" / args.spec.stem
    command = "knockoff " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["sweep"] else \
        f"knockoff sweep {args.spec} --out {out}"
    try:
        table = run_sweep(args.spec, out, address=args.address, num_cpus=args.cpus,
                          cpus_per_trial=args.cpus_per_trial, gpus_per_trial=args.gpus_per_trial,
                          max_retries=args.max_retries, progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"\ninterrupted: finished trials are kept in {out}/trials/; run the same command again to "
              f"resume the rest:\n  {command}", file=sys.stderr)
        return 130
    counts = table["status"].value_counts().to_dict()
    print(f"{len(table)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()) +
          f"\nresults: {out / 'results.csv'} and {out / 'results.parquet'}")
    for _, row in table[table["status"] == "failed"].iterrows():
        print(f"  failed {row['trial']}: {row['error']}", file=sys.stderr)
    if counts.get("failed"):
        print("a re-run retries the failed trials and skips the finished ones", file=sys.stderr)
    if args.plot:
        print_plots(plot_sweep(out))
    else:
        print(f"figures: knockoff plot {out}")
    return 1 if counts.get("failed") else 0


def print_plots(report: dict) -> None:
    for path in report["written"]:
        print(f"wrote {path}")
    for reason in report["skipped"]:
        print(f"skipped {reason}")
    tensorboard = next((p for p in report["written"] if Path(p).name == "tensorboard"), None)
    if tensorboard:
        print(f"HParams view: tensorboard --logdir {tensorboard}")

