"""MAD's three target searches side by side, and the budget at which plain MAD starts to
cost the victim its own accuracy.

For each ε: on the eval set of the digits world and of the glyph world (tests/glyph_world.py),
the mean angular deviation ‖â(ỹ) − â(y)‖² MAD achieves (its objective, for the default
surrogate: a freshly initialised copy of the victim), the mean L1 change, and the victim's
top-1 accuracy under the defence.

    python -m benchmarks.mad [--eps 0.1 0.25 0.5 1 1.5 2] [--no-write]
"""
from __future__ import annotations

import argparse
import time

import torch

from knockoff_env import BlackBox
from knockoff_env.worlds.digits import digits_split, load_digits_victim
from tests.glyph_world import glyph_data, glyph_victim

from .results import machine, table, write_section

SEARCHES = ("mad", "mad_argmax", "mad_argmax_vertex")


def measure(victim, images: torch.Tensor, labels: torch.Tensor, name: str, eps: float) -> tuple[float, float, float]:
    box = BlackBox(victim, defence=f"{name}:eps={eps}", device="cpu")
    mad = box.defence.defences[0]
    true, defended = box.true_and_defended(images)
    deviation = mad.scorer(images, true.double())(defended.double()[:, None])[:, 0]
    return (float(deviation.mean()), float((defended - true).abs().sum(1).mean()),
            float((defended.argmax(1) == labels).double().mean()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.25, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    worlds = {"digits": (load_digits_victim()[0], *digits_split()[1]),
              "glyph": (glyph_victim()[0], *glyph_data()["test"])}
    rows = []
    for world, (victim, images, labels) in worlds.items():
        plain = float((victim(images).argmax(1) == labels).double().mean())
        for eps in args.eps:
            row = [world, f"{eps:g}"]
            for name in SEARCHES:
                deviation, l1, accuracy = measure(victim, images, labels, name, eps)
                row += [f"{deviation:.3f}", f"{l1:.3f}", f"{accuracy:.3f}"]
            rows.append(row + [f"{plain:.3f}"])
            print(" | ".join(rows[-1]), flush=True)
    header = ["world", "ε"] + [f"{s} {m}" for s in SEARCHES for m in ("deviation", "L1", "victim acc.")] + \
             ["victim acc. undefended"]
    load = open("/proc/loadavg").read().split()[0]
    body = "\n\n".join([
        f"`python -m benchmarks.mad --eps {' '.join(f'{e:g}' for e in args.eps)}` — {machine()}; "
        f"{time.perf_counter() - start:.0f} s; load average {load}.",
        "Eval sets of the digits world (540 digits) and the glyph world (600 glyphs); deviation: the mean of "
        "MAD's objective ‖â(ỹ) − â(y)‖² at the answer served (0 to 4); L1: mean ‖ỹ − y‖₁.",
        table(header, rows)])
    print(body)
    if not args.no_write:
        write_section("mad", body)


if __name__ == "__main__":
    torch.set_num_threads(1)
    with torch.no_grad():
        main()
