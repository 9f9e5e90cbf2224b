"""Our Knockoff Nets against IBM ART's ``KnockoffNets``, random and adaptive, in one run.

Same victim (the digits world's), same query set (its 40-label closed world), same budget,
same knockoff architecture (``DigitsNet``) and the same offline phase: SGD lr 0.01,
momentum 0.5, batches of 64, ``--epochs`` epochs over the transfer set. Reported per
strategy: knockoff top-1 accuracy on the held-out digits, total wall-clock, and the query
phase alone (total minus the final offline training, timed separately for both). Beside the
random query phases, the floor under them: the victim's forward passes alone on as many images.

ART is an optional dependency: ``pip install 'knockoff-env[bench]'`` (or
``pip install adversarial-robustness-toolbox``).

    python -m benchmarks.vs_art [--budget 1000] [--epochs 30] [--seeds 0 1] [--tiles 1 100] [--threads 1]

``--tiles`` repeats the query set that many times (same labels, more images per label) to
show how each attack's cost grows with the size of P_A.
"""
from __future__ import annotations

import argparse
import inspect
import os
import time

import numpy as np
import torch
from torch import nn

from agents.gradient_bandit import GradientBandit
from agents.random_agent import RandomAgent
from agents.runner import run_attack
from knockoff_env import KnockoffEnv
from knockoff_env.victim.blackbox import BlackBox
from knockoff_env.worlds.digits import DigitsNet, digits_query_set, digits_split, load_digits_victim

from .results import machine, table, write_section

ART_QUERY_BATCH = 64  # ART's batch_size_query here (its default is 1); ours: the BlackBox default, 256


def art_or_exit():
    try:
        from art.attacks.extraction import KnockoffNets
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        raise SystemExit("IBM ART is not installed: pip install 'knockoff-env[bench]' "
                         "(or pip install adversarial-robustness-toolbox)") from None
    return KnockoffNets, PyTorchClassifier


def accuracy(model: nn.Module, test) -> float:
    with torch.inference_mode():
        return float((model.eval()(test[0]).argmax(1) == test[1]).float().mean())


def query_set(tile: int):
    """The digits world's query set repeated ``tile`` times, with its hierarchy."""
    images, labels, hierarchy, _ = digits_query_set()
    return images.repeat(tile, 1, 1, 1), labels.repeat(tile), hierarchy


def run_art(strategy: str, budget: int, epochs: int, seed: int, tile: int,
            query_batch: int = ART_QUERY_BATCH) -> dict:
    """ART's attack; the final ``fit`` is timed apart from the query phase."""
    KnockoffNets, PyTorchClassifier = art_or_exit()
    victim, _ = load_digits_victim()
    images, labels, _ = query_set(tile)
    _, test = digits_split()

    def classifier(model: nn.Module, trainable: bool):
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5) if trainable else None
        return PyTorchClassifier(model, nn.CrossEntropyLoss(), (1, 8, 8), 10, optimizer=optimizer,
                                 clip_values=(0.0, 1.0), device_type="cpu")

    np.random.seed(seed)
    torch.manual_seed(seed)
    thief_model = DigitsNet()
    thief = classifier(thief_model, True)
    fit_times: list[float] = []
    fit = thief.fit

    def timed_fit(*args, **kwargs):
        start = time.perf_counter()
        fit(*args, **kwargs)
        fit_times.append(time.perf_counter() - start)

    thief.fit = timed_fit
    attack = KnockoffNets(classifier(nn.Sequential(victim, nn.Softmax(1)), False), batch_size_fit=64,
                          batch_size_query=query_batch, nb_epochs=epochs, nb_stolen=budget, sampling_strategy=strategy,
                          reward="all", verbose=False, use_probability=True)
    start = time.perf_counter()
    attack.extract(images.numpy(), labels.numpy() if strategy == "adaptive" else None, thieved_classifier=thief)
    seconds = time.perf_counter() - start
    return {"accuracy": accuracy(thief_model, test), "seconds": seconds, "query_seconds": seconds - fit_times[-1]}


def run_ours(strategy: str, budget: int, epochs: int, seed: int, tile: int, batch: bool = True) -> dict:
    """Our attack through :func:`run_attack`, as a user runs it: random trains no online knockoff
    and is queried in batches of the victim's ``batch_size`` (``batch=False``: 4-image steps)."""
    images, labels, hierarchy = query_set(tile)
    env = KnockoffEnv(victim=load_digits_victim()[0], query_set=(images, labels), hierarchy=hierarchy,
                      eval_set=digits_split()[1], knockoff=DigitsNet, knockoff_lr=0.01, budget=budget, device="cpu")
    agent = GradientBandit(env, seed=seed) if strategy == "adaptive" else RandomAgent(env, seed=seed)
    start = time.perf_counter()
    result = run_attack(env, agent, seed=seed, retrain_epochs=epochs, progress=False, batch=None if batch else False,
                        retrain_kwargs={"step_size": max(epochs, 60)})
    seconds = time.perf_counter() - start
    return {"accuracy": result["knockoff_accuracy"], "seconds": seconds, "query_seconds": result["attack_seconds"],
            "victim_calls": result["victim_calls"]}


OUR_BATCH = inspect.signature(BlackBox.__init__).parameters["batch_size"].default  # images per victim call
SAME_BATCH = f"ART, batch_size_query={OUR_BATCH}"


def victim_alone(budget: int, seed: int, per_call: int) -> float:
    """The floor under both random query phases: the victim's forward passes (softmax included)
    on ``budget`` query images, ``per_call`` at a time, and nothing else (seconds)."""
    images = digits_query_set()[0]
    chosen = images[torch.from_numpy(np.random.default_rng(seed).choice(len(images), budget, replace=False))]
    victim = load_digits_victim()[0].eval()
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, budget, per_call):
            torch.softmax(victim(chosen[i:i + per_call]), 1)
    return time.perf_counter() - start


RUNS = {("random", "ART"): lambda *a: run_art("random", *a),
        ("random", SAME_BATCH): lambda *a: run_art("random", *a, query_batch=OUR_BATCH),
        ("random", "ours"): lambda *a: run_ours("random", *a),
        ("random", "ours, 4-image steps"): lambda *a: run_ours("random", *a, batch=False),
        ("adaptive", "ART"): lambda *a: run_art("adaptive", *a),
        ("adaptive", "ours"): lambda *a: run_ours("adaptive", *a)}


def measure(tile: int, budget: int, epochs: int, seeds: list[int], repeats: int) -> tuple[dict, dict]:
    """Every attack of :data:`RUNS` on one query-set size, seed by seed, interleaved (so that a
    change in the machine's load falls on all of them alike): means and spreads over seeds. The
    random attacks' query phases (a fraction of a second, easily disturbed by other jobs) are also
    timed in ``repeats`` more interleaved rounds with one offline epoch, and reported as the median
    of all their runs. Each round also times :func:`victim_alone` at ART's and at our images per
    call; returns the medians of those too ({images per call: seconds})."""
    runs: dict = {key: [] for key in RUNS}
    floors: dict = {ART_QUERY_BATCH: [], OUR_BATCH: []}
    for seed in seeds:
        for key, run in RUNS.items():
            runs[key].append(run(budget, epochs, seed, tile))
    out = {key: {k: (float(np.mean([r[k] for r in rs])), float(np.std([r[k] for r in rs]))) for k in rs[0]}
           for key, rs in runs.items()}
    query = {key: [r["query_seconds"] for r in rs] for key, rs in runs.items()}
    for i in range(len(seeds) + repeats):
        seed = seeds[i % len(seeds)]
        for key, run in RUNS.items():
            if key[0] == "random" and i >= len(seeds):
                query[key].append(run(budget, 1, seed, tile)["query_seconds"])
        for per_call, times in floors.items():
            times.append(victim_alone(budget, seed, per_call))
    for key, times in query.items():
        out[key]["query_seconds"] = (float(np.median(times)), float(len(times)))
    return out, {per_call: float(np.median(times)) for per_call, times in floors.items()}


def rows_and_note(m: dict, floors: dict, images: int) -> tuple[list[list[str]], str]:
    """The table rows of one query-set size (speed-ups against ART as configured) and its note."""
    rows = []
    for (strategy, name), r in m.items():
        art = m[strategy, "ART"]
        ours = name.startswith("ours")
        rows.append([f"{images:,}", strategy, name, f"{r['accuracy'][0]:.3f} ± {r['accuracy'][1]:.3f}",
                     f"{r['seconds'][0]:.2f}", f"{r['query_seconds'][0]:.3f}",
                     f"{art['seconds'][0] / r['seconds'][0]:.1f}×" if ours else "",
                     f"{art['query_seconds'][0] / r['query_seconds'][0]:.2f}×" if ours else "",
                     f"{r['victim_calls'][0]:.0f}" if ours else ""])
    q = {key: r["query_seconds"][0] for key, r in m.items()}
    random, adaptive = q["random", "ours"], q["adaptive", "ours"]
    art, same, steps = q["random", "ART"], q["random", SAME_BATCH], q["random", "ours, 4-image steps"]
    note = (f"{images:,} images: our random query phase {random * 1e3:.1f} ms against ART's {art * 1e3:.1f} ms "
            f"({art / random:.2f}×) and {same * 1e3:.1f} ms with ART's victim batches as large as ours "
            f"({same / random:.2f}×); the victim's forward passes alone take {floors[OUR_BATCH] * 1e3:.1f} ms "
            f"at {OUR_BATCH} images per call and {floors[ART_QUERY_BATCH] * 1e3:.1f} ms at {ART_QUERY_BATCH}, so "
            f"the rest costs us {(random - floors[OUR_BATCH]) * 1e3:.1f} ms and ART "
            f"{(art - floors[ART_QUERY_BATCH]) * 1e3:.1f} ms; 4-image steps {steps * 1e3:.1f} ms; "
            f"our adaptive query phase {adaptive * 1e3:.1f} ms ({adaptive / random:.1f}× random's), "
            f"ART's {q['adaptive', 'ART'] * 1e3:.1f} ms.")
    return rows, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tiles", type=int, nargs="+", default=[1, 100])
    parser.add_argument("--threads", type=int, help="torch threads for both attacks (default: torch's)")
    parser.add_argument("--repeats", type=int, default=5, help="more timings of the random query phases")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    art_or_exit()
    load_digits_victim()  # train and cache before any timing
    run_ours("random", 40, 1, 0, 1)  # warm up torch's kernels and imports before any timing
    rows, notes, loads = [], [], [os.getloadavg()[0]]
    size = len(digits_query_set()[1])
    for tile in args.tiles:
        more, note = rows_and_note(*measure(tile, args.budget, args.epochs, args.seeds, args.repeats), size * tile)
        rows += more
        notes.append(note)
        loads.append(os.getloadavg()[0])
        print(note)
    command = (f"python -m benchmarks.vs_art --budget {args.budget} --epochs {args.epochs} --seeds "
               f"{' '.join(map(str, args.seeds))} --tiles {' '.join(map(str, args.tiles))} --repeats {args.repeats}"
               + (f" --threads {args.threads}" if args.threads else ""))
    body = (f"`{command}` — {machine()}; load average {min(loads):.1f}–{max(loads):.1f} on {os.cpu_count()} "
            "cores (1-minute averages, taken during the run); digits world (its query set repeated `tile` times), CPU, means "
            "(± standard deviation of the accuracy) over seeds, the attacks of each seed interleaved; the query "
            f"phases of the random attacks are medians over {len(args.seeds) + args.repeats} interleaved runs.\n\n"
            + table(["query images", "strategy", "attack", "knockoff acc.", "total s", "query-phase s",
                     "speed-up (total)", "speed-up (query phase)", "victim calls"], rows)
            + "\n\nSpeed-ups are against ART as this benchmark configures it (first row of each strategy). Both "
              "finish with the same offline training (equal epochs, lr, momentum, batch size), which costs the "
              "same for both and so caps the total speed-up; the query phase is where the attacks differ (ours: "
              "`run_attack` up to the offline phase, reset and bookkeeping included; ART's: `extract` minus its "
              "final `fit`). ART's adaptive trains on hard labels, one query per step; ours on soft labels, 4 "
              "queries per step (the paper's setting). Both random attacks train only at the end. ART's random "
              f"draws its sample in one call and queries it in batches of `batch_size_query` ({ART_QUERY_BATCH} "
              f"here, ART's default 1; the row \"{SAME_BATCH}\" gives it our batch size). Ours is `run_attack` "
              "with a `RandomAgent` and no option: no online knockoff, and its 4-image steps drawn a batch at a "
              "time (the labels of a batch's steps named at once, `act_ahead`) and queried in batches of the "
              f"victim's `batch_size` ({OUR_BATCH}), one victim call each (`agents.batching`); \"ours, "
              "4-image steps\" is the same attack with `batch=False`, one victim call per step. The victim's "
              f"forward passes dominate both random query phases; ours adds its {-(-args.budget // 4)} steps' "
              "draws and "
              "bookkeeping.\n\n"
            + " ".join(notes)
            + " Our adaptive query phase stays near its floor, the two models' own time (see env_overhead), "
              "whatever the size of P_A; ART's adaptive step scans the whole query set (`x[y == action]`) and "
              "loops over the labels in Python for every query, so its cost grows with P_A — and it needs all "
              "of P_A as one in-memory array, which rules out ILSVRC-scale query sets at 224 px.")
    write_section("vs_art", body)


if __name__ == "__main__":
    main()
