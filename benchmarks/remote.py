"""Remote victim: queries per second against a local ``knockoff serve`` vs the in-process victim.

The digits world's victim is served by ``knockoff serve`` in a subprocess on 127.0.0.1; the
same world is attacked in this process once with its in-process victim and once through
HTTP (:class:`knockoff_env.remote.RemoteVictim`). Two measurements, each interleaved
(local, remote, local, remote…) so both see the same machine load:

* full env steps (4 queries each, the paper's setting): queries per second of the attack;
* bare victim calls of 4, 64 and 256 images: the HTTP round trip alone.

The per-query overhead is ``(remote time − local time) / queries``.

    python -m benchmarks.remote [--steps 400] [--calls 200]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from knockoff_env.worlds.digits import load_digits_victim, make_digits_env

from .results import machine, table, write_section

ROOT = Path(__file__).resolve().parents[1]


def start_server() -> tuple[subprocess.Popen, str]:
    load_digits_victim()  # cached before the server needs it
    proc = subprocess.Popen([sys.executable, "-m", "agents.cli", "serve", "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # as this process: one torch thread
    line = proc.stdout.readline()
    if "http://" not in line:
        raise RuntimeError(f"knockoff serve did not start: {line}{proc.stdout.read()}")
    return proc, line.split()[-1]


def interleaved(local, remote, n: int, warmup: int = 5) -> tuple[float, float]:
    """Mean seconds of ``local()`` and ``remote()``, called alternately ``n`` times each."""
    times = {"local": [], "remote": []}
    for i in range(n + warmup):
        for name, call in (("local", local), ("remote", remote)):
            t0 = time.perf_counter()
            call()
            if i >= warmup:
                times[name].append(time.perf_counter() - t0)
    return float(np.mean(times["local"])), float(np.mean(times["remote"]))


def stepper(env):
    env.reset(seed=0)

    def step():
        if env.step(env.action_space.sample())[2]:
            env.reset()
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400, help="env steps of each kind")
    parser.add_argument("--calls", type=int, default=200, help="bare victim calls of each kind and size")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)  # tiny models: one thread each for the attack and the server
    proc, url = start_server()
    try:
        local = make_digits_env(budget=1000, device="cpu")
        remote = make_digits_env(budget=1000, device="cpu", victim=url, remote={"client_id": "benchmark"})
        rows = []
        local_s, remote_s = interleaved(stepper(local), stepper(remote), args.steps)
        rows.append(row("env step", 4, args.steps, local_s, remote_s))
        images = local.query_set.fetch(np.arange(256))
        for size in (4, 64, 256):
            batch = images[:size]
            local_s, remote_s = interleaved(lambda: local.victim(batch), lambda: remote.victim(batch), args.calls)
            rows.append(row("victim call", size, args.calls, local_s, remote_s))
        ledger = remote.victim.ledger()
        remote.victim.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    for r in rows:
        print(" ".join(f"{c:>12}" for c in r))
    body = (f"`python -m benchmarks.remote --steps {args.steps} --calls {args.calls}` — {machine()}; digits world, "
            "CPU, one torch thread in each process; `knockoff serve` in a subprocess on 127.0.0.1 (safetensors payloads, one kept-alive "
            "connection); local and remote calls interleaved.\n\n"
            + table(["what", "images", "repeats", "in-process ms", "remote ms", "in-process q/s", "remote q/s",
                     "remote / in-process time", "overhead ms/query"], rows)
            + f"\n\nThe remote client made {ledger['requests']} requests with {ledger['retries']} retries. "
              "The overhead is the HTTP round trip (serialisation, the server's validation and bookkeeping, "
              "the loopback socket); per query it shrinks with the batch, so an attack with 4 queries per "
              "step pays it almost in full, while evaluation (batches of up to `max_batch`) hardly does.")
    write_section("remote", body)


def row(what: str, size: int, repeats: int, local_s: float, remote_s: float) -> list:
    return [what, size, repeats, f"{local_s * 1e3:.2f}", f"{remote_s * 1e3:.2f}", f"{size / local_s:.0f}",
            f"{size / remote_s:.0f}", f"{remote_s / local_s:.2f}×", f"{(remote_s - local_s) / size * 1e3:.3f}"]


if __name__ == "__main__":
    main()
