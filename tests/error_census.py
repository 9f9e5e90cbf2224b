"""Count how many distinct bad inputs end in something other than the project's own clear error.

    python tests/error_census.py [--examples N] [--cli-examples M] [--show]

Replays the fuzz scenarios of :mod:`fuzz_cases` with a fixed (derandomized) Hypothesis seed, so
two checkouts see the same inputs, and prints per scenario: distinct inputs tried, how many
worked, how many ended in a clear error, and how many in anything else (``--show`` lists those).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
os.environ.setdefault("KNOCKOFF_CACHE", tempfile.mkdtemp(prefix="knockoff_census_cache_"))

import fuzz_cases  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402


def census(strategy, classify, examples: int) -> dict[str, str]:
    seen: dict[str, str] = {}

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def probe(value):
        key = repr(value)
        if key not in seen:
            seen[key] = classify(value)

    probe()
    return seen


def silent(name: str, value, verdict: str) -> str:
    """An input known to be wrong that was accepted counts as unclear (it should have been refused)."""
    if verdict == "ok" and fuzz_cases.KNOWN_BAD.get(name, lambda v: False)(value):
        return "unclear: accepted silently"
    return verdict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=80, help="Hypothesis examples per env scenario")
    parser.add_argument("--cli-examples", type=int, default=80, help="Hypothesis examples for the CLI")
    parser.add_argument("--show", action="store_true", help="list every unclear outcome")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = {name: census(strategy, lambda v, run=run, name=name: silent(name, v, fuzz_cases.outcome(run, v)),
                            args.examples)
               for name, (strategy, run) in fuzz_cases.ENV_SCENARIOS.items()}
    paths = fuzz_cases.Paths()
    results["CLI argument vectors"] = census(
        fuzz_cases.cli_argvs, lambda argv: fuzz_cases.cli_outcome(*fuzz_cases.run_cli(argv, paths)[::2]),
        args.cli_examples)
    totals = [0, 0, 0, 0]
    print(f"{'scenario':24} {'tried':>6} {'ok':>5} {'clear':>6} {'unclear':>8}")
    for name, seen in results.items():
        counts = [len(seen), sum(v == "ok" for v in seen.values()), sum(v == "clear" for v in seen.values())]
        counts.append(counts[0] - counts[1] - counts[2])
        totals = [a + b for a, b in zip(totals, counts)]
        print(f"{name:24} {counts[0]:6d} {counts[1]:5d} {counts[2]:6d} {counts[3]:8d}")
    print(f"{'total':24} {totals[0]:6d} {totals[1]:5d} {totals[2]:6d} {totals[3]:8d}")
    quiet = sum(v == "unclear: accepted silently" for seen in results.values() for v in seen.values())
    print(f"bad inputs (refused, or known bad): {totals[2] + totals[3]}, of which did not end in the project's "
          f"clear error: {totals[3]} ({quiet} of them accepted silently)")
    if args.show:
        for name, seen in results.items():
            for key, verdict in seen.items():
                if verdict not in ("ok", "clear"):
                    print(f"[{name}] {key[:150]}\n    -> {verdict}")


if __name__ == "__main__":
    main()
