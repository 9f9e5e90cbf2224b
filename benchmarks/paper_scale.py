"""Paper scale: a query set of real JPEGs at ILSVRC sizes, ResNet-34 victim and knockoff at 224 px.

Writes a folder of JPEGs (~500×375, smooth content plus grain, ~ILSVRC file sizes), then
times 4-image steps of the attack with each way of getting images: Pillow per image,
torchvision.io batched on the CPU, on the GPU (when CUDA is present), a packed query set
(``knockoff pack``), each without and with the look-ahead. Each step is split into decode
(draw + fetch, or taking the look-ahead's batch), victim, knockoff (online SGD step) and the
rest; the models' own work on pre-loaded device tensors ("bare") is timed interleaved with
the steps, so every configuration is compared with the bare models under the same load.
Then the look-ahead's hit rate for the random, adaptive and adaptive-flat agents, and the
projected time of a 60k-query attack. Random weights (speed does not depend on them).

    python -m benchmarks.paper_scale [--images 2000] [--labels 100] [--steps 16] [--hit-steps 300] [--threads 1]
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torchvision.models import resnet34

from agents import make_agent
from knockoff_env import KnockoffEnv
from knockoff_env.data.common import class_folders
from knockoff_env.data.decode import DecodedImageFiles, Preprocess
from knockoff_env.data.lookahead import hint_from
from knockoff_env.data.packed import INDEX, PackedImages, pack
from knockoff_env.data.transforms import query_transform

from .env_overhead import bare_step
from .results import machine, table, write_section

QUERIES, CLASSES = 60_000, 256


def write_jpegs(root: Path, images: int, labels: int) -> Path:
    """``images`` JPEGs of ~500×375 in ``labels`` class folders (kept if already there)."""
    folder = root / f"jpegs-{images}-{labels}"
    if (folder / "done").exists():
        return folder
    rng = np.random.default_rng(0)
    for i in range(images):
        label = i % labels
        w, h = (500, 375) if rng.random() < 0.7 else (375, 500)
        base = Image.fromarray(rng.integers(0, 256, (h // 12, w // 12, 3), dtype=np.uint8)).resize((w, h), Image.BICUBIC)
        grain = rng.normal(0, 10, (h, w, 3))
        pixels = np.clip(np.asarray(base, np.float64) + grain, 0, 255).astype(np.uint8)
        (folder / f"n{label:08d}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(folder / f"n{label:08d}" / f"{i:07d}.JPEG", quality=90)
    (folder / "done").write_text("")
    return folder


class Timed:
    """Wraps a callable, adding its wall time (device synchronised) to ``seconds``."""

    def __init__(self, fn, device: torch.device):
        self.fn, self.device, self.seconds = fn, device, 0.0

    def __call__(self, *args, **kwargs):
        sync(self.device)
        start = time.perf_counter()
        out = self.fn(*args, **kwargs)
        sync(self.device)
        self.seconds += time.perf_counter() - start
        return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_env(query_set, lookahead, device, budget: int, **options) -> KnockoffEnv:
    torch.manual_seed(0)
    return KnockoffEnv(resnet34(num_classes=CLASSES), query_set, lambda: resnet34(num_classes=CLASSES),
                       budget=budget, device=device, lookahead=lookahead, num_classes=CLASSES, **options)


def time_steps(env: KnockoffEnv, steps: int, warmup: int = 2) -> dict[str, float]:
    """Mean ms per step split into decode/victim/knockoff/rest, and the bare models' ms, interleaved."""
    device = env.device
    env.reset(seed=0)
    agent = make_agent("random", env, seed=0)
    victim_timer = Timed(env.victim, device)
    knockoff_timer = Timed(env.knockoff.step, device)
    env.knockoff.step = knockoff_timer
    bare_knockoff = copy.deepcopy(env.knockoff.model).train()
    optimizer = torch.optim.SGD(bare_knockoff.parameters(), lr=env.knockoff.lr, momentum=env.knockoff.momentum)
    bare_x = env.query_set.fetch(np.arange(env.queries_per_step)).to(device)
    totals = dict.fromkeys(("decode", "victim", "knockoff", "step", "bare"), 0.0)
    obs, info = env.observe()
    for i in range(steps + warmup):
        hint_from(env, agent, i)
        action = agent.act(obs, info)
        victim_timer.seconds = knockoff_timer.seconds = 0.0
        sync(device)
        t0 = time.perf_counter()
        query = env.prepare(action)
        sync(device)
        t1 = time.perf_counter()
        answers = victim_timer(query.images, check_finite=device.type == "cpu")
        obs, reward, terminated, _, info = env.learn(query, answers, device.type == "cpu")
        sync(device)
        t2 = time.perf_counter()
        agent.update(action, reward, info)
        bare_step(env.victim.victim, bare_knockoff, optimizer, bare_x)
        sync(device)
        t3 = time.perf_counter()
        if i >= warmup:
            totals["decode"] += t1 - t0
            totals["victim"] += victim_timer.seconds
            totals["knockoff"] += knockoff_timer.seconds
            totals["step"] += t2 - t0
            totals["bare"] += t3 - t2
        if terminated:
            raise RuntimeError("the budget ran out during timing; raise --images")
    ms = {k: v / steps * 1e3 for k, v in totals.items()}
    ms["rest"] = ms["step"] - ms["decode"] - ms["victim"] - ms["knockoff"]
    if env.lookahead:
        ms["hit_rate"] = env.lookahead.hit_rate
        env.lookahead.close()
    return ms


def hit_rates(files, steps: int, device) -> dict[str, dict]:
    """The look-ahead's hit rate per agent over ``steps`` steps (small models: only prediction counts)."""
    out = {}
    small = Preprocess.paper(32)
    for name in ("random", "adaptive", "adaptive-flat"):
        query_set = DecodedImageFiles(files, small, "cpu")
        torch.manual_seed(0)
        env = KnockoffEnv(nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, CLASSES)), query_set,
                          lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, CLASSES)),
                          budget=min(len(files), 4 * steps), device=device, lookahead=True, num_classes=CLASSES)
        obs, info = env.reset(seed=0)
        agent = make_agent(name, env, seed=0)
        for i in range(steps):
            hint_from(env, agent, i)
            action = agent.act(obs, info)
            obs, reward, terminated, _, info = env.step(action)
            agent.update(action, reward, info)
            if terminated:
                break
        out[name] = env.lookahead.stats()
        env.lookahead.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="JPEGs in the query set")
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--steps", type=int, default=16, help="timed steps per configuration")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the models (default 1: the other cores decode; on a loaded "
                             "machine more threads mostly wait for each other)")
    parser.add_argument("--hit-steps", type=int, default=300, help="steps per agent for the hit rates")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "knockoff_paper_scale")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--px", type=int, default=224, help="the models' input size (default: the paper's 224)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    start = time.perf_counter()
    folder = write_jpegs(args.workdir, args.images, args.labels)
    sizes = [p.stat().st_size for p in sorted(folder.glob("*/*.JPEG"))[:200]]
    print(f"{args.images} JPEGs in {folder} (mean {np.mean(sizes) / 1e3:.0f} kB), {time.perf_counter() - start:.0f} s")
    files = class_folders(folder, query_transform(args.px))
    packed_dir = args.workdir / f"packed-{args.images}-{args.labels}-{args.px}px"
    if not (packed_dir / INDEX).exists():
        start = time.perf_counter()
        pack(files, packed_dir, Preprocess.paper(args.px), progress=False)
        print(f"packed in {time.perf_counter() - start:.0f} s")
    sources = {"Pillow": lambda: files,
               "torchvision.io CPU": lambda: DecodedImageFiles(files, Preprocess.paper(args.px), "cpu"),
               "packed": lambda: PackedImages(packed_dir, device)}
    if device.type == "cuda":
        sources["torchvision.io GPU"] = lambda: DecodedImageFiles(files, Preprocess.paper(args.px), device)
    budget = 4 * (args.steps + 4)
    rows, results = [], {}
    for source, make_query_set in sources.items():
        for lookahead in (False, True):
            env = make_env(make_query_set(), lookahead, device, budget)
            ms = time_steps(env, args.steps)
            key = f"{source}{' + look-ahead' if lookahead else ''}"
            results[key] = ms
            projection = ms["step"] / 1e3 * QUERIES / 4 / 60
            rows.append([key, f"{ms['decode']:.1f}", f"{ms['victim']:.1f}", f"{ms['knockoff']:.1f}",
                         f"{ms['rest']:.1f}", f"{ms['step']:.1f}", f"{ms['bare']:.1f}",
                         f"{ms['step'] / ms['bare']:.2f}×", f"{ms.get('hit_rate', float('nan')):.2f}"
                         if lookahead else "", f"{projection:.0f} min"])
            print(" | ".join(str(c) for c in rows[-1]))
    rates = hit_rates(files, args.hit_steps, device)
    rate_rows = [[name, s["hits"] + s["misses"], f"{s['hit_rate']:.3f}", s["late"]] for name, s in rates.items()]
    for row in rate_rows:
        print("hit rate", row)
    header = ["images from", "decode ms", "victim ms", "knockoff ms", "rest ms", "step ms", "bare models ms",
              "step / bare", "hit rate", "60k queries"]
    gpu = ("" if device.type == "cuda" else
           "\n\nGPU: **not measured** — no GPU was available to this run, so the target (a step within 1.25× "
           "of the two models' own time on pre-loaded device tensors) and the GPU-decoding row could not be "
           "measured here. The CUDA paths (device-resident look-ahead on side streams, batched nvJPEG "
           "decoding, `compile_models` with CUDA graphs) are written for CUDA and run on the CPU in the tests.")
    body = (f"`python -m benchmarks.paper_scale --images {args.images} --labels {args.labels} --steps {args.steps} "
            f"--hit-steps {args.hit_steps} --threads {args.threads}` — {machine()}; device {device}. Shared 2-core machine under load "
            f"from other work: compare rows by their *step / bare* ratio (bare = the two models' own work, "
            f"timed interleaved with the steps), not across runs. Query set: {args.images} JPEGs "
            f"(~500×375, mean {np.mean(sizes) / 1e3:.0f} kB) in {args.labels} labels; ResNet-34 victim "
            f"({CLASSES} classes) and knockoff at {args.px} px, random init, 4 queries per step, random agent "
            f"(its plan feeds the look-ahead). *60k queries*: step ms × 15,000 steps.\n\n"
            + table(header, rows)
            + "\n\nOn a CPU the two models dominate the step; the *decode* column is what the look-ahead takes off "
              "the step's critical path (the decoding itself moves to worker threads on the same cores, so on a "
              "CPU the step shrinks by less)."
            + f"\n\nLook-ahead hit rate ({args.hit_steps} steps per agent, default options, 32-px models so "
              "that only prediction is measured; *late*: hits still decoding when drawn):\n\n"
            + table(["agent", "steps", "hit rate", "late"], rate_rows) + gpu)
    write_section("paper_scale", body)


if __name__ == "__main__":
    main()
