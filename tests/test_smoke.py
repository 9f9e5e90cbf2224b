"""Smoke runs of everything we ship beside the library: every `examples/*.py`, every sweep spec in
`examples/sweeps/` (loaded and validated; one trial of one run for real) and every
`benchmarks/*.py`, each with tiny arguments, so none of them can rot unseen.

Each script runs as a user runs it (a subprocess from the repository root) with one torch thread;
a benchmark writes its RESULTS.md section to a temporary copy (``KNOCKOFF_RESULTS``), which the
test checks it wrote. ``pytest -m smoke`` runs only these."""
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from agents.sweep.spec import load_spec
from agents.sweep.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.smoke, pytest.mark.timeout(600)]

# script → (arguments, the RESULTS.md section it writes or None); "{tmp}" is the test's folder
BENCHMARKS = {
    "attack_table": (["--spec", "{tmp}/table.yaml", "--worlds", "digits,glyphs", "--out", "{tmp}/table",
                      "--figure", "{tmp}/heat.png"], "attack_table"),
    "bandit_defaults": (["--budget", "40", "--seeds", "1", "--epochs", "1", "--agents", "adaptive,ucb"],
                        "bandit_defaults"),
    "defences": (["--budget", "40", "--epochs", "1", "--seeds", "0", "--defences", "none", "top_k"],
                 "defences (Knockoff-Digits-v0)"),
    "duel": (["--budget", "40", "--episodes", "1", "--seeds", "0", "--epochs", "1", "--final-epochs", "0",
              "--figure", "{tmp}/duel.png"], "duel (Knockoff-Digits-v0)"),
    "env_overhead": (["--steps-digits", "8", "--steps-resnet", "1"], "env_overhead"),
    "journal_cost": (["--budget", "40", "--repeats", "1"], "journal_cost"),
    "mad": (["--eps", "0.5"], "mad"),
    "offline": (["--budget", "40", "--seeds", "1", "--worlds", "digits", "--strategies", "random"], "offline"),
    "paper_scale": (["--images", "24", "--labels", "2", "--steps", "1", "--hit-steps", "2",
                     "--workdir", "{tmp}/paper", "--px", "32"], "paper_scale"),
    "prada": (["--shuffles", "1", "--jacobian-seeds", "1", "--cost-queries", "1200", "--oracle-queries", "100"],
              "prada"),
    "recipe_search": (["digits", "--budget", "40", "--seeds", "1", "--epochs", "1"], None),
    "remote": (["--steps", "5", "--calls", "3"], "remote"),
    "scaling": (["--steps", "5"], "scaling"),
    "serve_load": (["--clients", "2", "--requests", "2", "--rounds", "1"], "serve_load"),
    "strategies": (["--repeats", "1", "--budget", "40", "--steps", "20", "--sizes", "200", "--pool-sample", "50",
                    "--agents", "random", "adaptive", "activethief-dfal-k-center", "jacobian", "copycat"], "strategies"),
    "strategy_budgets": (["--spec", "{tmp}/table.yaml", "--worlds", "digits", "--budgets", "20", "--seeds", "1",
                          "--out", "{tmp}/budgets"], "strategy_budgets (table)"),
    "sweep_speedup": (["--spec", "{tmp}/tiny.yaml", "--budgets", "1,2", "--cpus", "2", "--out", "{tmp}/sweep"],
                      "sweep_speedup"),
    "vs_art": (["--budget", "40", "--epochs", "1", "--tiles", "1", "--repeats", "0", "--threads", "1"], "vs_art"),
}
EXAMPLES = {
    "quickstart": ["--budget", "40", "--epochs", "1"],
    "compare_strategies": ["--budget", "40", "--seeds", "1", "--every", "20", "--retrain-epochs", "1",
                           "--out", "{tmp}/compare"],
    "sb3_baseline": ["--train-steps", "20", "--budget", "40", "--logdir", "{tmp}/sb3"],
    "duel": ["--episodes", "1", "--budget", "40", "--epochs", "1", "--out", "{tmp}/duel"],
}
TINY_SPEC = """env: Knockoff-Digits-v0
axes: {agent: [random, adaptive], budget: [20, 40], seed: [0]}
run: {eval_every: 20, retrain_epochs: 1, checkpoint_every: 5}
"""
TABLE_SPEC = """env: Knockoff-Digits-v0
env_options: {budget: 20, detector: prada, on_detection: flag}
axes: {seed: [0], defence: [null, top_k], agent: [random, adaptive]}
run: {eval_every: 10, retrain_epochs: 1, checkpoint_every: 5}
"""
NOT_RUN = {"__init__", "results"}  # the package marker and the section writer the others use


def run(command: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "KNOCKOFF_RESULTS": str(tmp / "RESULTS.md"), "TQDM_DISABLE": "1"}
    return subprocess.run([sys.executable, *[c.replace("{tmp}", str(tmp)) for c in command]], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=540)


def test_every_script_has_a_smoke_run():
    shipped = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - NOT_RUN
    assert shipped == set(BENCHMARKS), "give every benchmark tiny arguments here"
    worlds = {"glyph_world"}  # a module that registers a world (the attack table runs it), not a script
    assert {p.stem for p in (ROOT / "examples").glob("*.py")} - worlds == set(EXAMPLES), "and every example"


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_runs_with_tiny_arguments(name, tmp_path):
    arguments, section = BENCHMARKS[name]
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC)
    (tmp_path / "table.yaml").write_text(TABLE_SPEC)
    done = run(["-m", f"benchmarks.{name}", *arguments], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if section is not None:  # the figures reached their section, not the repository's RESULTS.md
        assert f"## {section}\n" in (tmp_path / "RESULTS.md").read_text(), done.stdout[-2000:]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_example_runs_with_tiny_arguments(name, tmp_path):
    done = run([f"examples/{name}.py", *EXAMPLES[name]], tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("spec", sorted(p.name for p in (ROOT / "examples" / "sweeps").iterdir()))
def test_sweep_spec_loads_and_validates(spec):
    trials = load_spec(ROOT / "examples" / "sweeps" / spec).trials()
    assert trials and len({t.id for t in trials}) == len(trials)


def test_one_trial_of_a_shipped_spec_runs(tmp_path):
    trial = load_spec(ROOT / "examples" / "sweeps" / "digits_s1.yaml").trials()[0]
    small = replace(trial, env_options={**trial.env_options, "budget": 40},
                    run={**trial.run, "eval_every": 20, "retrain_epochs": 1})
    result = run_trial(small, tmp_path / small.id)
    assert result["status"] == "ok", result.get("traceback")
    assert result["queries"] == 40 and (tmp_path / small.id / "result.json").exists()
