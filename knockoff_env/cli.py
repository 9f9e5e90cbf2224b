"""The ``knockoff`` console script."""
from __future__ import annotations

import argparse

from .commands import add_world_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knockoff", description="Knockoff Nets as a Gymnasium environment.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_world_commands(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the subcommand; the exit status is 0 (failures raise SystemExit)."""
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0
