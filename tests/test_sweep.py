"""Sweeps: one embedded Ray instance (2 CPUs, ``address="local"``: never a cluster it did not start)
for the module; the CLI runs in real subprocesses that join it with ``--address``, one of them killed
with SIGKILL mid-sweep, another stopped with Ctrl-C; the inline executor against Ray's."""
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
import yaml

from agents.cli import main
from agents.sweep import SpecError, load_spec, read_results, run_sweep
from agents.sweep.figures import AGENT_COLOURS, _Plotter
from agents.sweep.results import write_results
from agents.sweep.trial import CLOCK, RESULT, STARTS

# the first test also starts embedded Ray and runs the module's 8-trial grid; on a machine loaded three
# times over that took more than the default 300 s
pytestmark = pytest.mark.timeout(600)
ROOT = Path(__file__).resolve().parents[1]
GRID = {"env": "Knockoff-Digits-v0",
        "axes": {"agent": ["random", "adaptive"], "budget": [40, 80], "seed": [0, 1]},
        "run": {"eval_every": 20, "retrain_epochs": 2, "checkpoint_every": 3}}
SMALL = {"env": "Knockoff-Digits-v0", "axes": {"agent": ["random", "adaptive"]}, "env_options": {"budget": 40},
         "run": {"eval_every": 20, "retrain_epochs": 1, "checkpoint_every": 3}}


@pytest.fixture(scope="module")
def ray_address():
    from knockoff_env.worlds.digits import load_digits_victim

    load_digits_victim()  # trained once into the session's cache, which the Ray workers inherit
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
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
    node = ray.get_runtime_context().get_node_id()
    assert (table["node"] == node).all() and (table["host"] == socket.gethostname()).all()
    assert (table["retrain_epochs"] == 2).all() and (table["eval_every"] == 20).all()
    assert (table["checkpoint_every"] == 3).all()
    for _, row in table.iterrows():
        assert row["queries"] == row["victim_queries"] == row["budget"]
        assert list(row["curve_queries"]) == list(range(20, row["budget"] + 1, 20))
        summary = json.loads((out / "trials" / row["trial"] / "summary.json").read_text())
        assert summary["knockoff_accuracy"] == pytest.approx(row["knockoff_accuracy"])
        assert summary["agent"] == {"random": "RandomAgent", "adaptive": "GradientBandit"}[row["agent"]]
        clock = json.loads((out / "trials" / row["trial"] / CLOCK).read_text())["starts"]
        assert len(clock) == 1 and row["seconds"] == pytest.approx(clock[0]) and row["seconds"] >= summary["seconds"]
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
    assert (tmp_path / "accuracy_by_agent.png").stat().st_size > 0  # the headline, with no budget axis


def test_plot_writes_the_figures_the_axes_allow(grid, capsys):
    out, _ = grid
    assert main(["plot", str(out)]) == 0
    for name in ("accuracy_vs_budget.png", "accuracy_vs_queries.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "hierarchy_vs_flat.png").exists()  # no adaptive-flat in this grid
    assert "skipped hierarchy_vs_flat.png" in capsys.readouterr().out
    runs = sorted(p.name for p in (out / "tensorboard").iterdir() if p.is_dir())
    assert len(runs) == 8 and all(list((out / "tensorboard" / r).glob("events.out.tfevents.*")) for r in runs)


def test_figures_keep_colours_state_their_spread_and_say_one_seed(grid):
    out, _ = grid
    table = read_results(out)
    plotter = _Plotter(table, ["agent", "budget", "seed"])
    lines = plotter.lines(table, "budget", ["agent"]).axes[0]
    curves = plotter.curves(table[table["budget"] == 80], ["agent"]).axes[0]
    for ax in (lines, curves):
        colours = {line.get_label(): line.get_color() for line in ax.get_lines()}
        assert colours["random"] == AGENT_COLOURS["random"] and colours["adaptive"] == AGENT_COLOURS["adaptive"]
        assert "mean ± std over 2 seeds" in ax.get_title()
    band = lines.collections[0].get_paths()[0].vertices  # random's band: mean ± sample std (ddof=1)
    at40 = band[band[:, 0] == 40, 1]
    random40 = table[(table["agent"] == "random") & (table["budget"] == 40)]["knockoff_accuracy"]
    assert at40.max() - at40.min() == pytest.approx(2 * random40.std(ddof=1))
    assert plotter.ylabel.endswith("(retrained, 2 epochs)")
    one_seed = plotter.bars(table[(table["seed"] == 1) & (table["budget"] == 80)], "agent", [])
    text = one_seed.axes[0].get_title() + " ".join(t.get_text() for t in one_seed.texts)
    assert "seed 1" in text and "over" not in one_seed.axes[0].get_title()
    bars = one_seed.axes[0].patches
    assert [tuple(np.round(b.get_facecolor()[:3], 3)) for b in bars] == [
        tuple(np.round(__import__("matplotlib").colors.to_rgb(AGENT_COLOURS[a]), 3)) for a in ("random", "adaptive")]
    dots = np.concatenate([c.get_offsets()[:, 1] for c in one_seed.axes[0].collections
                           if type(c).__name__ == "PathCollection"])
    assert sorted(dots) == sorted(table[(table["seed"] == 1) & (table["budget"] == 80)]["knockoff_accuracy"])


def sweep_cli(spec: Path, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "agents.cli", "sweep", str(spec), "--out", str(out), *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


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
    proc = sweep_cli(spec, out, "--address", ray_address, "--quiet")
    deadline = time.monotonic() + 180
    finished = lambda: {p.parent.name for p in out.glob(f"trials/*/{RESULT}")}  # noqa: E731
    journaled = lambda: {p.parent.name for p in out.glob("trials/*/journal.bin") if p.stat().st_size > 2000}  # noqa: E731
    while (len(finished()) < 2 or not journaled() - finished()) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read()
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
    for _, row in resumed.iterrows():  # a resumed trial still reports its whole curve, and all its time
        assert list(row["curve_queries"]) == [100, 200]
        clock = json.loads((out / "trials" / row["trial"] / CLOCK).read_text())["starts"]
        assert row["starts"] == 2 and len(clock) == 2 and clock[0] > 0  # the killed start counted up to its kill
        assert row["seconds"] == pytest.approx(sum(clock))


def test_ctrl_c_writes_the_table_of_what_finished_and_the_rerun_resumes(tmp_path):
    spec = tmp_path / "small.yaml"
    spec.write_text(yaml.safe_dump({**SMALL, "axes": {"seed": [0, 1, 2]}, "env_options": {"budget": 400}}))
    out = tmp_path / "sweep"
    proc = sweep_cli(spec, out)  # auto: three trials run in this process, one after another
    deadline = time.monotonic() + 180
    journals = lambda: [p for p in out.glob("trials/*/journal.bin") if p.stat().st_size > 2000]  # noqa: E731
    while not (list(out.glob(f"trials/*/{RESULT}")) and len(journals()) >= 2) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, proc.stdout.read()
    os.kill(proc.pid, signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "executor inline (3 trials" in output and "resume the rest" in output
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 3 and (table["status"] == "ok").sum() >= 1
    stopped = table[table["status"] == "interrupted"]
    assert len(stopped) == 1 and (stopped["queries"] < 400).all()  # stopped at a step boundary, not finished

    again = run_sweep(spec, out, progress=False, executor="inline")
    assert (again["status"] == "ok").all() and (again["queries"] == 400).all()
    row = again.set_index("trial").loc[stopped["trial"].iloc[0]]
    assert row["resumed"] and row["starts"] == 2


def test_bad_specs_say_what_to_fix(tmp_path):
    with pytest.raises(SpecError, match="unknown keys"):
        load_spec({"env": "Knockoff-Digits-v0", "axis": {}})
    with pytest.raises(SpecError, match="cannot be swept"):
        load_spec({"env": "Knockoff-Digits-v0", "axes": {"agent": ["ppo"]}})
    with pytest.raises(SpecError, match="both an axis and a fixed option"):
        load_spec({"env": "Knockoff-Digits-v0", "env_options": {"budget": 5}, "axes": {"budget": [1, 2]}})
    with pytest.raises(SpecError, match="non-empty list"):
        load_spec({"env": "Knockoff-Digits-v0", "axes": {"seed": 3}})
    with pytest.raises(SpecError, match="did you mean Knockoff-Digits-v0"):
        load_spec({"env": "Knockoff-Digts-v0"})
    with pytest.raises(SpecError, match=r"budget='40' \(str\) must be int"):
        load_spec({"env": "Knockoff-Digits-v0", "axes": {"budget": [20, "40"]}})
    with pytest.raises(SpecError, match=r"alpha='fast' \(str\) must be float"):
        load_spec({"env": "Knockoff-Digits-v0", "axes": {"alpha": [0.1, "fast"]}})
    with pytest.raises(SpecError, match="cannot import 'no_such_world'"):
        load_spec({"env": "no_such_world:Blobs-v0"})
    assert load_spec({"env": "knockoff_env:Knockoff-Digits-v0", "axes": {"budget": [20]}}).trials()[0].env_options \
        == {"budget": 20}  # the module:Id form gym.make accepts
    toml = tmp_path / "s.toml"
    toml.write_text('env = "Knockoff-Digits-v0"\n[axes]\nseed = [0, 1]\ndiversity_window = [5, 25]\n')
    trials = load_spec(toml).trials()
    assert [(t.seed, t.env_options) for t in trials] == [(0, {"diversity_window": 5}), (0, {"diversity_window": 25}),
                                                        (1, {"diversity_window": 5}), (1, {"diversity_window": 25})]
    assert len({t.id for t in trials}) == 4 and trials[0].id == load_spec(toml).trials()[0].id


def free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def test_a_misspelt_axis_fails_before_ray_starts_with_the_clis_error(tmp_path, capsys):
    spec = tmp_path / "typo.yaml"
    spec.write_text(yaml.safe_dump({"env": "Knockoff-Digits-v0", "axes": {"budgt": [20, 40]}}))
    out = tmp_path / "out"
    code = main(["sweep", str(spec), "--out", str(out), "--address", free_address()])  # no cluster there either
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "has no option 'budgt' — did you mean budget?" in err[0] and "Ray" not in err[0]
    assert not out.exists()  # nothing was started or written


@pytest.mark.parametrize("cpus, gpus", [(3, 0), (1, 0.5)])
@pytest.mark.parametrize("executor", ["ray", "inline"])
def test_a_trial_no_node_can_schedule_is_refused_before_it_starts(ray_address, tmp_path, capsys, cpus, gpus,
                                                                    executor):
    import torch

    if gpus and (torch.cuda.is_available() or ray.cluster_resources().get("GPU")):
        gpus = 1000  # this machine has a GPU: ask for more than any node has
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump(SMALL))
    code = main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", executor, "--quiet", "--cpus", "2",
                 "--cpus-per-trial", str(cpus), "--gpus-per-trial", str(gpus)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert f"each trial asks for {cpus:g} CPUs and {gpus:g} GPUs, but the largest node" in err[0]
    assert "has 2 CPUs" in err[0]
    assert not list((tmp_path / "out" / "trials").glob("*/" + STARTS))  # no trial started


def test_a_relative_out_is_made_absolute(ray_address, tmp_path, monkeypatch, capsys):
    spec = tmp_path / "s.yaml"
    spec.write_text(yaml.safe_dump({**SMALL, "axes": {}, "agent": "random"}))
    monkeypatch.chdir(tmp_path)  # the Ray workers still run in the folder Ray was started from
    assert main(["sweep", str(spec), "--out", "relative/sweep", "--quiet"]) == 0
    out = tmp_path / "relative" / "sweep"
    assert f"results: {out / 'results.csv'}" in capsys.readouterr().out
    table = read_results(out)
    assert list(table["status"]) == ["ok"] and (out / "trials" / table["trial"][0] / "summary.json").exists()
    assert not (ROOT / "relative").exists()


def test_a_rows_reach_the_table_though_the_trial_folders_are_out_of_the_drivers_view(ray_address, tmp_path):
    out, node_disk = tmp_path / "sweep", tmp_path / "node_local_disk"
    table = run_sweep(SMALL, out, trial_root=node_disk, progress=False)
    assert (table["status"] == "ok").all() and (table["queries"] == 40).all()
    for trial in table["trial"]:  # the driver's folder holds only the returned results
        assert sorted(p.name for p in (out / "trials" / trial).iterdir()) == [RESULT]
        assert (node_disk / trial / "journal.bin").exists()
    shutil.rmtree(node_disk)  # the nodes' disks are gone: the table does not need them
    (out / "results.parquet").unlink()
    rebuilt = write_results(out, load_spec(SMALL).trials())
    columns = ["trial", "status", "knockoff_accuracy", "seconds", "node", "starts"]
    pd.testing.assert_frame_equal(rebuilt[columns], table[columns])
    assert list(rebuilt["curve_accuracy"]) == list(table["curve_accuracy"])
    again = run_sweep(SMALL, out, trial_root=node_disk, progress=False)  # finished: nothing runs again
    assert (again["status"] == "ok").all() and not list(node_disk.iterdir())


def test_the_inline_executor_gives_rays_results(ray_address, tmp_path):
    on_ray = run_sweep(SMALL, tmp_path / "ray", executor="ray", progress=False)
    inline = run_sweep(SMALL, tmp_path / "inline", executor="inline", progress=False)
    assert list(inline["trial"]) == list(on_ray["trial"])
    same = ["status", "queries", "victim_queries", "knockoff_accuracy", "knockoff_accuracy_online", "agreement",
            "seen_classes", "unseen_class_accuracy"]
    pd.testing.assert_frame_equal(inline[same], on_ray[same])
    assert list(inline["curve_accuracy"]) == list(on_ray["curve_accuracy"])
    assert inline["node"].isna().all() and on_ray["node"].notna().all()
