"""Sweeps: a grid of attacks (agent × budget × seed × reward × any env option) run on Ray,
resumable trial by trial, with one results table and the paper's figures from it.

    from . import run_sweep, plot_sweep
    table = run_sweep("examples/sweeps/digits_s1.yaml", "runs/sweeps/s1")   # a pandas DataFrame
    plot_sweep("runs/sweeps/s1")

Needs the ``sweep`` extra (ray, pandas, pyarrow, pyyaml).
"""
from .execution import run_sweep
from .figures import plot_sweep
from .results import read_results
from .spec import SpecError, SweepSpec, Trial, load_spec

__all__ = ["run_sweep", "plot_sweep", "read_results", "load_spec", "SweepSpec", "Trial", "SpecError"]
