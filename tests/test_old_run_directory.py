"""A run directory written before the layout change (tests/fixtures/run_v0_1_interrupted: the
digits world, budget 40, adaptive agent, seed 0, eval every 20, checkpoint every 4, stopped by
Ctrl-C after 28 queries) resumes, evaluates and retrains with today's code."""
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np

import knockoff_env  # noqa: F401
from agents.cli import main
from knockoff_env import TransferSet

FIXTURE = Path(__file__).parent / "fixtures" / "run_v0_1_interrupted"


def test_an_old_interrupted_run_resumes_to_its_budget_keeping_what_was_paid(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    paid = TransferSet.load(run / "transfer_set.npz")
    assert len(paid) == 28
    assert main(["attack", "--resume", str(run), "--quiet"]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["queries"] == 40 and not summary["interrupted"]
    assert [q for q, _ in summary["accuracy_curve"]] == [20, 40]  # the curve point from before the stop is kept
    indices, outputs = TransferSet.load(run / "transfer_set.npz").view()
    np.testing.assert_array_equal(indices[:28], paid.view()[0])  # the paid answers are kept, not asked again
    np.testing.assert_array_equal(outputs[:28], paid.view()[1])
    assert len(indices) == 40 and len(set(indices.tolist())) == 40
    world = gym.make("Knockoff-Digits-v0", budget=40).unwrapped
    fresh = world.victim(world.query_set.fetch(indices[28:])).numpy()  # the rest answered by the victim
    np.testing.assert_allclose(outputs[28:], fresh, atol=1e-5)


def test_an_old_run_directory_evaluates_and_retrains(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    assert main(["evaluate", str(run)]) == 0
    report = json.loads((run / "evaluation_knockoff.json").read_text())
    assert report["seen_classes"] + report["unseen_classes"] == 10
    assert 0 < report["victim_accuracy"] <= 1
    assert main(["retrain", str(run), "--epochs", "1"]) == 0
    assert (run / "knockoff_retrained.pt").exists()
    assert json.loads((run / "retrain.json").read_text())["epochs"] == 1
