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

import difflib
import inspect
import os
import re
import sys
import traceback
from pathlib import Path

from .errors import ConfigError, KnockoffError
from .victim import resolve_device

DEBUG_ENV = "KNOCKOFF_DEBUG"
USER_ERROR, INTERNAL_ERROR, INTERRUPTED = 2, 1, 128 + 2  # 130: killed by SIGINT, as shells report it
ROOT = Path(__file__).resolve().parents[1]
PROJECT = tuple(str(ROOT / d) + os.sep for d in ("knockoff_env", "agents", "sweeps"))  # the project's packages
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


def knockoff_ids() -> list[str]:
    import gymnasium as gym

    import knockoff_env  # noqa: F401  (registers the ids)
    return sorted(k for k in gym.registry if k.startswith("Knockoff-"))


def check_env_id(env_id: str) -> None:
    ids = knockoff_ids()
    if env_id.split(":", 1)[-1] not in ids:
        raise ConfigError(unknown_env(env_id))


def unknown_env(env_id: str) -> str:
    ids = knockoff_ids()
    close = difflib.get_close_matches(env_id.split(":", 1)[-1], ids, n=1, cutoff=0.5)
    suggestion = f"did you mean {close[0]}? " if close else ""
    return f"unknown env id {env_id!r} — {suggestion}the registered ids are {', '.join(ids)}"


def env_option_defaults(env_id: str) -> dict[str, str]:
    """Every keyword an env id accepts, with its default: the entry point's own options, those of
    the world builders it forwards ``**kwargs`` to, and :class:`KnockoffEnv`'s."""
    return {name: repr(p.default) for name, p in env_parameters(env_id).items()}


def env_parameters(env_id: str) -> dict[str, inspect.Parameter]:
    """The keyword parameters behind :func:`env_option_defaults` (annotations and defaults)."""
    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    from .env import KnockoffEnv

    entry = gym.spec(env_id).entry_point  # "module:function" text, or the callable itself
    functions = forwarded_to(entry if callable(entry) else load_env_creator(entry))
    functions.append(KnockoffEnv.__init__)
    options: dict[str, inspect.Parameter] = {}
    for function in functions:
        try:
            parameters = inspect.signature(function).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in parameters:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name == "self" or p.name in options:
                continue
            if p.kind is p.POSITIONAL_ONLY or p.default is p.empty:
                continue  # set by the world itself (its victim, query set, knockoff)
            options[p.name] = p
    return options


def forwarded_to(function) -> list:
    """``function`` and the project's functions it hands its ``**kwargs`` on to (a world's entry
    point to its builder, say), found by name in its code: the keywords an env id accepts."""
    chain, todo = [], [function]
    while todo:
        f = todo.pop()
        if f in chain or not callable(f):
            continue
        chain.append(f)
        code = getattr(f, "__code__", None)
        if code is None or not code.co_flags & inspect.CO_VARKEYWORDS:
            continue
        for name in code.co_names:
            callee = getattr(f, "__globals__", {}).get(name)
            callee_code = getattr(callee, "__code__", None)
            if inspect.isfunction(callee) and callee_code.co_filename.startswith(PROJECT) \
                    and callee_code.co_flags & inspect.CO_VARKEYWORDS:
                todo.append(callee)
    return chain


def check_env_options(env_id: str, names) -> None:
    """Refuse an option no function on the env id's construction path takes."""
    options = env_option_defaults(env_id.split(":", 1)[-1])
    for name in names:
        if name not in options:
            raise ConfigError(unknown_option(name, env_id, options))


SIMPLE_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "None": type(None)}


def check_option_types(options: dict, parameters: dict[str, inspect.Parameter], owner: str) -> None:
    """Refuse a value whose kind its parameter's annotation (or default) rules out: a text where
    a number is due, a float for an ``int``, a bool for a number. Parameters annotated with
    anything beyond int/float/str/bool/None (a mapping, a model, ``Any``) take any value here."""
    for name, value in options.items():
        parameter = parameters.get(name)
        allowed = _simple_types(parameter) if parameter is not None else None
        if allowed is None or _fits(value, allowed):
            continue
        expected = " or ".join(t.__name__ if t is not type(None) else "None" for t in allowed)
        raise ConfigError(f"{owner} option {name}={value!r} ({type(value).__name__}) must be {expected}",
                          f"give {name} a value of that kind (its default is {parameter.default!r})")


def _simple_types(parameter: inspect.Parameter) -> tuple | None:
    annotation = parameter.annotation
    if annotation is parameter.empty:
        kind = type(parameter.default)
        return (kind,) if kind in (int, float, str, bool) else None
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = [part.strip() for part in text.split("|")]
    return tuple(SIMPLE_TYPES[p] for p in parts) if all(p in SIMPLE_TYPES for p in parts) else None


def _fits(value, allowed: tuple) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int) and float in allowed:
        return True  # an int is a fine float
    return isinstance(value, allowed)


def unknown_option(name: str, env_id, options: dict | None = None) -> str:
    if not isinstance(env_id, str) or env_id.split(":", 1)[-1] not in knockoff_ids():
        return f"unexpected option {name!r} — remove it; see the env's documentation for its options"
    options = options or env_option_defaults(env_id.split(":", 1)[-1])
    close = difflib.get_close_matches(name, options, n=1)
    suggestion = f"did you mean {close[0]}? " if close else ""
    listed = ", ".join(f"{k}={v}" for k, v in options.items())
    return f"{env_id} has no option {name!r} — {suggestion}its options (with defaults) are: {listed}"


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_folder(text: str, flag: str) -> None:
    """A folder that exists and is writable, or can be created."""
    path = Path(text).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ConfigError(f"{flag} {text} is an existing file, not a folder",
                              f"give {flag} a folder (new or existing) for the run's files")
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {text} is not writable by you", "choose a folder you can write to")
        return
    parent = _nearest_existing(path.absolute().parent)
    if not parent.is_dir():
        raise ConfigError(f"{flag} {text} cannot be created: {parent} is a file",
                          f"give {flag} a path whose parents are folders")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {text} cannot be created: {parent} is not writable by you",
                          "choose a folder you can write to")


def check_file(text: str, flag: str) -> None:
    """A file path whose folder exists and is writable (the file itself is written at the end)."""
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f"{flag} {text} is a folder", f"give {flag} a file name, e.g. {Path(text) / 'summary.json'}")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise ConfigError(f"{flag} {text}: the folder {folder} does not exist", "create it first, or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise ConfigError(f"{flag} {text} is not writable by you", "choose a path you can write to")
