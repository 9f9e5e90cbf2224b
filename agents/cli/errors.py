"""How every ``knockoff`` command ends when something goes wrong.

A failure the user caused (a bad option, a missing file, an unknown env id, a device this
machine lacks) ends in one line ``knockoff <command>: error: <what> — <what to do>`` and exit
code 2. A bug ends in the traceback, kept, and a line saying where to report it (exit 1).
Ctrl-C ends with exit code 130 and no traceback. ``--debug`` anywhere on the command line,
or ``KNOCKOFF_DEBUG=1``, prints the traceback of user errors too.

:func:`run_command` wraps whatever ``args.func`` a subcommand set, so new subcommands get
this for free; :func:`preflight` checks the options many commands share (``--env``,
``--device``, ``--logdir``, ``--json``) before any work starts.
"""
from __future__ import annotations

import os
import re
import sys
import traceback
from pathlib import Path

from knockoff_env.checks import check_file, check_folder
from knockoff_env.devices import resolve_device
from knockoff_env.errors import KnockoffError
from knockoff_env.worlds.registry import check_env_id, check_env_options, unknown_env, unknown_option

DEBUG_ENV = "KNOCKOFF_DEBUG"
USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 2, 1, 128 + 2  # 130: killed by SIGINT, as shells report it
ROOT = Path(__file__).resolve().parents[2]
PROJECT = tuple(str(ROOT / d) + os.sep for d in ("knockoff_env", "agents"))  # the project's packages
REPORT = ("this is a bug in knockoff_env, not in your input; please report it to the project's issue tracker "
          "with the traceback above and the command you ran")


def split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--debug``, and whether tracebacks were asked for (flag or environment)."""
    debug = "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    return [a for a in argv if a != "--debug"], debug


def run_command(args, debug: bool = False) -> int:
    """Run ``args.func(args)``; translate what it raises into the CLI's one error style."""
    command = getattr(args, "command", None) or "knockoff"
    try:
        preflight(args)
        return args.func(args) or 0
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"\nknockoff {command}: interrupted (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED
    except SystemExit as exit_:  # a command that ends itself with a message
        if isinstance(exit_.code, int) or exit_.code is None:
            return exit_.code or 0
        message = re.sub(r"^knockoff[^:]*: error: ", "", str(exit_.code))
        return _user_error(command, message, exit_, debug)
    except Exception as err:  # noqa: BLE001 - every failure ends in a message, never a bare traceback
        message = user_message(err, args)
        if message is None:
            traceback.print_exc()
            print(f"knockoff {command}: internal error: {type(err).__name__}: {err} — {REPORT}", file=sys.stderr)
            return INTERNAL_ERROR
        return _user_error(command, message, err, debug)


def _user_error(command: str, message: str, err: BaseException, debug: bool) -> int:
    if debug:
        traceback.print_exception(err)
    text = " ".join(message.split())  # one line
    print(f"knockoff {command}: error: {text}", file=sys.stderr)
    return USER_ERROR


def user_message(err: Exception, args) -> str | None:
    """The one-line message for a failure the user caused, or None for a bug."""
    import gymnasium.error

    if isinstance(err, KnockoffError):
        return str(err)
    unregistered = (gymnasium.error.NameNotFound, gymnasium.error.NamespaceNotFound, gymnasium.error.VersionNotFound,
                    gymnasium.error.UnregisteredEnv, gymnasium.error.DeprecatedEnv)
    if isinstance(err, unregistered):
        env_id = getattr(args, "env", None)
        return unknown_env(env_id if isinstance(env_id, str) else _quoted_id(str(err)))
    if isinstance(err, gymnasium.error.DependencyNotInstalled):
        return str(err)
    if isinstance(err, TypeError) and "unexpected keyword argument" in str(err):
        name = re.search(r"unexpected keyword argument '([^']+)'", str(err))
        return unknown_option(name.group(1) if name else "?", getattr(args, "env", None))
    if isinstance(err, TypeError) and "multiple values for keyword argument" in str(err):
        name = re.search(r"multiple values for keyword argument '([^']+)'", str(err))
        return (f"{getattr(args, 'env', None) or 'this env'} sets {name.group(1) if name else 'that option'!r} "
                "itself — remove that option")
    if isinstance(err, OSError) and err.filename is not None:
        return (f"{err.strerror or type(err).__name__}: {err.filename} — check the path: it must exist, be of the "
                "right kind (file or folder) and be readable/writable by you")
    if isinstance(err, (ValueError, TypeError, OSError)) and _raised_by_project(err):
        return str(err) or type(err).__name__
    return None


def _raised_by_project(err: BaseException) -> bool:
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and frames[-1].filename.startswith(PROJECT)


def _quoted_id(text: str) -> str:
    found = re.search(r"`([^`]+)`", text)
    return found.group(1) if found else text


# --- checks before the command runs -----------------------------------------------------
def preflight(args) -> None:
    """Refuse an unknown env id, an unusable device or output path before any work starts."""
    env_id = getattr(args, "env", None)
    if isinstance(env_id, str):
        check_env_id(env_id)
        env_args = getattr(args, "env_arg", None)
        if env_args and all(isinstance(kv, (tuple, list)) and len(kv) == 2 for kv in env_args):
            check_env_options(env_id, [k for k, _ in env_args])
    device = getattr(args, "device", None)
    if isinstance(device, str):
        resolve_device(device)
    if getattr(args, "logdir", None) and not getattr(args, "resume", None):
        check_folder(args.logdir, "--logdir")
    if getattr(args, "json", None):
        check_file(args.json, "--json")
