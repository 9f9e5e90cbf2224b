"""Journaling's cost per step: the same attack journaled (the CLI's default) and not, side by side.

The digits world is the worst case: its two models are so small that a step costs a few
milliseconds, so the journal's write of every step and the checkpoints (the CLI's default
interval: 5 % of the steps, at least 50 apart) weigh the most there. Both arms run
``run_attack(env, agent, logdir=…)`` to the same budget with the same seed, alternately
(plain, journaled, plain, journaled…) so that both see the same machine load; the figure is
the median seconds per step of the online phase (``attack_seconds`` / steps). The journal's
``append`` (write only, as for an in-process victim; write + fsync, as for a paid remote one)
and one checkpoint are also timed alone.

    python -m benchmarks.journal_cost [--budget 1000] [--repeats 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agents import GradientBandit, run_attack
from agents.cli.journaling import default_checkpoint_every
from agents.durable import DurableRun
from knockoff_env.durability.journal import Journal
from knockoff_env.worlds.digits import make_digits_env

from .results import machine, table, write_section


def seconds_per_step(budget: int, checkpoint_every: int | None, root: Path) -> float:
    env = make_digits_env(budget=budget, device="cpu")
    logdir = Path(tempfile.mkdtemp(dir=root))
    result = run_attack(env, GradientBandit(env, seed=0), seed=0, logdir=logdir, progress=False,
                        checkpoint_every=checkpoint_every)
    return result["attack_seconds"] / result["steps"]


def append_seconds(root: Path, sync: bool, n: int = 200) -> float:
    """Mean seconds of one journal append of a 4-query digits record (``sync``: with its fsync)."""
    journal = Journal.create(root / f"alone-{sync}.bin", {"benchmark": True}, 4, 10, sync=sync)
    outputs = np.full((4, 10), 0.1, np.float32)
    start = time.perf_counter()
    for i in range(n):
        journal.append(np.arange(4) + 4 * i, outputs)
    seconds = (time.perf_counter() - start) / n
    journal.close()
    return seconds


def checkpoint_seconds(root: Path, n: int = 20) -> float:
    """Mean seconds of one checkpoint of the digits world's env and agent state."""
    env = make_digits_env(budget=1000, device="cpu")
    agent = GradientBandit(env, seed=0)
    env.reset(seed=0)
    durable = DurableRun(root / "ckpt", env, agent, 0, 1)
    durable.start(*env.reset(seed=0), resume=False)
    start = time.perf_counter()
    for step in range(1, n + 1):
        durable.checkpoint(step)
    seconds = (time.perf_counter() - start) / n
    durable.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=1000, help="queries per attack (the digits world's default)")
    parser.add_argument("--repeats", type=int, default=5, help="attacks of each kind, interleaved")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = -(-args.budget // 4)
    every = default_checkpoint_every(make_digits_env(budget=args.budget, device="cpu"))
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        seconds_per_step(args.budget, None, root)  # warm-up: victim cached, kernels loaded
        plain, journaled = [], []
        for _ in range(args.repeats):
            plain.append(seconds_per_step(args.budget, None, root))
            journaled.append(seconds_per_step(args.budget, every, root))
        write, fsynced, checkpoint = append_seconds(root, False), append_seconds(root, True), checkpoint_seconds(root)
    p, j = statistics.median(plain), statistics.median(journaled)
    rows = [["not journaled (`--no-journal`)", f"{p * 1e3:.2f}", "1.00×"],
            [f"journaled, a checkpoint every {every} steps (the default)", f"{j * 1e3:.2f}", f"{j / p:.2f}×"]]
    load = os.getloadavg()[0]
    body = (f"`python -m benchmarks.journal_cost --budget {args.budget} --repeats {args.repeats}`: the adaptive "
            f"attack on `Knockoff-Digits-v0` ({steps} steps of 4 queries, seed 0), journaled or not, "
            f"interleaved; median of {args.repeats} attacks each. {machine()}; load average {load:.1f} at the end.\n\n"
            + table(["attack", "ms per step", "ratio"], rows)
            + f"\n\nOverhead {(j - p) * 1e3:.2f} ms per step. Alone: one journal append {write * 1e3:.3f} ms "
              f"(write only: an in-process victim's records, fsynced before each checkpoint), {fsynced * 1e3:.2f} ms "
              "with its fsync (a paid remote victim's, each fsynced as it arrives); one checkpoint of the digits "
              f"world's env and agent with the journal's fsync {checkpoint * 1e3:.1f} ms "
              f"(÷ {every} steps = {checkpoint / every * 1e3:.2f} ms per step). The digits world is the worst case: "
              "its step is the cheapest, and a larger world's step costs more while the journal's record stays "
              "a few KB (the checkpoint grows with the knockoff's weights).")
    print(body)
    write_section("journal_cost", body)


if __name__ == "__main__":
    main()
