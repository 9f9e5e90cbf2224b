"""Load on ``knockoff serve`` over loopback: N concurrent clients, throughput and latency, with the
state database in memory and on disk (``--state DIR``), with and without API keys.

One server per configuration, all started first; then rounds in which the configurations take
turns (so all see the same machine load): in each, ``--clients`` threads each with its own
kept-alive httpx connection and its own identity send ``--requests`` queries of ``--batch``
digits images (distinct request ids). Afterwards every client reads its own ``/usage``: the
server's charge must equal the queries it answered. Loops are bounded (a fixed number of
requests, each with a timeout).

    python -m benchmarks.serve_load [--clients 8] [--requests 40] [--batch 4] [--rounds 3]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from knockoff_env.serve import StateStore, issue_key
from knockoff_env.victim.wire import encode
from knockoff_env.worlds.digits import load_digits_victim

from .remote import start_server
from .results import machine, table, write_section

MODES = {  # name: (state on disk, API keys, fsync, detector)
    "in-memory database, no keys": (False, False, False, None),
    "--state DIR": (True, False, False, None),
    "--state DIR, API keys": (True, True, False, None),
    "--state DIR, API keys, --fsync": (True, True, True, None),
    "--state DIR, API keys, --detector prada": (True, True, False, "prada"),
}


def start(mode: str, clients: int, folder: Path):
    """The server of ``mode`` and each client's headers (a key, or an address behind --trust-proxy)."""
    on_disk, keyed, fsync, detector = MODES[mode]
    args = ["--trust-proxy"] + (["--detector", detector] if detector else [])
    if on_disk:
        args += ["--state", str(folder)]
    if fsync:
        args += ["--fsync"]
    if keyed:
        store = StateStore(folder)
        headers = [{"Authorization": f"Bearer {issue_key(store, f'client{i}')}"} for i in range(clients)]
        store.close()
    else:
        headers = [{"X-Forwarded-For": f"10.0.0.{i + 1}"} for i in range(clients)]
    proc, url = start_server(*args)
    threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep draining its log
    return proc, url, headers


def one_client(url: str, headers: dict, requests: int, batch: int, tag: str, latencies: list, answered: list):
    rng = np.random.default_rng(abs(hash(tag)) % 2 ** 32)
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        for i in range(requests):
            body = encode("images", rng.random((batch, 1, 8, 8), np.float32))
            t0 = time.perf_counter()
            response = http.post("/query", content=body, headers={"X-Request-Id": f"{tag}-{i}"})
            latencies.append(time.perf_counter() - t0)
            if response.status_code == 200:
                answered.append(batch)


def round_of(url: str, headers: list[dict], requests: int, batch: int, tag: str) -> tuple[float, list, int]:
    """All clients at once; (seconds, latencies, queries answered)."""
    latencies: list[float] = []
    answered: list[int] = []
    threads = [threading.Thread(target=one_client, args=(url, h, requests, batch, f"{tag}-c{i}", latencies, answered))
               for i, h in enumerate(headers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    if any(t.is_alive() for t in threads):
        raise RuntimeError(f"a client of {url} did not finish within 600 s")
    return time.perf_counter() - t0, latencies, sum(answered)


def charged(url: str, headers: list[dict]) -> int:
    """The server's charge, summed over what each client reads of its own usage."""
    total = 0
    for h in headers:
        total += sum(c["charged"] for c in httpx.get(f"{url}/usage", headers=h, timeout=30).json().values())
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=40, help="per client and round")
    parser.add_argument("--batch", type=int, default=4, help="images per request (the attack's step: 4)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load_digits_victim()
    results = {mode: {"seconds": 0.0, "latencies": [], "answered": 0} for mode in MODES}
    with tempfile.TemporaryDirectory() as tmp:
        servers = {mode: start(mode, args.clients, Path(tmp) / str(i)) for i, mode in enumerate(MODES)}
        try:
            for mode, (_, url, headers) in servers.items():  # warm-up: connections, first forward passes
                results[mode]["warm"] = round_of(url, headers, 2, args.batch, "warm")[2]
            for r in range(args.rounds):
                for mode, (_, url, headers) in servers.items():
                    seconds, latencies, answered = round_of(url, headers, args.requests, args.batch, f"r{r}")
                    results[mode]["seconds"] += seconds
                    results[mode]["latencies"] += latencies
                    results[mode]["answered"] += answered
            for mode, (_, url, headers) in servers.items():
                results[mode]["charged"] = charged(url, headers) - results[mode]["warm"]
        finally:
            for proc, _, _ in servers.values():
                proc.terminate()
                proc.wait(timeout=30)
    rows = []
    base = results[next(iter(MODES))]
    for mode, r in results.items():
        lat = np.asarray(r["latencies"]) * 1e3
        rows.append([mode, args.clients, len(lat), r["answered"], f"{r['answered'] / r['seconds']:.0f}",
                     f"{len(lat) / r['seconds']:.0f}", f"{np.percentile(lat, 50):.1f}", f"{np.percentile(lat, 99):.1f}",
                     f"{(r['answered'] / r['seconds']) / (base['answered'] / base['seconds']):.2f}",
                     f"{r['charged']} == {r['answered']}" if r["charged"] == r["answered"] else
                     f"MISMATCH {r['charged']} != {r['answered']}"])
    for row in rows:
        print(" | ".join(str(c) for c in row))
    load = os.getloadavg()[0]
    body = (f"`python -m benchmarks.serve_load --clients {args.clients} --requests {args.requests} --batch {args.batch} "
            f"--rounds {args.rounds}` — {machine()}; load average {load:.1f} when it ended"
            f"{' (under load: figures are noisy and low)' if load > 1.5 else ''}. Digits victim, one torch thread "
            "in each server; clients are threads of one process, each with its own kept-alive connection and "
            "identity; the configurations take turns round by round.\n\n"
            + table(["configuration", "clients", "requests", "queries", "queries/s", "requests/s", "p50 ms",
                     "p99 ms", "throughput vs in-memory", "server-charged == answered"], rows)
            + "\n\nEvery answer is charged, kept for its request id and (with a detector) monitored in one SQLite "
              "transaction committed before it leaves the server; a request also counts itself in one more. "
              "`--fsync` adds an fsync per commit (durable across power loss, not only a killed process).")
    write_section("serve_load", body)


if __name__ == "__main__":
    main()
