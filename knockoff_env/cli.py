"""The ``knockoff`` console script."""
from __future__ import annotations

import argparse

from .commands import add_world_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knockoff", description="Knockoff Nets as a Gymnasium environment.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_world_commands(subparsers)
    return parser


def main(argv: list[str] | None = None):
    args = build_parser().parse_args(argv)
    return args.func(args)
