"""PRADA's operating point and cost: δ chosen on benign streams, alarms on synthetic ones.

1. Benign clients: the victims' own images as a client would send them — natural order,
   sorted by class, shuffled (``--shuffles`` seeds) — for the digits world's victim (its
   test, training and all 1,797 digits) and the glyph world's (tests/glyph_world.py, its
   test and training glyphs). For each stream, the lowest Shapiro–Wilk W of any test;
   for each candidate δ, how many streams would raise an alarm.
2. Jacobian-based augmentation (Papernot et al. 2017; knockoff_env/training/jacobian.py)
   from a few seeds, with and without clipping to the pixel range: the alarm query.
3. Cost per query of the batched, incremental detector on a 60,000-query stream, beside the
   per-query oracle (tests/prada_oracle.py) on its first queries.

    python -m benchmarks.prada [--shuffles 10] [--cost-queries 60000] [--oracle-queries 3000] [--no-write]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.datasets import load_digits

from knockoff_env import BlackBox
from knockoff_env.training.jacobian import JacobianAugmentation
from knockoff_env.victim.detectors import PRADA
from knockoff_env.victim.detectors.prada import DEFAULT_DELTA
from knockoff_env.worlds.digits import DigitsNet, digits_split, load_digits_victim
from tests.glyph_world import GlyphNet, glyph_data, glyph_victim
from tests.prada_oracle import OraclePRADA

from .results import machine, table, write_section

CANDIDATES = (0.95, 0.94, 0.93, 0.92, 0.91, 0.90, 0.89, 0.88, 0.85)


def trace(images: torch.Tensor, answers: torch.Tensor, batch: int = 4, **kwargs) -> tuple[PRADA, list]:
    """PRADA fed the stream ``batch`` queries at a time (as the env sends a step's), never
    alarming, with W at every test it ran."""
    detector, tests = PRADA(delta=1e-9, **kwargs), []
    statistic = detector.statistic
    detector.statistic = lambda: tests.append((detector.seen, statistic())) or tests[-1][1]
    for i in range(0, len(images), batch):
        detector.observe(images[i:i + batch], answers[i:i + batch])
    return detector, [(q, w) for q, w in tests if w is not None]


def alarm(tests: list, delta: float) -> int | None:
    return next((q for q, w in tests if w < delta), None)


def benign_streams(shuffles: int):
    digits, _ = load_digits_victim()
    glyphs, _ = glyph_victim()
    (train, _), (test, _) = digits_split()
    sources = {"digits test": (test, digits), "digits train": (train, digits),
               "digits all (scikit-learn order)": (torch.tensor(load_digits().images / 16.0,
                                                                         dtype=torch.float32)[:, None], digits),
               "glyph test": (glyph_data()["test"][0], glyphs), "glyph train": (glyph_data()["train"][0], glyphs)}
    for name, (x, model) in sources.items():
        with torch.no_grad():
            answers = torch.softmax(model(x), 1)
        orders = {"natural": torch.arange(len(x)), "by class": answers.argmax(1).argsort(stable=True)}
        orders.update({f"shuffled {s}": torch.randperm(len(x), generator=torch.Generator().manual_seed(s))
                       for s in range(shuffles)})
        for order_name, order in orders.items():
            yield name, order_name, x[order], answers[order]


def benign_section(shuffles: int) -> tuple[list, list, float]:
    rows, lows = [], {}
    for source, order, x, answers in benign_streams(shuffles):
        _, tests = trace(x, answers)
        w = min(w for _, w in tests)
        lows.setdefault(source, []).append((w, order, next(q for q, v in tests if v == w), len(x), len(tests)))
    for source, streams in lows.items():
        w, order, at, n, tests = min(streams)
        rows.append([source, n, len(streams), f"{w:.4f} ({order}, query {at})",
                     f"{np.median([s[0] for s in streams]):.4f}"])
    every = [s[0] for streams in lows.values() for s in streams]
    counts = [[f"{d:.2f}", sum(w < d for w in every), len(every)] for d in CANDIDATES]
    return rows, counts, min(every)


def jacobian_section(seeds: int) -> list:
    rows = []
    worlds = {"digits": (load_digits_victim()[0], digits_split()[1][0], DigitsNet),
              "glyph": (glyph_victim()[0], glyph_data()["test"][0], GlyphNet)}
    for world, (victim, pool, net) in worlds.items():
        for n_seeds in (10, 50):
            for clip in (None, (0.0, 1.0)):
                alarms, sent, lows = [], [], []
                for s in range(seeds):
                    start = torch.randperm(len(pool), generator=torch.Generator().manual_seed(s))[:n_seeds]
                    box = BlackBox(victim, device="cpu")
                    images, answers = JacobianAugmentation(net, clip=clip, epochs=5, seed=s).stream(
                        box, pool[start], rounds=8, budget=1500)
                    _, tests = trace(images, answers)
                    alarms.append(alarm(tests, DEFAULT_DELTA))
                    sent.append(len(images))
                    lows.append(min(w for _, w in tests))
                rows.append([world, n_seeds, "[0, 1]" if clip else "none",
                             ", ".join("none" if a is None else str(a) for a in alarms),
                             ", ".join(map(str, sent)), f"{min(lows):.3f} / {max(lows):.3f}"])
                print(" | ".join(map(str, rows[-1])), flush=True)
    return rows


def cost_section(queries: int, oracle_queries: int) -> tuple[list, dict]:
    """A uniform-noise stream of 1×8×8 images labelled by the digits victim: nearly every
    query joins its growing set, the detector's worst case for memory and time."""
    victim, _ = load_digits_victim()
    g = torch.Generator().manual_seed(0)
    images = torch.rand(queries, 1, 8, 8, generator=g)
    with torch.no_grad():
        answers = torch.cat([torch.softmax(victim(x), 1) for x in images.split(4096)])
    detector = PRADA(delta=1e-9)
    marks, start = {}, time.perf_counter()
    for i in range(0, queries, 4):
        detector.observe(images[i:i + 4], answers[i:i + 4])
        if i + 4 in (oracle_queries, queries - 1000, queries):
            marks[i + 4] = time.perf_counter() - start
    oracle = OraclePRADA(delta=0.0)
    start = time.perf_counter()
    for x, c in zip(images[:oracle_queries].flatten(1).numpy(), answers[:oracle_queries].argmax(1).tolist()):
        oracle.query(x, c)
    oracle_seconds = time.perf_counter() - start
    ours_first = marks[oracle_queries]
    last = marks[queries] - marks[queries - 1000]
    rows = [[f"first {oracle_queries:,}", f"{1e3 * ours_first / oracle_queries:.3f}",
             f"{1e3 * oracle_seconds / oracle_queries:.3f}", f"{oracle_seconds / ours_first:.0f}×"],
            [f"all {queries:,}", f"{1e3 * marks[queries] / queries:.3f}", "", ""],
            [f"last 1,000 (at {queries:,})", f"{last:.3f}", "", ""]]
    return rows, {"members": sum(detector.counts.values()), "seconds": marks[queries]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shuffles", type=int, default=10)
    parser.add_argument("--jacobian-seeds", type=int, default=3)
    parser.add_argument("--cost-queries", type=int, default=60000)
    parser.add_argument("--oracle-queries", type=int, default=3000)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    if not (args.cost_queries > 1000 and 0 < args.oracle_queries <= args.cost_queries
            and args.cost_queries % 4 == 0 and args.oracle_queries % 4 == 0):
        parser.error("--cost-queries must exceed 1,000 (the last 1,000 are timed apart) and --oracle-queries "
                     "lie in (0, cost-queries], both multiples of 4 (the queries per step)")
    start = time.perf_counter()
    benign_rows, counts, lowest = benign_section(args.shuffles)
    print(table(["benign source", "queries", "streams", "lowest W (order, query)", "median lowest W"], benign_rows))
    print(table(["δ", "benign streams alarmed", "of"], counts), flush=True)
    jacobian_rows = jacobian_section(args.jacobian_seeds)
    cost_rows, cost = cost_section(args.cost_queries, args.oracle_queries)
    print(table(["queries", "ms/query (ours)", "ms/query (oracle)", "oracle / ours"], cost_rows))
    load = open("/proc/loadavg").read().split()[0]
    body = "\n\n".join([
        f"`python -m benchmarks.prada --shuffles {args.shuffles} --jacobian-seeds {args.jacobian_seeds} "
        f"--cost-queries {args.cost_queries} --oracle-queries {args.oracle_queries}` — {machine()}; "
        f"{time.perf_counter() - start:.0f} s; under load (load average {load} at the end).",
        f"**Benign clients** (answers: the victim's own; 4 queries a batch; tests every 10 queries as the "
        f"reference): the lowest W any test reached. The default δ = {DEFAULT_DELTA} lies below the lowest "
        f"({lowest:.4f}).",
        table(["benign source", "queries", "streams", "lowest W (order, query)", "median lowest W"], benign_rows),
        table(["δ", "benign streams alarmed", "of"], counts),
        f"**Jacobian-based augmentation** (λ = 0.1, τ = 3, substitute trained 5 epochs a round, 8 rounds, "
        f"budget 1,500; {args.jacobian_seeds} draws of seed images from the victim's test set): PRADA's alarm "
        f"query at δ = {DEFAULT_DELTA}, queries sent, lowest W over the draws (min / max).",
        table(["world", "seeds", "clip", "alarm at query", "queries sent", "lowest W"], jacobian_rows),
        f"**Cost** on a {args.cost_queries:,}-query stream of uniform-noise 8×8 images ({cost['members']:,} "
        f"growing-set members at the end; {cost['seconds']:.0f} s in all), beside the per-query oracle in "
        "one process:",
        table(["queries", "ms/query (ours)", "ms/query (oracle)", "oracle / ours"], cost_rows)])
    print(body)
    if not args.no_write:
        write_section("prada", body)


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
