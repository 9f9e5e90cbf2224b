"""Every ``knockoff attack`` is a durable run unless ``--no-journal``: its run directory (a default
one under ``$KNOCKOFF_RUNS`` or ``./runs``), the journal of every paid answer and a checkpoint
every few percent of the steps, so any run can be continued with ``--resume RUN_DIR``."""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import time
from pathlib import Path

from ..durable import JOURNAL

RUN_ARGS = "attack.json"  # the options of a durable run, read back by --resume
RUNS_ENV = "KNOCKOFF_RUNS"  # where default run directories go (else ./runs)
CHECKPOINTS = 20  # checkpoints per run by default: at most 5 % of the steps are replayed on resume,
MIN_CHECKPOINT_STEPS = 50  # and at least this many steps apart (each costs a write and fsyncs)
NOT_KEPT = ("func", "parser", "resume", "json", "quiet")


def default_logdir(args) -> Path:
    """``$KNOCKOFF_RUNS`` (or ``runs``) / ``<env>-<agent>-<seed>-<date>-<time>``, made unique."""
    root = Path(os.environ.get(RUNS_ENV, "runs"))
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{args.env}-{args.agent}-{args.seed}-{time.strftime('%Y%m%d-%H%M%S')}")
    path, n = root / name, 1
    while path.exists():
        n += 1
        path = root / f"{name}-{n}"
    return path


def durable_args(args, parser: argparse.ArgumentParser):
    """For ``--resume RUN_DIR``: the run's saved options (any option given again must agree).
    For a new run: the journaling options checked and the run directory chosen."""
    if args.resume:
        if args.no_journal:
            raise ValueError("--resume continues a journaled run; drop --no-journal")
        return _saved_args(args, parser)
    if args.no_journal and args.checkpoint_every is not None:
        raise ValueError("--checkpoint-every N checkpoints the journaled run, which --no-journal turns off; drop one")
    if not args.logdir:
        args.logdir = str(default_logdir(args))
    return args


def _saved_args(args, parser: argparse.ArgumentParser):
    path = Path(args.resume) / RUN_ARGS
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: --resume needs a run directory made by `knockoff attack` "
                                "(every attack journals there unless started with --no-journal)")
    try:
        saved = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is damaged ({err}) — restore it, or start a new run: the options of a "
                         "durable run are read back from it") from None
    defaults = vars(parser.parse_args([]))
    moved = args.victim_url if args.victim_url and saved.get("victim_url") else None  # the server moved
    free = ("logdir", "victim_url") if moved else ("logdir",)
    clash = [k for k, v in saved.items() if k in vars(args) and k not in free
             and getattr(args, k) not in (defaults.get(k), v) and list(getattr(args, k) or []) != v]
    if clash:
        raise ValueError(f"--resume continues the run as it was started; drop or fix {clash} "
                         f"(saved: {({k: saved[k] for k in clash})})")
    if moved:  # later resumes find the server where it is now
        saved["victim_url"] = moved
        _write_args(Path(args.resume), saved)
    saved["env_arg"] = [tuple(kv) for kv in saved["env_arg"]]
    saved["remote_arg"] = [tuple(kv) for kv in saved.get("remote_arg", [])]
    saved["agent_arg"] = [tuple(kv) for kv in saved.get("agent_arg", [])]
    saved.setdefault("retrain_epochs", 0)  # runs saved before the offline phase was the default
    return argparse.Namespace(**{**vars(args), **saved, "logdir": args.resume})


def default_checkpoint_every(env) -> int:
    """Steps between checkpoints: ``CHECKPOINTS`` per run (a resume replays at most that share), at
    least ``MIN_CHECKPOINT_STEPS`` apart: measured by ``benchmarks/journal_cost.py``."""
    core = env.unwrapped
    return max(MIN_CHECKPOINT_STEPS, math.ceil(math.ceil(core.budget / core.queries_per_step) / CHECKPOINTS))


def plan_journal(args, env, agent) -> None:
    """Settle ``args.checkpoint_every`` (None: not journaled), save the options a resume reads back,
    and say where the run goes and whether it can be resumed."""
    if args.resume:
        print(f"resuming the journaled run in {args.logdir}", flush=True)
        return
    if args.no_journal:
        print(f"run directory {args.logdir} (not journaled: --no-journal)", flush=True)
        return
    if args.checkpoint_every is None and not callable(getattr(agent, "state_dict", None)):
        print(f"run directory {args.logdir} (not journaled: a {args.agent} agent cannot be checkpointed)", flush=True)
        return
    if args.checkpoint_every is None:
        args.checkpoint_every = default_checkpoint_every(env)
    run_dir = Path(args.logdir)
    if (run_dir / JOURNAL).exists():  # checked before attack.json is written: that run stays resumable
        raise FileExistsError(f"{run_dir} already holds a journaled attack — continue it with "
                              f"`knockoff attack --resume {shlex.quote(str(run_dir))}`, or give another --logdir")
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_args(run_dir, {k: v for k, v in vars(args).items() if k not in NOT_KEPT})
    every = "step" if args.checkpoint_every == 1 else f"{args.checkpoint_every} steps"
    print(f"run directory {args.logdir} (journaled, a checkpoint every {every}; "
          f"if interrupted, resume with:  knockoff attack --resume {shlex.quote(str(args.logdir))})", flush=True)


def _write_args(run_dir: Path, options: dict) -> None:
    tmp = run_dir / (RUN_ARGS + ".tmp")
    tmp.write_text(json.dumps(options, indent=2))
    tmp.replace(run_dir / RUN_ARGS)


def resume_hint(args) -> str:
    """What a remote attack whose server stayed down kept, and the command that resumes it."""
    if args.checkpoint_every or args.resume:
        return (f"every answer paid for is journaled in {args.logdir}/journal.bin; once the server answers again, "
                f"resume with:  knockoff attack --resume {shlex.quote(str(args.logdir))}  "
                "(add --victim-url URL if it moved)")
    why = "it was started with --no-journal" if args.no_journal else f"a {args.agent} agent cannot be checkpointed"
    return f"this run kept no journal, so it cannot be resumed: {why}"


def kept_after_interrupt(args, queries: int, budget: int, saved: bool) -> str:
    """What an interrupted attack kept, and the exact command that resumes it."""
    head = f"interrupted after {queries} of {budget} queries"
    if args.checkpoint_every or args.resume:
        return (f"{head}; every answer is journaled in {args.logdir}/journal.bin.\n"
                f"resume with:  knockoff attack --resume {shlex.quote(str(args.logdir))}")
    why = "it was started with --no-journal" if args.no_journal else f"a {args.agent} agent cannot be checkpointed"
    if saved:
        return (f"{head}; the transfer set so far, the knockoff and summary.json are in {args.logdir}/, but this run "
                f"cannot be resumed: {why}")
    return f"{head}; nothing was kept, and this run cannot be resumed: {why}"
