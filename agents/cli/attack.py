"""``knockoff attack``: one attack to the budget, with its summary, logs and run directory."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from .. import AGENTS, format_summary, make_agent, run_attack
from .errors import INTERRUPTED
from .options import OUTPUT_MODES, key_value, seed

RUN_ARGS = "attack.json"  # the options of a durable run, read back by --resume
SB3_AGENTS = ("ppo", "a2c", "dqn", "maskable-ppo")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("attack", help="run one attack to the budget and report the knockoff's accuracy")
    p.add_argument("--env", default="Knockoff-Digits-v0", help="registered env id (default: the embedded world)")
    p.add_argument("--agent", choices=AGENTS, default="adaptive")
    p.add_argument("--budget", type=int, help="queries to spend (default: the world's)")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--logdir", help="TensorBoard logs, PNG figures, transfer set and summary.json go here")
    p.add_argument("--eval-every", type=int, help="evaluate the online knockoff every N queries")
    p.add_argument("--retrain-epochs", type=int, default=0, help="retrain from scratch on the transfer set")
    p.add_argument("--recipe", help="how the knockoff is trained: auto (default: paper for pretrained "
                                    "knockoffs, else scratch), paper or scratch")
    p.add_argument("--reward", help="'all', one of certainty/diversity/loss, or a comma-separated subset")
    p.add_argument("--queries-per-step", type=int)
    p.add_argument("--output", choices=OUTPUT_MODES, help="victim output mode")
    p.add_argument("--top-k", type=int)
    p.add_argument("--decimals", type=int)
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda, cuda:1…")
    p.add_argument("--defence", help="the victim owner's defence, e.g. reverse_sigmoid:beta=0.7,gamma=0.2 or "
                                     "mad:eps=0.5+top_k:k=1 (names: reverse_sigmoid, noise, mad, mad_argmax, "
                                     "adaptive_misinformation, top_k, rounded, label)")
    p.add_argument("--detector", help="the owner's monitor of the query stream, e.g. prada or prada:delta=0.9")
    p.add_argument("--on-detection", choices=("terminate", "flag"), help="end the attack at the alarm (default) "
                                                                       "or go on flagged")
    p.add_argument("--detection-penalty", type=float, help="subtracted from the reward of the alarm's step")
    p.add_argument("--offline-only", action="store_true",
                   help="no online knockoff (the paper's random strategy): faster, no loss reward")
    p.add_argument("--alpha", type=float, help="gradient-bandit step size (adaptive agents)")
    p.add_argument("--train-steps", type=int, default=2000, help="env steps to train an SB3 agent first")
    p.add_argument("--env-arg", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="any other env option, e.g. --env-arg data_root=~/data (repeatable)")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="journal every query into --logdir and checkpoint every N steps (resumable)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the interrupted attack in RUN_DIR")
    p.add_argument("--victim-url", metavar="URL", help="attack the victim served at URL (`knockoff serve`); the "
                                                       "API key, if any, is read from $KNOCKOFF_API_KEY")
    p.add_argument("--eval-via-endpoint", action="store_true",
                   help="evaluate through the remote victim (counted apart from the attack's queries)")
    p.add_argument("--price-per-query", type=float, help="a remote query's price, for the cost in the summary")
    p.add_argument("--remote-arg", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a RemoteVictim option: client_id, timeout, retries, backoff, api_key_env… (repeatable)")
    p.add_argument("--json", help="also write the summary to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=attack, parser=p)


def env_options(args) -> dict:
    """Env keyword arguments from the attack's options (only those the user set)."""
    options = {"budget": args.budget, "reward": args.reward, "queries_per_step": args.queries_per_step,
               "output": args.output, "top_k": args.top_k, "decimals": args.decimals, "device": args.device,
               "defence": args.defence, "detector": args.detector, "on_detection": args.on_detection,
               "detection_penalty": args.detection_penalty, "recipe": getattr(args, "recipe", None)}
    options = {k: v for k, v in options.items() if v is not None}
    if args.offline_only:
        options["train_online"] = False
    if options.get("reward") and "," in options["reward"]:
        options["reward"] = options["reward"].split(",")
    options.update(dict(args.env_arg))
    if getattr(args, "victim_url", None):  # a served victim; the world keeps its query set and eval set
        remote = dict(getattr(args, "remote_arg", None) or [])
        if args.eval_via_endpoint:
            remote["eval_via_endpoint"] = True
        if args.price_per_query is not None:
            remote["price_per_query"] = args.price_per_query
        options.update(victim=args.victim_url, remote=remote)
    return options


def durable_args(args, parser: argparse.ArgumentParser):
    """For ``--resume RUN_DIR``: the run's saved options (any option given again must agree).
    For ``--checkpoint-every``: save the options into the run directory first."""
    if args.resume:
        path = Path(args.resume) / RUN_ARGS
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: --resume needs a run directory made by "
                                    "`knockoff attack --logdir RUN_DIR --checkpoint-every N`")
        try:
            saved = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path} is damaged ({err}) — restore it, or start a new run: the options of a "
                             "durable run are read back from it") from None
        defaults = vars(parser.parse_args([]))
        clash = [k for k, v in saved.items() if k in vars(args) and k != "logdir"
                 and getattr(args, k) not in (defaults.get(k), v) and list(getattr(args, k) or []) != v]
        if clash:
            raise ValueError(f"--resume continues the run as it was started; drop or fix {clash} "
                             f"(saved: {({k: saved[k] for k in clash})})")
        saved["env_arg"] = [tuple(kv) for kv in saved["env_arg"]]
        saved["remote_arg"] = [tuple(kv) for kv in saved.get("remote_arg", [])]
        return argparse.Namespace(**{**vars(args), **saved, "logdir": args.resume})
    if args.checkpoint_every is not None:
        if not args.logdir:
            raise ValueError("--checkpoint-every needs --logdir RUN_DIR: the journal and checkpoints go there")
        run_dir = Path(args.logdir)
        run_dir.mkdir(parents=True, exist_ok=True)
        keep = {k: v for k, v in vars(args).items() if k not in ("func", "parser", "resume", "json", "quiet")}
        tmp = run_dir / (RUN_ARGS + ".tmp")
        tmp.write_text(json.dumps(keep, indent=2))
        tmp.replace(run_dir / RUN_ARGS)
    return args


def make_env_and_agent(args):
    """The env the options describe and the agent to play it (an SB3 agent is trained first)."""
    import gymnasium as gym

    import knockoff_env  # noqa: F401  (registers the ids)

    options = env_options(args)
    if args.agent in SB3_AGENTS:
        from ..sb3 import ALGORITHMS, SB3Agent, train_sb3

        options["action_mode"] = ALGORITHMS[args.agent][1]
        env = gym.make(args.env, **options)
        print(f"training {args.agent} for {args.train_steps} env steps (each episode is a full attack)")
        model = train_sb3(args.agent, env, args.train_steps, seed=args.seed, logdir=args.logdir)
        return env, SB3Agent(model, env, seed=args.seed)
    env = gym.make(args.env, **options)
    bandit = {"alpha": args.alpha} if args.alpha is not None and args.agent.startswith("adaptive") else {}
    return env, make_agent(args.agent, env, seed=args.seed, **bandit)


def attack(args) -> int:
    args = durable_args(args, args.parser)
    env, agent = make_env_and_agent(args)
    try:
        result = run_attack(env, agent, seed=args.seed, logdir=args.logdir, eval_every=args.eval_every,
                            retrain_epochs=args.retrain_epochs, progress=not args.quiet,
                            checkpoint_every=args.checkpoint_every, resume=bool(args.resume))
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        print(_kept_after_interrupt(args, env.unwrapped.spent, env.unwrapped.budget, saved=False), file=sys.stderr)
        raise
    print(format_summary(result))
    if args.logdir:
        print(f"\nlogs, figures and the transfer set are in {args.logdir}/ "
              f"(policy.png, accuracy.png, summary.json)\nwatch them with:  tensorboard --logdir {args.logdir}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if result["interrupted"]:
        print(_kept_after_interrupt(args, result["queries"], env.unwrapped.budget, saved=True), file=sys.stderr)
        return INTERRUPTED
    return 0


def _kept_after_interrupt(args, queries: int, budget: int, saved: bool) -> str:
    """What an interrupted attack kept, and the exact command that resumes it."""
    head = f"interrupted after {queries} of {budget} queries"
    if args.checkpoint_every or args.resume:
        return (f"{head}; every answer is journaled in {args.logdir}/journal.bin.\n"
                f"resume with:  knockoff attack --resume {shlex.quote(str(args.logdir))}")
    if args.logdir and saved:
        return (f"{head}; the transfer set so far, the knockoff and summary.json are in {args.logdir}/, but this run "
                "cannot be resumed — start attacks with --logdir DIR --checkpoint-every N to make them resumable")
    return (f"{head}; nothing was kept{'' if args.logdir else ' (no --logdir)'} — start attacks with --logdir DIR "
            "--checkpoint-every N to make them resumable")
