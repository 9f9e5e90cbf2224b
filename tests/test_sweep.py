"""Sweeps on Ray: one embedded Ray instance (2 CPUs) for the module; the CLI runs in real
subprocesses that join it with ``--address``, one of them killed with SIGKILL mid-sweep."""
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from agents.sweep import SpecError, load_spec, read_results, run_sweep
from agents.sweep.trial import RESULT, STARTS
from agents.cli import main

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[1]
GRID = {"env": "Knockoff-Digits-v0",
        "axes": {"agent": ["random", "adaptive"], "budget": [40, 80], "seed": [0, 1]},
        "run": {"eval_every": 20, "retrain_epochs": 2, "checkpoint_every": 3}}


@pytest.fixture(scope="module")
def ray_address():
    from knockoff_env.worlds.digits import load_digits_victim

    load_digits_victim()  # trained once into the session's cache, which the Ray workers inherit
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="module")
def grid(ray_address, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid")
    return out, run_sweep(GRID, out, cpus_per_trial=1, progress=False)


def test_a_2x2x2_grid_gives_8_rows_with_their_options(grid):
    out, table = grid
    assert len(table) == 8 and (table["status"] == "ok").all(), table[["trial", "status", "error"]]
    combos = set(zip(table["agent"], table["budget"], table["seed"]))
    assert combos == set(itertools.product(["random", "adaptive"], [40, 80], [0, 1]))
    assert table["trial"].nunique() == 8
    for _, row in table.iterrows():
        assert row["queries"] == row["victim_queries"] == row["budget"]
        assert list(row["curve_queries"]) == list(range(20, row["budget"] + 1, 20))
        summary = json.loads((out / "trials" / row["trial"] / "summary.json").read_text())
        assert summary["knockoff_accuracy"] == pytest.approx(row["knockoff_accuracy"])
        assert summary["agent"] == {"random": "RandomAgent", "adaptive": "GradientBandit"}[row["agent"]]
    csv = pd.read_csv(out / "results.csv")
    assert len(csv) == 8 and [json.loads(c) for c in csv["curve_queries"]] == [list(c) for c in table["curve_queries"]]
    again = read_results(out)
    assert list(again["curve_accuracy"][0]) == pytest.approx(list(table["curve_accuracy"][0]))


def test_rerunning_a_finished_sweep_starts_nothing(grid):
    out, _ = grid
    table = run_sweep(GRID, out, progress=False)
    assert (table["status"] == "ok").all() and (table["starts"] == 1).all()


def test_a_trial_that_raises_is_reported_and_the_rest_complete(ray_address, tmp_path):
    spec = {"env": "Knockoff-Digits-v0", "axes": {"reward": ["certainty", "bogus", "loss"]},
            "env_options": {"budget": 40}, "run": {"retrain_epochs": 1, "checkpoint_every": 5}}
    table = run_sweep(spec, tmp_path, progress=False).set_index("reward")
    assert list(table["status"]) == ["ok", "failed", "ok"]
    assert "bogus" in table.loc["bogus", "error"] and table.loc["bogus", "error"].startswith("ValueError")
    assert table.loc[["certainty", "loss"], "queries"].tolist() == [40, 40]
    assert main(["plot", str(tmp_path)]) == 0
    assert (tmp_path / "accuracy_by_reward.png").stat().st_size > 0  # the reward-ablation bars


def test_plot_writes_the_figures_the_axes_allow(grid, capsys):
    out, _ = grid
    assert main(["plot", str(out)]) == 0
    for name in ("accuracy_vs_budget.png", "accuracy_vs_queries.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "hierarchy_vs_flat.png").exists()  # no adaptive-flat in this grid
    assert "skipped hierarchy_vs_flat.png" in capsys.readouterr().out
    runs = sorted(p.name for p in (out / "tensorboard").iterdir() if p.is_dir())
    assert len(runs) == 8 and all(list((out / "tensorboard" / r).glob("events.out.tfevents.*")) for r in runs)


def sweep_cli(spec: Path, out: Path, address: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agents.cli", "sweep", str(spec), "--out", str(out),
                             "--address", address, "--quiet"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def starts(trial_dir: Path) -> int:
    path = trial_dir / STARTS
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_killed_sweep_resumes_without_rerunning_finished_trials(ray_address, tmp_path):
    spec = tmp_path / "kill.yaml"
    spec.write_text(yaml.safe_dump({"env": "Knockoff-Digits-v0",
                                    "axes": {"agent": ["random", "adaptive"], "seed": [0, 1, 2, 3]},
                                    "env_options": {"budget": 200},
                                    "run": {"eval_every": 100, "retrain_epochs": 2, "checkpoint_every": 5}}))
    out = tmp_path / "sweep"
    proc = sweep_cli(spec, out, ray_address)
    deadline = time.monotonic() + 180
    finished = lambda: {p.parent.name for p in out.glob(f"trials/*/{RESULT}")}  # noqa: E731
    journaled = lambda: {p.parent.name for p in out.glob("trials/*/journal.bin") if p.stat().st_size > 2000}  # noqa: E731
    while (len(finished()) < 2 or not journaled() - finished()) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read().decode()
    os.kill(proc.pid, signal.SIGKILL)  # mid-sweep, with a trial mid-attack
    proc.wait()
    before = {name: (out / "trials" / name / RESULT).stat().st_mtime_ns for name in finished()}
    interrupted = {p.name for p in (out / "trials").iterdir() if starts(p) and p.name not in before}
    assert 2 <= len(before) < 8 and interrupted

    table = run_sweep(spec, out, progress=False)  # the same sweep again
    assert len(table) == 8 and (table["status"] == "ok").all(), table[["trial", "error"]]
    assert (table["queries"] == 200).all()
    for name, mtime in before.items():  # finished before the kill: not started again
        assert starts(out / "trials" / name) == 1
        assert (out / "trials" / name / RESULT).stat().st_mtime_ns == mtime
    counts = {p.name: starts(p) for p in (out / "trials").iterdir()}
    assert all(counts[name] in (1, 2) for name in interrupted)
    assert sum(counts.values()) <= 8 + len(interrupted)
    resumed = table[table["resumed"]]
    assert len(resumed) >= 1 and set(resumed["trial"]) <= interrupted
    for _, row in resumed.iterrows():  # a resumed trial still reports its whole curve
        assert list(row["curve_queries"]) == [100, 200]


def test_bad_specs_say_what_to_fix(tmp_path):
    with pytest.raises(SpecError, match="unknown keys"):
        load_spec({"env": "Knockoff-Digits-v0", "axis": {}})
    with pytest.raises(SpecError, match="cannot be swept"):
        load_spec({"env": "Knockoff-Digits-v0", "axes": {"agent": ["ppo"]}})
    with pytest.raises(SpecError, match="both an axis and a fixed option"):
        load_spec({"env": "Knockoff-Digits-v0", "env_options": {"budget": 5}, "axes": {"budget": [1, 2]}})
    with pytest.raises(SpecError, match="non-empty list"):
        load_spec({"env": "Knockoff-Digits-v0", "axes": {"seed": 3}})
    toml = tmp_path / "s.toml"
    toml.write_text('env = "Knockoff-Digits-v0"\n[axes]\nseed = [0, 1]\ntau_d = [0.1, 1.0]\n')
    trials = load_spec(toml).trials()
    assert [(t.seed, t.env_options) for t in trials] == [(0, {"tau_d": 0.1}), (0, {"tau_d": 1.0}),
                                                        (1, {"tau_d": 0.1}), (1, {"tau_d": 1.0})]
    assert len({t.id for t in trials}) == 4 and trials[0].id == load_spec(toml).trials()[0].id
