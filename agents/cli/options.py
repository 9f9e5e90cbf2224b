"""Option types and option groups that several ``knockoff`` subcommands share."""
from __future__ import annotations

import argparse
import ast

from knockoff_env.victim import OUTPUT_MODES

__all__ = ["OUTPUT_MODES", "key_value", "seed", "add_data_root", "add_common"]


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE``; VALUE is read as a Python literal when it is one, else kept as text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE, e.g. data_root=~/data")
    key, value = text.split("=", 1)
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def seed(text: str) -> int:
    """A seed for numpy and torch: an integer ≥ 0."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a non-negative integer")
    return int(text)


def add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="folder holding the datasets (default: $KNOCKOFF_DATA)")


def add_common(p: argparse.ArgumentParser) -> None:
    """Workers, device, seed and progress, for the commands that train or extract features."""
    p.add_argument("--workers", type=int, default=0, help="data-loading worker processes")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", dest="progress", action="store_false")
