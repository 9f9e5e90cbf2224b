"""``knockoff attack``: one attack to the budget, with its summary, logs and run directory."""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from knockoff_env.errors import KnockoffError
from knockoff_env.victim.remote import RemoteUnavailableError

from .. import AGENTS, agent_options, format_summary, make_agent, run_attack
from ..registry import SB3_AGENTS, env_preset
from .errors import INTERRUPTED
from .journaling import (
    CHECKPOINTS,
    MIN_CHECKPOINT_STEPS,
    RUNS_ENV,
    durable_args,
    kept_after_interrupt,
    plan_journal,
    resume_hint,
)
from .options import OUTPUT_MODES, key_value, seed


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("attack", help="the paper's whole attack (online, then offline) and the knockoff's accuracy",
                              description="The paper's whole attack: the online phase (the agent queries the "
                                          "victim to the budget while a knockoff learns), then the offline phase "
                                          "(a fresh knockoff trained on the transfer set with the recipe's "
                                          "epochs). Every run is journaled in its run directory and can be "
                                          "resumed with --resume.")
    p.add_argument("--env", default="Knockoff-Digits-v0", help="registered env id (default: %(default)s, the "
                                                                "embedded world)")
    p.add_argument("--agent", choices=AGENTS, default="adaptive", help="the strategy that picks the queries")
    p.add_argument("--budget", type=int, help="queries to spend (default: the world's; the digits world's is 1000)")
    p.add_argument("--seed", type=seed, default=0, help="seeds the env, the knockoff and the agent")
    p.add_argument("--logdir", help="the run directory: TensorBoard logs, figures, transfer set, knockoff, journal "
                                    f"and summary.json (default: ${RUNS_ENV} or ./runs, then "
                                    "<env>-<agent>-<seed>-<date>-<time>)")
    p.add_argument("--eval-every", type=int, help="evaluate the online knockoff every N queries (default: only "
                                                  "at the end)")
    p.add_argument("--retrain-epochs", type=int, help="epochs of the offline phase, a fresh knockoff trained on "
                                                      "the transfer set (default: the recipe's, 30 for scratch "
                                                      "and 100 for paper; 0 skips it)")
    p.add_argument("--recipe", help="how the knockoff is trained: auto, paper or scratch (default: auto, which "
                                    "is paper for pretrained knockoffs, else scratch)")
    p.add_argument("--reward", help="'all', one of certainty/diversity/loss, or a comma-separated subset "
                                    "(default: all, the paper's)")
    p.add_argument("--queries-per-step", type=int, help="images queried per step (default: 4, the paper's)")
    p.add_argument("--output", choices=OUTPUT_MODES, help="victim output mode (default: probs, the full "
                                                          "probability vector)")
    p.add_argument("--top-k", type=int, help="classes a top_k answer keeps (default: 1)")
    p.add_argument("--decimals", type=int, help="decimals a rounded answer keeps (default: 2)")
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda, cuda:1… (default: auto)")
    p.add_argument("--defence", help="the victim owner's defence, e.g. reverse_sigmoid:beta=0.7,gamma=0.2 or "
                                     "mad:eps=0.5+top_k:k=1 (names: reverse_sigmoid, noise, mad, mad_argmax, "
                                     "adaptive_misinformation, top_k, rounded, label; default: none)")
    p.add_argument("--detector", help="the owner's monitor of the query stream, e.g. prada or prada:delta=0.9 "
                                      "(default: none)")
    p.add_argument("--on-detection", choices=("terminate", "flag"), help="end the attack at the alarm or go on "
                                                                       "flagged (default: terminate)")
    p.add_argument("--detection-penalty", type=float, help="subtracted from the reward of the alarm's step "
                                                           "(default: 0)")
    p.add_argument("--offline-only", action="store_true",
                   help="no online knockoff for any agent: faster, no loss reward (default: off; the random "
                        "strategy trains none unless --eval-every or --env-arg train_online=True)")
    p.add_argument("--batch", type=int, metavar="IMAGES",
                   help="images per victim call for a strategy that does not read the answers (random; default: "
                        "the victim's batch size, a served victim's max_batch); 0: one call per step")
    p.add_argument("--alpha", type=float, help="gradient-bandit step size (adaptive agents; default: 0.3)")
    p.add_argument("--agent-arg", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the agent's class, e.g. --agent-arg xi=0.5 for d-ucb (repeatable; "
                        "default: none; docs/agents.md lists each agent's)")
    p.add_argument("--train-steps", type=int, default=2000, help="env steps to train an SB3 agent first")
    p.add_argument("--env-arg", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="any other env option, e.g. --env-arg data_root=~/data (repeatable; default: none)")
    p.add_argument("--checkpoint-every", type=int, metavar="N",
                   help="steps between checkpoints of the journaled run (default: every "
                        f"{100 // CHECKPOINTS} %% of the run's steps, at least {MIN_CHECKPOINT_STEPS})")
    p.add_argument("--no-journal", action="store_true",
                   help="do not journal the answers nor checkpoint: the run cannot be resumed")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the interrupted attack in RUN_DIR (with "
                                                       "--victim-url: its server moved there; default: start a new one)")
    p.add_argument("--victim-url", metavar="URL", help="attack the victim served at URL (`knockoff serve`); the "
                                                       "API key, if any, is read from $KNOCKOFF_API_KEY "
                                                       "(default: the world's own victim, in-process)")
    p.add_argument("--eval-via-endpoint", action="store_true",
                   help="let the evaluation query the remote victim on the eval set (counted apart from the "
                        "attack's queries), for the victim's accuracy and the agreement")
    p.add_argument("--price-per-query", type=float, help="a remote query's price, for the cost in the summary "
                                                         "(default: none)")
    p.add_argument("--remote-arg", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="a RemoteVictim option: timeout, retries, backoff, max_wait, api_key_env… "
                        "(repeatable; default: none)")
    p.add_argument("--json", help="also write the summary to this file (default: only RUN_DIR/summary.json)")
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
    for key, value in env_preset(args.agent).items():  # copycat: labels only
        if options.setdefault(key, value) != value:
            raise ValueError(f"--agent {args.agent} needs {key}={value!r} (it is its preset), not {options[key]!r}")
    env = gym.make(args.env, **options)
    chosen = dict(getattr(args, "agent_arg", None) or [])
    if args.alpha is not None:
        if not args.agent.startswith("adaptive"):
            raise ValueError(f"--alpha is the gradient bandit's step size; agent {args.agent!r} has none "
                             f"(its options: {agent_options(args.agent)}, given with --agent-arg KEY=VALUE)")
        chosen["alpha"] = args.alpha
    return env, make_agent(args.agent, env, seed=args.seed, **chosen)


def attack(args) -> int:
    args = durable_args(args, args.parser)
    env, agent = make_env_and_agent(args)
    plan_journal(args, env, agent)
    try:
        result = run_attack(env, agent, seed=args.seed, logdir=args.logdir, eval_every=args.eval_every,
                            retrain_epochs=args.retrain_epochs, progress=not args.quiet,
                            checkpoint_every=args.checkpoint_every, resume=bool(args.resume),
                            batch=None if args.batch is None else (args.batch or False))
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        print(kept_after_interrupt(args, env.unwrapped.spent, env.unwrapped.budget, saved=False), file=sys.stderr)
        raise
    except RemoteUnavailableError as err:  # the server stayed down: say how to go on once it is back
        raise KnockoffError(err.what, resume_hint(args)) from err
    print(format_summary(result))
    print(f"\nlogs, figures and the transfer set are in {args.logdir}/ (policy.png, accuracy.png, summary.json)\n"
          f"watch them with:  tensorboard --logdir {shlex.quote(str(args.logdir))}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if result["interrupted"]:
        print(kept_after_interrupt(args, result["queries"], env.unwrapped.budget, saved=True), file=sys.stderr)
        return INTERRUPTED
    return 0
