"""``knockoff serve``: put a world's victim (or a victim checkpoint) behind HTTP."""
from __future__ import annotations

import argparse
import os

import numpy as np

from knockoff_env.serve import FAULTS, VictimService, create_app, listening_socket, parse_faults, serve_forever
from knockoff_env.serve.service import FAULT_DELAY
from knockoff_env.victim import BlackBox
from knockoff_env.victim.training import load_victim
from knockoff_env.victim.wire import DEFAULT_KEY_ENV, DEFAULT_MAX_BATCH

from .options import OUTPUT_MODES, key_value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve", help="serve a world's victim (or a victim checkpoint) over HTTP",
        description="Serve the victim of a registered world (with the world's output mode and defences) or "
                    "of a victim checkpoint over HTTP; attack it with `knockoff attack --victim-url URL`.")
    p.add_argument("--env", default="Knockoff-Digits-v0", help="registered env id whose victim is served")
    p.add_argument("--env-arg", type=key_value, action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the world, as for `knockoff attack` (repeatable)")
    p.add_argument("--output", choices=OUTPUT_MODES, help="victim output mode")
    p.add_argument("--top-k", type=int)
    p.add_argument("--decimals", type=int)
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda…")
    p.add_argument("--defence", help="applied to every answer before it leaves the server, as for "
                                     "`knockoff attack --defence`, e.g. mad:eps=0.5")
    p.add_argument("--detector", help="the owner's monitor of each client's queries, e.g. prada; answers carry "
                                      "X-Detected-At once it fires (the attacking env ends or flags the episode)")
    p.add_argument("--victim-checkpoint", help="serve this checkpoint of `knockoff train-victim` instead of --env")
    p.add_argument("--input-shape", help="C,H,W of the checkpoint's images (default: 3,S,S; 1,S,S for MNIST)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="most images in one request")
    p.add_argument("--api-key-env", metavar="NAME",
                   help=f"require the key held in environment variable NAME (e.g. {DEFAULT_KEY_ENV})")
    p.add_argument("--rate-limit", type=float, metavar="QPS", help="queries per second per client (429 above)")
    p.add_argument("--keep-answers", type=int, default=4096, help="recent answers kept for repeated request ids")
    p.add_argument("--inject-faults", metavar="JSON", help="FOR TESTS ONLY: {client: {request number: fault}} "
                                                          f"with faults {sorted(FAULTS)}")
    p.add_argument("--fault-delay", type=float, default=FAULT_DELAY, help="FOR TESTS ONLY: a 'timeout' fault's delay")
    p.set_defaults(func=serve)


def world_victim(args) -> tuple[BlackBox, tuple[int, ...], dict]:
    """The BlackBox to serve, its input shape and what /health says about it."""
    options = {k: v for k, v in (("output", args.output), ("top_k", args.top_k), ("decimals", args.decimals),
                                 ("device", args.device), ("defence", args.defence)) if v is not None}
    if args.victim_checkpoint:
        model, meta = load_victim(args.victim_checkpoint)
        if args.input_shape:
            shape = tuple(int(s) for s in args.input_shape.split(","))
        else:
            shape = (1 if meta["dataset"] == "mnist" else 3, meta["image_size"], meta["image_size"])
        return BlackBox(model, num_classes=int(meta["num_classes"]), **options), shape, {
            "victim": os.path.basename(args.victim_checkpoint), "dataset": meta["dataset"]}
    import gymnasium as gym

    import knockoff_env  # noqa: F401  (registers the ids)
    options.update(dict(args.env_arg))
    world = gym.make(args.env, **options).unwrapped
    shape = tuple(world.query_set.fetch(np.zeros(1, np.int64)).shape[1:])
    return world.victim, shape, {"world": args.env}


def serve(args) -> int:
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ValueError(f"--api-key-env {args.api_key_env}: that environment variable is empty or unset")
    blackbox, shape, info = world_victim(args)
    service = VictimService(blackbox, shape, max_batch=args.max_batch, api_key=key, rate_limit=args.rate_limit,
                            keep_answers=args.keep_answers, faults=parse_faults(args.inject_faults),
                            fault_delay=args.fault_delay, detector=args.detector)
    app = create_app(service, info=info)
    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    print(f"serving {info.get('world') or info.get('victim')} ({blackbox.num_classes} classes, input "
          f"{shape}, max batch {args.max_batch}) on http://{host}:{port}", flush=True)
    serve_forever(app, sock)
    return 0
