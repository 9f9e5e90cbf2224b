"""The runner, TensorBoard logs, figures, the CLI, and the SB3 baselines."""
import json

import gymnasium as gym
import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from agents import GradientBandit, RandomAgent, run_attack
from agents.cli import main


def test_run_attack_writes_policy_tags_figures_and_run_files(make_env, tmp_path):
    env = make_env(budget=24)
    result = run_attack(env, GradientBandit(env, seed=0), seed=0, logdir=tmp_path, eval_every=8,
                        retrain_epochs=2, progress=False)
    assert result["queries"] == 24 and result["retrained"]
    assert {"victim_accuracy", "knockoff_accuracy", "queries", "seconds"} <= set(result)
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"policy/a", "policy/b", "policy/c", "reward/certainty", "reward/diversity_normalised",
            "reward/loss", "accuracy/knockoff"} <= scalars
    assert "policy/over_time" in events.Tags()["images"]
    assert [e.step for e in events.Scalars("accuracy/knockoff")] == [8, 16, 24]
    policy = [e.value for e in events.Scalars("policy/a")]
    assert all(0 <= p <= 1 for p in policy)
    for name in ("policy.png", "accuracy.png", "transfer_set.npz", "knockoff.pt", "summary.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert json.loads((tmp_path / "summary.json").read_text())["queries"] == 24


def test_runner_is_reproducible(make_env):
    def once():
        env = make_env(budget=20)
        run_attack(env, RandomAgent(env), seed=5, progress=False)
        return env.transfer_set.view()[0].copy()
    np.testing.assert_array_equal(once(), once())


def test_cli_attack_prints_summary_and_writes_config(tmp_path, capsys):
    code = main(["attack", "--agent", "adaptive", "--budget", "40", "--seed", "1", "--logdir", str(tmp_path),
                 "--quiet", "--reward", "certainty,loss", "--retrain-epochs", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "knockoff accuracy" in out and "tensorboard --logdir" in out
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["env_id"] == "Knockoff-Digits-v0" and config["env_kwargs"]["budget"] == 40
    assert config["env_kwargs"]["reward"] == ["certainty", "loss"]


def test_cli_bad_input_is_a_message_not_a_traceback(capsys):
    assert main(["attack", "--budget", "0", "--quiet"]) == 2
    assert "budget" in capsys.readouterr().err


@pytest.mark.parametrize("algorithm", ["ppo", "a2c", "dqn", "maskable-ppo"])
def test_sb3_baselines_train_and_play_through_the_runner(make_env, algorithm, tmp_path):
    from agents.sb3 import ALGORITHMS, SB3Agent, train_sb3
    env = make_env(budget=24, action_mode=ALGORITHMS[algorithm][1])
    extra = {"n_steps": 16, "batch_size": 16} if algorithm in ("ppo", "maskable-ppo") else {}
    model = train_sb3(algorithm, env, 200, seed=0, logdir=str(tmp_path), log_every=20, **extra)
    agent = SB3Agent(model, env, seed=0)
    result = run_attack(env, agent, seed=0, progress=False)
    assert result["queries"] == 24
    probs = agent.coarse_probabilities()
    assert probs.shape == (3,) and probs.sum() == pytest.approx(1, abs=1e-5)
    tags = set()
    for path in tmp_path.rglob("events.out.tfevents*"):
        tags |= set(EventAccumulator(str(path)).Reload().Tags()["scalars"])
    assert "policy/a" in tags


def test_sb3_refuses_the_wrong_action_mode(make_env):
    from agents.sb3 import train_sb3
    with pytest.raises(ValueError, match="action_mode='flat'"):
        train_sb3("dqn", make_env(), 10)


def test_cli_offline_only_runs_the_random_strategy_without_online_training(tmp_path, capsys):
    code = main(["attack", "--agent", "random", "--budget", "40", "--offline-only", "--quiet",
                 "--retrain-epochs", "2", "--logdir", str(tmp_path)])
    assert code == 0
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["env_kwargs"]["train_online"] is False
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0}).Reload()
    assert all(np.isnan(e.value) for e in events.Scalars("reward/loss"))
    assert "retrained" in capsys.readouterr().out
