"""What choosing costs: each label bandit per 1,000 queries, and each selection rule per pool.

1. **Attacks.** Seconds per 1,000 queries of a whole attack (``run_attack``, no evaluation,
   no retraining) on the digits world for every strategy (the label agents, ActiveThief's five
   rules, Jacobian augmentation, CopycatCNN), as ratios to the gradient bandit (``adaptive``)
   and to ``random``, with the seconds the image agents spend choosing (scoring the pool or
   synthesizing) per round. Repetitions are interleaved (every agent once, in a new random order,
   then again) so that all see the same machine load; the median is reported. An ActiveThief
   round scores the whole pool (``--pool-sample``: a random subsample of that size instead), so
   its cost per 1,000 queries depends on the budget: rounds are 10 % of the budget.
2. **Agents alone.** Microseconds per step of ``act`` + ``update`` driven directly (random
   rewards, every label open), and per ``label_probabilities`` call (the policy plots), on
   the digits hierarchy (40 labels in 4 nodes) and on one of D²'s size (2,129 labels in
   nodes of 1,000, 601, 256, 200, 67 and 5).
3. **Pool scoring.** Seconds to choose k = 100 of N = 1,000 and 10,000 pool images with each
   selection rule, with the digits world's knockoff after a 1,000-query attack (its pool of
   5,457 images repeated to 10,000), on the knockoff's device. Plus how many of the k images
   DFAL chooses are the same when DeepFool linearises the softmax (ActiveThief's choice)
   instead of the logits.

    python -m benchmarks.strategies [--repeats 3] [--budget 1000] [--steps 2000] [--sizes 1000 10000]
                                    [--pool-sample N] [--agents NAME …] [--threads 1] [--no-write]
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import gymnasium as gym
import numpy as np
import torch

import knockoff_env  # noqa: F401  (registers the ids)
from agents import make_agent, run_attack
from agents.active.deepfool import deepfool_distances
from agents.active.selection import RULES, select, select_dfal
from agents.registry import BUILT, LABEL_AGENTS, env_preset
from knockoff_env import KnockoffEnv

from .results import machine, table, write_section

D2_NODES = (1000, 601, 256, 200, 67, 5)
K = 100


def attack_seconds(repeats: int, budget: int, agents, pool_sample: int | None) -> dict[str, tuple[float, float]]:
    """Per agent, median seconds per 1,000 queries of a digits attack and seconds per round of
    choosing images (NaN for label agents); repetitions interleaved."""
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in agents}
    order = np.random.default_rng(0)
    for repeat in range(repeats):
        for name in map(str, order.permutation(list(agents))):  # a new order each time: load drifts
            env = gym.make("Knockoff-Digits-v0", budget=budget, **env_preset(name))
            options = {"pool_sample": pool_sample} if name.startswith("activethief") and pool_sample else {}
            agent = make_agent(name, env, seed=repeat, **options)
            choosing = timed_rounds(agent)
            start = time.perf_counter()
            run_attack(env, agent, seed=repeat, progress=False)
            per_round = sum(choosing) / len(choosing) if choosing else float("nan")
            times[name].append(((time.perf_counter() - start) * 1000 / budget, per_round))
            env.close()
    return {name: tuple(np.median(np.asarray(t), axis=0).tolist()) for name, t in times.items()}


def timed_rounds(agent) -> list[float]:
    """Seconds of each round an image agent chooses (its ``next_round``), appended as it plays."""
    seconds: list[float] = []
    inner = getattr(agent, "next_round", None)
    if inner is None:
        return seconds

    def next_round(left):
        start = time.perf_counter()
        try:
            return inner(left)
        finally:
            seconds.append(time.perf_counter() - start)

    agent.next_round = next_round
    return seconds


def sized_env(node_sizes) -> KnockoffEnv:
    """An env whose query set has one image per label in nodes of the given sizes (agents need only its shape)."""
    labels = int(sum(node_sizes))
    offsets = np.concatenate([[0], np.cumsum(node_sizes)])
    hierarchy = {f"node{i}": list(range(offsets[i], offsets[i + 1])) for i in range(len(node_sizes))}
    x, y = torch.zeros(labels, 2), torch.arange(labels)
    return KnockoffEnv(torch.nn.Linear(2, 3), (x, y), lambda: torch.nn.Linear(2, 3), hierarchy=hierarchy,
                       budget=labels, device="cpu")


def agent_microseconds(node_sizes, steps: int) -> dict[str, tuple[float, float]]:
    """Per agent: µs per act + update, µs per label_probabilities call."""
    env = sized_env(node_sizes)
    mask = np.ones(env.query_set.num_labels, np.int8)
    info = {"action_mask": mask}
    rewards = np.random.default_rng(0).uniform(size=steps)
    out = {}
    for name in LABEL_AGENTS:
        agent = make_agent(name, env, seed=0)
        start = time.perf_counter()
        for r in rewards:
            agent.update(agent.act(None, info), float(r), info)
        step = (time.perf_counter() - start) / steps * 1e6
        calls = max(1, steps // 100)
        start = time.perf_counter()
        for _ in range(calls):
            agent.label_probabilities(mask.astype(bool))
        out[name] = (step, (time.perf_counter() - start) / calls * 1e6)
    return out


def trained_knockoff():
    """The digits world's knockoff after a 1,000-query random attack, and the world's pool."""
    env = gym.make("Knockoff-Digits-v0", budget=1000)
    run_attack(env, make_agent("random", env, seed=0), seed=0, progress=False)
    core = env.unwrapped
    return core.knockoff.model, core.query_set.fetch(np.arange(len(core.query_set))).to(core.device)


def scoring_seconds(model, pool: torch.Tensor, sizes) -> tuple[list[list], list[str]]:
    rows, notes = [], []
    for n in sizes:
        images = pool[torch.arange(n) % len(pool)]
        queried = pool[torch.arange(200) % len(pool)]
        row = [f"{n:,}"]
        for rule in RULES:
            start = time.perf_counter()
            select(rule, model, images, K, queried=queried, keep=10 * K)
            row.append(f"{time.perf_counter() - start:.3f}")
        rows.append(row)
        if n == sizes[0]:
            by = {on: select_dfal(*deepfool_distances(model, images, on=on), K) for on in ("logits", "probs")}
            same = len(set(by["logits"].tolist()) & set(by["probs"].tolist()))
            notes.append(f"DFAL on N = {n:,}: {same} of the k = {K} images chosen on the logits are also chosen "
                         "on the softmax probabilities (ActiveThief's linearisation).")
    return rows, notes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=2000, help="agent-only steps per agent and hierarchy")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="pool sizes to score")
    parser.add_argument("--pool-sample", type=int, help="ActiveThief's pool subsample per round (default: "
                        "its own, 10,000: the digits world's whole pool)")
    parser.add_argument("--agents", nargs="+", default=list(BUILT), help="strategies to time (default: all)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: a shared machine)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if min(args.sizes) <= K:
        parser.error(f"--sizes must exceed k = {K}, the images chosen from each pool")
    warnings.simplefilter("ignore")  # near-chance notes of the online knockoff
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start, load_start = time.perf_counter(), os.getloadavg()[0]

    attack = attack_seconds(args.repeats, args.budget, args.agents, args.pool_sample)
    base = {name: attack[name][0] if name in attack else float("nan") for name in ("adaptive", "random")}
    rows = [[name, f"{s:.3f}", f"{s / base['adaptive']:.2f}×", f"{s / base['random']:.2f}×",
             "" if np.isnan(r) else f"{r:.3f}"] for name, (s, r) in attack.items()]
    part1 = table(["agent", "s / 1,000 queries", "÷ adaptive", "÷ random", "choosing s / round"], rows)

    digits, d2 = agent_microseconds((10, 10, 10, 10), args.steps), agent_microseconds(D2_NODES, args.steps)
    rows = [[name, f"{digits[name][0]:.0f}", f"{digits[name][1]:.0f}", f"{d2[name][0]:.0f}", f"{d2[name][1]:.0f}"]
            for name in LABEL_AGENTS]
    part2 = table(["agent", "µs/step (40 labels)", "µs/policy (40)", "µs/step (2,129 labels)",
                   "µs/policy (2,129)"], rows)

    model, pool = trained_knockoff()
    rows, notes = scoring_seconds(model, pool, args.sizes)
    part3 = table(["pool N", *(f"{rule} s" for rule in RULES)], rows)

    load_end = os.getloadavg()[0]
    quiet = max(load_start, load_end) < 1.0
    status = "quiet machine" if quiet else f"under load, load average {load_start:.2f} at the start, " \
                                           f"{load_end:.2f} at the end"
    chosen = "" if args.agents == list(BUILT) else f" --agents {' '.join(args.agents)}"
    sample = "" if args.pool_sample is None else f" --pool-sample {args.pool_sample}"
    body = (f"`python -m benchmarks.strategies --repeats {args.repeats} --budget {args.budget} --steps {args.steps} "
            f"--sizes {' '.join(map(str, args.sizes))}{sample}{chosen} --threads {args.threads}` — {machine()}; "
            f"device {next(model.parameters()).device}; "
            f"{time.perf_counter() - start:.0f} s ({status}).\n\n"
            f"Whole attacks on the digits world (budget {args.budget}, median of {args.repeats}; ActiveThief scores "
            f"{'the whole pool' if args.pool_sample is None else f'{args.pool_sample:,} pool images'} in each "
            f"round of {args.budget // 10} queries after a seed set of {args.budget // 10}; Jacobian: "
            f"{max(1, args.budget // 16)} seeds, then doubling rounds):\n\n{part1}\n\n"
            f"The agents alone ({args.steps} steps each; policy: one `label_probabilities` call):\n\n{part2}\n\n"
            f"Choosing k = {K} images from a pool with the digits knockoff (k-center: 200 queried images as "
            f"centres; dfal-k-center: DFAL keeps {10 * K}):\n\n{part3}\n\n" + "\n".join(notes))
    print(body)
    if not args.no_write:
        write_section("strategies", body)


if __name__ == "__main__":
    main()
