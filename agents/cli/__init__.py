"""The ``knockoff`` command line: one module per subcommand, each adding its parser and the
function that runs it; :mod:`.errors` gives every command one error style.

The command line sits at the top of the layers: it may import the library (``knockoff_env``),
the agents and the sweeps; nothing imports it.
"""
from __future__ import annotations

import argparse
import sys

from . import attack, build_hierarchy, evaluate, pack, plot, retrain, serve, sweep, train_victim
from .errors import run_command, split_debug

SUBCOMMANDS = (attack, train_victim, build_hierarchy, retrain, evaluate, pack, serve, sweep, plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knockoff", description="Knockoff Nets model stealing as a Gymnasium env")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of any error (anywhere on the line; or set KNOCKOFF_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in SUBCOMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; user errors end in one line and exit code 2, Ctrl-C in 130 (see :mod:`.errors`)."""
    argv, debug = split_debug(sys.argv[1:] if argv is None else list(argv))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse's own usage errors (exit 2) and --help (exit 0)
        return exit_.code if isinstance(exit_.code, int) else 2
    return run_command(args, debug)
