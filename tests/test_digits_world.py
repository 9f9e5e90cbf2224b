"""The embedded default world Knockoff-Digits-v0."""
import importlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch

import knockoff_env
from knockoff_env.worlds import digits


@pytest.fixture(scope="module")
def env():
    return gym.make("Knockoff-Digits-v0", budget=200).unwrapped


def test_registration_is_idempotent_and_id_form_with_module_works():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        importlib.reload(knockoff_env)
    assert "Knockoff-Digits-v0" in gym.registry
    env = gym.make("knockoff_env:Knockoff-Digits-v0", budget=8)
    env.reset(seed=0)
    env.close()


def test_victim_is_accurate_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOCKOFF_CACHE", str(tmp_path))
    model, accuracy = digits.load_digits_victim()
    assert accuracy > 0.9
    assert (tmp_path / "digits_victim.pt").exists()
    again, cached_accuracy = digits.load_digits_victim()
    assert cached_accuracy == accuracy
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)
    (tmp_path / "digits_victim.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="unreadable"):
        digits.load_digits_victim()


def test_query_set_is_a_closed_world_dominated_by_distractors(env):
    qs = env.query_set
    assert qs.coarse_names == ["digits", "letters", "shapes", "textures"]
    assert all(size >= 5 for size in qs.coarse_sizes)
    sizes = qs.coarse_remaining(qs.pool_sizes)
    assert sizes[0] / sizes.sum() < 0.3
    images = qs.images
    assert images.shape[1:] == (1, 8, 8) and images.min() >= 0 and images.max() <= 1
    # the distractors are distinct families, not copies of one image
    per_label = [images[qs.positions == p].mean(0) for p in range(qs.num_labels)]
    assert len({tuple(np.round(m.flatten().numpy(), 3)) for m in per_label}) == qs.num_labels


def test_eval_set_is_held_out_from_the_query_set():
    (train, _), (test, _) = digits.digits_split()
    train_rows = {tuple(r.flatten().tolist()) for r in train}
    overlap = sum(tuple(r.flatten().tolist()) in train_rows for r in test)
    assert overlap < 0.05 * len(test)  # the bundled digits hold a few exact duplicates, nothing more


def test_an_episode_runs_and_evaluates(env):
    env.reset(seed=0)
    done = False
    while not done:
        _, reward, done, _, info = env.step(env.action_space.sample())
        assert np.isfinite(reward)
    assert info["queries"] == 200
    result = env.evaluate()
    assert result["victim_accuracy"] > 0.9 and 0 <= result["knockoff_accuracy"] <= 1
