"""``knockoff plot SWEEP_DIR``: the paper-style figures of a finished sweep."""
from __future__ import annotations

import argparse
from pathlib import Path

from .sweep import print_plots, sweep_modules


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("plot", help="draw the paper-style figures of a finished sweep",
                              description="Write the figures that SWEEP_DIR's axes allow (PNG) and a "
                                          "TensorBoard HParams view into SWEEP_DIR.")
    p.add_argument("sweep_dir", type=Path)
    p.set_defaults(func=run)


def run(args) -> int:
    _, plot_sweep = sweep_modules()
    print_plots(plot_sweep(args.sweep_dir))
    return 0
