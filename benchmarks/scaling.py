"""Step and reset cost as the query set grows (10² → 10⁶ images) and as its labels grow (10 → 2,129).

Tiny everything so that only the env's own costs can grow: 4-dim "images", linear victim
and knockoff. Pools are per-label cursors into one shuffled index array, so a step should
cost the same whatever the number of images; the observation and the action mask hold one
entry per label, so a step grows (slowly) with the number of labels. A reset copies one
index array (O(N) memcpy); each pool's order is settled a chunk at a time as it is drawn
(``knockoff_env.data.shuffle``), so no step pays for a whole pool.

    python -m benchmarks.scaling [--steps 400]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from knockoff_env import KnockoffEnv

from .results import machine, table, write_section

DIM, CLASSES = 4, 10


def tiny_env(images: int, labels: int, budget: int) -> KnockoffEnv:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(images, DIM, generator=g)
    y = torch.arange(images) % labels
    torch.manual_seed(0)
    return KnockoffEnv(nn.Linear(DIM, CLASSES), (x, y), lambda: nn.Linear(DIM, CLASSES), budget=budget,
                       action_mode="flat", device="cpu")


def time_env(images: int, labels: int, steps: int) -> tuple[float, float]:
    """(mean seconds per step, mean seconds per reset) over ``steps`` steps with random actions."""
    env = tiny_env(images, labels, budget=min(images, 4 * steps))
    rng = np.random.default_rng(0)
    actions = rng.integers(labels, size=steps + 20)
    resets, step_times = [], []
    start = time.perf_counter()
    env.reset(seed=0)
    resets.append(time.perf_counter() - start)
    for i, a in enumerate(actions):
        start = time.perf_counter()
        _, _, terminated, _, _ = env.step(int(a))
        if i >= 20:  # warm-up
            step_times.append(time.perf_counter() - start)
        if terminated:
            start = time.perf_counter()
            env.reset()
            resets.append(time.perf_counter() - start)
    return float(np.median(step_times)), float(np.mean(resets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(1)
    by_images, by_labels = [], []
    for n in (10**2, 10**3, 10**4, 10**5, 10**6):
        step, reset = time_env(n, 10, args.steps)
        by_images.append([f"{n:,}", 10, f"{step * 1e6:.0f}", f"{step / 4 * 1e6:.0f}", f"{reset * 1e3:.2f}"])
        print(f"images {n:>9,}  labels 10     step {step * 1e6:7.0f} µs  reset {reset * 1e3:8.2f} ms")
    for labels in (10, 100, 1000, 2129):
        step, reset = time_env(100_000, labels, args.steps)
        by_labels.append(["100,000", f"{labels:,}", f"{step * 1e6:.0f}", f"{step / 4 * 1e6:.0f}", f"{reset * 1e3:.2f}"])
        print(f"images   100,000  labels {labels:<5d} step {step * 1e6:7.0f} µs  reset {reset * 1e3:8.2f} ms")
    flat = float(by_images[-1][2]) / float(by_images[0][2])
    header = ["images", "labels", "µs/step (median)", "µs/query", "ms/reset"]
    body = (f"`python -m benchmarks.scaling --steps {args.steps}` — {machine()}; one torch thread, "
            f"4-dim images, linear victim and knockoff, 4 queries per step.\n\n"
            f"Step time at 10⁶ images / at 10² images: **{flat:.2f}×** (target: flat within noise).\n\n"
            + table(header, by_images) + "\n\n" + table(header, by_labels)
            + "\n\nA step touches only the drawn images, so its cost does not depend on the number of "
              "images; it grows with the number of labels only through the per-label observation and "
              "action mask (O(labels) numpy work). A reset copies one index array (O(N) memcpy); "
              "each pool's random order is settled a chunk of 64 images at a time as it is drawn "
              "(`knockoff_env.data.shuffle`), so no step pays for shuffling a whole pool.")
    write_section("scaling", body)


if __name__ == "__main__":
    main()
