"""``knockoff serve``: put a world's victim (or a victim checkpoint) behind HTTP."""
from __future__ import annotations

import argparse
import os

import numpy as np

from knockoff_env.serve import (
    FAULTS,
    Limits,
    VictimService,
    body_limit,
    create_app,
    listening_socket,
    parse_faults,
    serve_forever,
)
from knockoff_env.serve.faults import FAULT_DELAY
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
                   help="an option of the world, as for `knockoff attack` (repeatable; default: none)")
    p.add_argument("--output", choices=OUTPUT_MODES, help="victim output mode (default: the world's, probs)")
    p.add_argument("--top-k", type=int, help="classes a top_k answer keeps (default: 1)")
    p.add_argument("--decimals", type=int, help="decimals a rounded answer keeps (default: 2)")
    p.add_argument("--device", help="auto (CUDA when present), cpu, cuda… (default: auto)")
    p.add_argument("--defence", help="applied to every answer before it leaves the server, as for "
                                     "`knockoff attack --defence`, e.g. mad:eps=0.5 (default: none)")
    p.add_argument("--detector", help="the owner's monitor of each client's queries, e.g. prada; answers carry "
                                      "X-Detected-At once it fires (the attacking env ends or flags the episode; default: none)")
    p.add_argument("--victim-checkpoint", help="serve this checkpoint of `knockoff train-victim` instead of --env "
                                                    "(default: the --env world's victim)")
    p.add_argument("--input-shape", help="C,H,W of the checkpoint's images (default: 3,S,S; 1,S,S for MNIST)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port (printed)")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="most images in one request")
    owner = p.add_argument_group("the owner's state and clients (see docs/serving.md)")
    owner.add_argument("--state", metavar="DIR", help="keep keys, charges, stored answers and detector states in "
                                                      "DIR/state.db (SQLite): a restart forgets nothing. Without "
                                                      "it (the default), all of it lives in memory and is lost at exit")
    owner.add_argument("--api-key-env", metavar="NAME",
                       help="shorthand for one owner key (every right, client name 'owner'), held in environment "
                            f"variable NAME (e.g. {DEFAULT_KEY_ENV}) and in memory only; per-client keys: "
                            "`knockoff keys add`; default: none)")
    owner.add_argument("--trust-proxy", action="store_true",
                       help="without keys, name a client by X-Forwarded-For's last entry (set by the proxy in front) "
                            "instead of the peer's address; only behind a proxy that sets it")
    owner.add_argument("--rate-limit", type=float, metavar="QPS", help="queries per second per client (429 above; "
                                                                                        "default: no limit)")
    owner.add_argument("--unmonitored-eval", action="store_true",
                       help="keep evaluation queries (keys with --eval) out of the detector; by default it sees them")
    owner.add_argument("--keep-answers", type=int, default=256,
                       help="answers kept per client for repeated request ids (retries are free)")
    owner.add_argument("--max-answer-mib", type=float, default=256, help="answers kept in all, in MiB")
    owner.add_argument("--live-monitors", type=int, default=64, help="detectors kept in memory (the rest are "
                                                                      "restored from the state on demand)")
    owner.add_argument("--max-anonymous", type=int, default=1024, help="without keys: most client addresses served")
    owner.add_argument("--max-abs-pixel", type=float, default=1e4, help="images with larger values get a 400")
    owner.add_argument("--fsync", action="store_true", help="fsync every answer's record (survives power loss, "
                                                            "not only a killed process; slower)")
    limits = p.add_argument_group("connection limits (reported by /health)")
    limits.add_argument("--header-timeout", type=float, default=10.0, help="seconds for a request's headers")
    limits.add_argument("--body-timeout", type=float, default=30.0, help="seconds for a request's body")
    limits.add_argument("--keep-alive", type=float, default=5.0, help="seconds an idle connection stays open")
    limits.add_argument("--max-connections", type=int, default=1024, help="open connections (503 above)")
    p.add_argument("--inject-faults", metavar="JSON", help="FOR TESTS ONLY: {client: {request number: fault}} "
                                                          f"with faults {sorted(FAULTS)} (default: none)")
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
    service = VictimService(
        blackbox, shape, max_batch=args.max_batch, state=args.state, owner_key=key, trust_proxy=args.trust_proxy,
        rate_limit=args.rate_limit, keep_answers=args.keep_answers, max_answer_mib=args.max_answer_mib,
        live_monitors=args.live_monitors, max_anonymous=args.max_anonymous, monitor_eval=not args.unmonitored_eval,
        max_abs_pixel=args.max_abs_pixel, faults=parse_faults(args.inject_faults), fault_delay=args.fault_delay,
        detector=args.detector, info=info, fsync=args.fsync)
    limits = Limits(max_body_bytes=body_limit(args.max_batch, shape), header_timeout=args.header_timeout,
                    body_timeout=args.body_timeout, keep_alive=args.keep_alive, max_connections=args.max_connections)
    app = create_app(service, limits=limits)
    sock = listening_socket(args.host, args.port)
    host, port = sock.getsockname()[:2]
    who = ("API keys" if service.requires_key else
           f"no API keys: each {'forwarded' if args.trust_proxy else 'peer'} address is one client "
           "(issue keys with `knockoff keys add NAME --state DIR`)")
    kept = f"state in {service.store.path}" if args.state else "state in memory only (--state DIR keeps it)"
    print(f"serving {info.get('world') or info.get('victim')} ({blackbox.num_classes} classes, input "
          f"{shape}, max batch {args.max_batch}) on http://{host}:{port}", flush=True)
    print(f"clients: {who}; {kept}", flush=True)
    serve_forever(app, sock)
    return 0
