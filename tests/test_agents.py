"""Agents: the gradient bandit against hand-computed updates, random, and their shared interface."""
import numpy as np
import pytest

from agents import GradientBandit, RandomAgent, make_agent
from agents.gradient_bandit import gradient_step, masked_softmax


def test_masked_softmax_zeroes_unavailable_and_survives_huge_preferences():
    p = masked_softmax(np.array([1000.0, 1001.0, 5.0]), np.array([True, True, False]))
    assert p[2] == 0 and p.sum() == pytest.approx(1) and p[1] == pytest.approx(1 / (1 + np.exp(-1)))
    with pytest.raises(ValueError, match="exhausted"):
        masked_softmax(np.zeros(2), np.zeros(2, bool))


def test_gradient_step_matches_the_update_rule():
    h, pi = np.array([0.0, 1.0, -1.0]), np.array([0.2, 0.5, 0.3])
    gradient_step(h, pi, chosen=1, advantage=2.0, alpha=0.1)
    # chosen: += α·adv·(1 − π);  others: −= α·adv·π
    assert h.tolist() == pytest.approx([0 - 0.2 * 0.2, 1 + 0.2 * 0.5, -1 - 0.2 * 0.3])


def test_hierarchical_update_and_baseline_by_hand(make_env):
    env = make_env(budget=20)  # hierarchy a:[0,1,2] b:[3,4] c:[5]
    agent = GradientBandit(env, alpha=0.5, seed=0)
    obs, info = env.reset(seed=0)
    action = agent.act(obs, info)
    agent.update(action, 1.0, info)  # first reward is its own baseline: no change
    assert np.all(agent.root_preferences == 0) and np.all(agent.label_preferences == 0)
    assert agent.baseline == 1.0

    action = agent.act(obs, info)
    coarse, slot = (int(v) for v in action)
    agent.update(action, 0.4, info)  # advantage −0.6; π(root) = 1/3 each
    expected_root = np.full(3, 0.5 * 0.6 / 3)
    expected_root[coarse] = -0.5 * 0.6 * (1 - 1 / 3)
    assert agent.root_preferences == pytest.approx(expected_root)
    size = [3, 2, 1][coarse]
    node = agent.label_preferences[[0, 3, 5][coarse]:][:size]
    expected_node = np.full(size, 0.5 * 0.6 / size)
    expected_node[slot] = -0.5 * 0.6 * (1 - 1 / size)
    assert node == pytest.approx(expected_node)
    others = np.delete(agent.label_preferences, np.arange([0, 3, 5][coarse], [0, 3, 5][coarse] + size))
    assert np.all(others == 0)  # nodes off the sampled path are untouched
    assert agent.baseline == pytest.approx(0.7)


def test_flat_update_by_hand(make_env):
    env = make_env(action_mode="flat")
    agent = GradientBandit(env, alpha=1.0, hierarchical=False, seed=0)
    obs, info = env.reset(seed=0)
    agent.update(agent.act(obs, info), 0.0, info)
    chosen = agent.act(obs, info)
    agent.update(chosen, 0.6, info)
    expected = np.full(6, -0.6 / 6)
    expected[chosen] = 0.6 * (1 - 1 / 6)
    assert agent.label_preferences == pytest.approx(expected)
    assert np.all(agent.root_preferences == 0)


def test_ema_baseline(make_env):
    env = make_env()
    agent = GradientBandit(env, baseline_step=0.5, seed=0)
    obs, info = env.reset(seed=0)
    for reward in (1.0, 0.0, 0.0):
        agent.update(agent.act(obs, info), reward, info)
    assert agent.baseline == pytest.approx(0.25)


@pytest.mark.parametrize("hierarchical", [True, False])
def test_path_probabilities_sum_to_one_and_exhausted_labels_are_never_chosen(make_env, hierarchical):
    env = make_env(action_mode="flat")
    agent = GradientBandit(env, hierarchical=hierarchical, seed=1)
    rng = np.random.default_rng(0)
    agent.root_preferences[:] = rng.normal(size=3) * 3
    agent.label_preferences[:] = rng.normal(size=6) * 3
    mask = np.array([1, 0, 1, 0, 0, 1], np.int8)  # node "b" entirely exhausted
    probs = agent.label_probabilities(mask.astype(bool))
    assert probs.sum() == pytest.approx(1) and np.all(probs[mask == 0] == 0)
    assert agent.coarse_probabilities(mask.astype(bool))[1] == 0
    chosen = {int(agent.act(None, {"action_mask": mask})) for _ in range(300)}
    assert chosen == {0, 2, 5}


def test_bandit_state_round_trip_repeats_the_same_choices(make_env):
    env = make_env()
    obs, info = env.reset(seed=0)
    a = GradientBandit(env, seed=3)
    for r in (0.1, 0.9, 0.5):
        a.update(a.act(obs, info), r, info)
    b = GradientBandit(env, seed=99)
    b.load_state_dict(a.state_dict())
    for r in (0.3, 0.8):
        act_a, act_b = a.act(obs, info), b.act(obs, info)
        assert np.array_equal(act_a, act_b)
        a.update(act_a, r, info)
        b.update(act_b, r, info)
    assert np.array_equal(a.label_preferences, b.label_preferences)


def test_random_agent_is_uniform_over_images_not_labels(make_env):
    import torch
    from conftest import tiny_world  # label 5 has 20 images, labels 0–4 five each
    (x, y), victim, hierarchy = tiny_world()
    x = torch.cat([x, torch.randn(15, 6)])
    y = torch.cat([y, torch.full((15,), 5)])
    env = make_env(query_set=(x, y), action_mode="flat", budget=4)
    env.reset(seed=0)
    agent = RandomAgent(env, seed=0)
    assert agent.label_probabilities() == pytest.approx(np.array([5, 5, 5, 5, 5, 20]) / 45)
    counts = np.bincount([agent.act(None, None) for _ in range(4500)], minlength=6)
    assert counts[5] / 4500 == pytest.approx(20 / 45, abs=0.03)


def test_random_agent_follows_the_pools_as_they_empty(make_env):
    env = make_env(action_mode="flat", budget=30)
    env.reset(seed=0)
    agent = RandomAgent(env, seed=0)
    done = False
    while not done:
        _, _, done, _, info = env.step(agent.act(None, None))
        assert not info["resolved"]  # never asks for an exhausted label


def test_make_agent_names():
    with pytest.raises(ValueError, match="unknown agent"):
        make_agent("greedy", None)


def test_adaptive_moves_queries_to_the_digits_on_the_embedded_world():
    """The closed-world effect: the bandit finds the coarse node the victim was trained on."""
    import gymnasium as gym

    from agents import run_attack
    shares = {}
    for name in ("adaptive", "random"):
        shares[name] = []
        for seed in range(3):
            env = gym.make("Knockoff-Digits-v0", budget=400)
            run_attack(env, make_agent(name, env, seed=seed), seed=seed, progress=False)
            indices, _ = env.unwrapped.transfer_set.view()
            qs = env.unwrapped.query_set
            shares[name].append(float(np.mean(qs.coarse_of_label[qs.positions[indices]] == 0)))
    assert min(shares["adaptive"]) > max(shares["random"])
