"""UCB1, discounted UCB, Gaussian Thompson sampling and EXP3.S: their rules by hand, masks,
the hierarchy's paths, exact state round trips, and a short attack on the digits world."""
import math

import numpy as np
import pytest

from agents import (
    UCB,
    DiscountedUCB,
    Exp3S,
    GaussianThompson,
    agent_options,
    make_agent,
)
from agents.registry import AGENTS
from agents.sweep.spec import SWEEP_AGENTS, SpecError, load_spec

NEW = ("ucb", "ucb-flat", "d-ucb", "d-ucb-flat", "thompson", "thompson-flat", "exp3s", "exp3s-flat")
ALL_OPEN = {"action_mask": np.ones(6, np.int8)}  # tiny world: a:[0,1,2] b:[3,4] c:[5]


def test_ucb_index_by_hand_and_the_arm_with_few_pulls_is_pulled(make_env):
    agent = UCB(make_env(action_mode="flat"), hierarchical=False, seed=0)
    agent.labels["counts"][:] = [10, 10, 10, 10, 10, 1]
    agent.labels["sums"][:] = [7, 6, 6, 6, 6, 0.2]  # arm 5: poor mean, one pull
    n = 51
    expected = np.array([0.7, 0.6, 0.6, 0.6, 0.6, 0.2]) + np.sqrt(2 * math.log(n) / agent.labels["counts"])
    assert agent.indices(agent.labels, np.ones(6, bool)) == pytest.approx(expected)
    assert agent.act(None, ALL_OPEN) == 5
    agent.labels["counts"][5] = 10  # as many pulls as the rest: the best mean wins
    assert agent.act(None, ALL_OPEN) == 0


def test_ucb_plays_every_arm_once_before_any_twice(make_env):
    env = make_env(action_mode="flat", budget=24)
    agent = UCB(env, hierarchical=False, seed=1)
    obs, info = env.reset(seed=0)
    chosen = []
    for reward in (0.9, 0.1, 0.5, 0.3, 0.7, 0.2):
        chosen.append(int(agent.act(obs, info)))
        agent.update(chosen[-1], reward, info)
    assert sorted(chosen) == list(range(6))


def test_discounted_ucb_forgets_at_rate_gamma_per_play_of_the_node(make_env):
    agent = DiscountedUCB(make_env(action_mode="flat"), hierarchical=False, discount=0.5, seed=0)
    for arm, reward in ((0, 1.0), (1, 0.0), (0, 0.5)):
        agent.act(None, {"action_mask": np.eye(6, dtype=np.int8)[arm]})  # only `arm` is open
        agent.update(arm, reward, None)
    assert agent.labels["counts"][:2] == pytest.approx([0.25 + 1, 0.5])
    assert agent.labels["sums"][:2] == pytest.approx([0.25 * 1.0 + 0.5, 0.0])
    env = make_env(budget=14)  # default γ = 1 − 1/(4√T), T = ⌈14 / 4⌉ = 4 steps
    assert DiscountedUCB(env).discount == pytest.approx(1 - 1 / 8) and DiscountedUCB(env).xi == 0.6


def test_thompson_prefers_the_arm_with_the_higher_mean_after_enough_pulls(make_env):
    agent = GaussianThompson(make_env(action_mode="flat"), hierarchical=False, sigma=0.3, seed=0)
    agent.labels["counts"][:] = [200, 200, 200, 200, 200, 200]
    agent.labels["sums"][:] = [160, 100, 100, 100, 100, 100]  # means 0.8 vs 0.5
    picks = [int(agent.act(None, ALL_OPEN)) for _ in range(300)]
    assert picks.count(0) >= 297
    agent.labels["counts"][:] = [2, 2, 2, 2, 2, 2]  # two pulls each: still exploring
    agent.labels["sums"][:] = [1.6, 1.0, 1.0, 1.0, 1.0, 1.0]
    picks = [int(agent.act(None, ALL_OPEN)) for _ in range(300)]
    assert 75 < picks.count(0) < 280  # favoured (1/6 would be 50), far from certain
    mean, std = agent.posterior(agent.labels)
    # prior mean 0 (no reward seen yet)
    assert mean[0] == pytest.approx(1.6 / 3) and std[0] == pytest.approx(0.3 / np.sqrt(3))


def test_thompson_estimates_sigma_and_the_prior_mean_from_the_rewards(make_env):
    env = make_env(action_mode="flat")
    agent = GaussianThompson(env, hierarchical=False, seed=0)
    rewards = [0.2, 0.9, 0.4, 0.6, 0.1]
    for r in rewards:
        agent.update(agent.act(None, ALL_OPEN), r, None)
    assert agent.noise() == pytest.approx(np.std(rewards, ddof=1))
    never = int(np.flatnonzero(agent.labels["counts"] == 0)[0])
    assert agent.posterior(agent.labels)[0][never] == pytest.approx(np.mean(rewards))


def test_exp3s_update_by_hand(make_env):
    gamma, share = 0.2, 0.01
    agent = Exp3S(make_env(action_mode="flat"), hierarchical=False, gamma=gamma, share=share, seed=0)
    w = np.exp(np.array([0.0, -1.0, 0.5, 0.0, 0.0, -2.0]))
    agent.labels["log_weights"][:] = np.log(w)
    p = (1 - gamma) * w / w.sum() + gamma / 6
    assert agent.label_probabilities(np.ones(6, bool)) == pytest.approx(p)
    arm = int(agent.act(None, ALL_OPEN))
    agent.update(arm, 0.8, None)
    expected = w.copy()
    expected[arm] *= np.exp(gamma * (0.8 / p[arm]) / 6)
    expected += np.e * share / 6 * w.sum()
    got = np.exp(agent.labels["log_weights"])
    assert got / got.sum() == pytest.approx(expected / expected.sum())


@pytest.mark.parametrize("hierarchical", [True, False])
def test_exp3s_probabilities_stay_a_distribution_with_the_gamma_floor(make_env, hierarchical):
    env = make_env(action_mode="flat")
    agent = Exp3S(env, hierarchical=hierarchical, gamma=0.1, share=1e-4, seed=2)
    rng = np.random.default_rng(0)
    mask = np.array([1, 1, 1, 1, 0, 1], np.int8)
    for _ in range(500):  # rewards that always favour label 0 push the weights far apart
        action = int(agent.act(None, {"action_mask": mask}))
        agent.update(action, float(action == 0) * rng.uniform(0.5, 1), None)
    # the node that holds label 0: all open labels (flat), or node "a" = labels 0–2 (hierarchical)
    node, node_ok = (agent.labels, mask.astype(bool)) if not hierarchical else \
        (agent._view(agent.labels, slice(0, 3)), np.ones(3, bool))
    node_probs = agent._policy(node, node_ok)
    assert node_probs.sum() == pytest.approx(1) and np.all(node_probs[node_ok] >= 0.1 / node_ok.sum() - 1e-12)
    assert node_probs.argmax() == 0 and node_probs.max() > 0.5
    probs = agent.label_probabilities(mask.astype(bool))
    assert probs.sum() == pytest.approx(1) and probs[4] == 0 and probs.argmax() == 0
    assert np.isfinite(agent.labels["log_weights"]).all() and agent.labels["log_weights"].max() <= 0


@pytest.mark.parametrize("name", NEW)
def test_masks_are_respected(make_env, name):
    env = make_env(action_mode="flat")
    agent = make_agent(name, env, seed=1)
    rng = np.random.default_rng(0)
    mask = np.array([1, 0, 1, 0, 0, 1], np.int8)  # node "b" entirely exhausted
    chosen = set()
    for _ in range(200):
        action = int(agent.act(None, {"action_mask": mask}))
        chosen.add(action)
        agent.update(action, float(rng.uniform()), None)
    assert chosen <= {0, 2, 5} and len(chosen) >= 2
    probs = agent.label_probabilities(mask.astype(bool))
    assert probs.sum() == pytest.approx(1) and np.all(probs[mask == 0] == 0)
    assert agent.coarse_probabilities(mask.astype(bool))[1] == 0
    with pytest.raises(ValueError, match="exhausted"):
        agent.act(None, {"action_mask": np.zeros(6, np.int8)})


@pytest.mark.parametrize("name", ["ucb", "d-ucb", "thompson", "exp3s"])
def test_a_hierarchical_step_updates_the_root_and_the_chosen_node_only(make_env, name):
    env = make_env()
    agent = make_agent(name, env, seed=0)
    obs, info = env.reset(seed=0)
    before = agent.state_dict()
    coarse, slot = (int(v) for v in agent.act(obs, info))
    agent.update(np.array([coarse, slot]), 0.7, info)
    after = agent.state_dict()
    position = [0, 3, 5][coarse] + slot
    segment = range([0, 3, 5][coarse], [0, 3, 5][coarse] + [3, 2, 1][coarse])
    if name == "exp3s":  # weights are relative (the largest is kept at 1): the played arms gained on the rest
        root = after["root_log_weights"]
        assert root[coarse] > np.delete(root, coarse).max()
        node = after["label_log_weights"][list(segment)]
        assert len(node) == 1 or node[slot] > np.delete(node, slot).max()
        labels_moved = after["label_log_weights"] != before["label_log_weights"]
    else:
        assert after["root_counts"].tolist() == np.eye(3)[coarse].tolist()
        assert after["label_counts"].tolist() == np.eye(6)[position].tolist()
        assert after["root_sums"][coarse] == after["label_sums"][position] == 0.7
        labels_moved = after["label_sums"] != before["label_sums"]
    assert not any(labels_moved[i] for i in range(6) if i not in segment)  # nodes off the path untouched


@pytest.mark.parametrize("name", NEW)
def test_state_round_trip_resumes_identically(make_env, name):
    env = make_env(budget=28)
    obs, info = env.reset(seed=0)
    a = make_agent(name, env, seed=3)
    rng = np.random.default_rng(1)
    for _ in range(5):
        a.update(a.act(obs, info), float(rng.uniform()), info)
    b = make_agent(name, env, seed=99)
    b.load_state_dict({k: np.asarray(v) for k, v in a.state_dict().items()})
    assert np.array_equal(a.label_probabilities(), b.label_probabilities())
    for _ in range(8):
        act_a, act_b = a.act(obs, info), b.act(obs, info)
        assert np.array_equal(act_a, act_b)
        r = float(rng.uniform())
        a.update(act_a, r, info)
        b.update(act_b, r, info)
    for key, value in a.state_dict().items():
        assert np.array_equal(value, b.state_dict()[key]), key


def test_reporting_the_policy_does_not_change_the_run(make_env):
    """Thompson's reported policy is estimated by sampling: from its own generator, not the agent's."""
    env = make_env()
    obs, info = env.reset(seed=0)
    a, b = (GaussianThompson(env, seed=4) for _ in range(2))
    for step in range(10):
        a.label_probabilities()  # a reports every step, b never
        act_a, act_b = a.act(obs, info), b.act(obs, info)
        assert np.array_equal(act_a, act_b)
        a.update(act_a, step / 10, info)
        b.update(act_b, step / 10, info)


def test_registry_names_options_and_sweeps():
    assert set(NEW) <= set(AGENTS) and set(NEW) <= set(SWEEP_AGENTS)
    spec = load_spec({"env": "Knockoff-Digits-v0", "agent_options": {"gamma": 0.2},
                      "axes": {"agent": ["ucb", "exp3s"], "discount": [0.9, 0.99]}})
    assert [(t.agent, t.agent_options) for t in spec.trials()][:2] == [("ucb", {"gamma": 0.2, "discount": 0.9}),
                                                                      ("ucb", {"gamma": 0.2, "discount": 0.99})]
    with pytest.raises(SpecError, match=r"agent option 'alpha' applies to none of the agents \['ucb', 'exp3s'\]; "
                                         r"it is an option of \['adaptive', 'adaptive-flat'\]"):
        load_spec({"env": "Knockoff-Digits-v0", "agent_options": {"alpha": 0.3}, "axes": {"agent": ["ucb", "exp3s"]}})
    assert agent_options("exp3s") == ("gamma", "share") and agent_options("thompson-flat") == ("sigma",)
    with pytest.raises(ValueError, match=r"agent 'ucb' takes no option \['alpha'\]"):
        make_agent("ucb", None, alpha=0.3)
    with pytest.raises(ValueError, match="SB3 agents are trained"):
        make_agent("ppo", None)


def test_bad_bandit_options_say_what_is_wrong(make_env):
    env = make_env()
    for cls, options, message in ((UCB, {"discount": 1.5}, "discount=1.5 must be in"),
                                  (UCB, {"xi": -1}, "xi=-1 must be a positive"),
                                  (GaussianThompson, {"sigma": 0}, "sigma=0 must be a positive"),
                                  (Exp3S, {"gamma": 0}, "gamma=0 must be in"),
                                  (Exp3S, {"share": -0.1}, "share=-0.1 must be")):
        with pytest.raises(ValueError, match=message):
            cls(env, **options)


@pytest.mark.parametrize("name", NEW)
def test_each_bandit_plays_a_short_attack_on_the_digits_world(name):
    import gymnasium as gym

    from agents import run_attack
    env = gym.make("Knockoff-Digits-v0", budget=60)
    result = run_attack(env, make_agent(name, env, seed=0), seed=0, progress=False)
    assert result["queries"] == 60 == len(env.unwrapped.transfer_set)
    assert 0 <= result["knockoff_accuracy"] <= 1


class _Crash(Exception):
    pass


@pytest.mark.parametrize("name", ["d-ucb", "thompson", "exp3s-flat"])
def test_a_durable_attack_resumes_bit_identically(make_env, tmp_path, name):
    """Killed after step 4 with a checkpoint at step 3: the resumed attack draws what the
    uninterrupted one drew (the agent's state comes back from the checkpoint, step 4 is replayed)."""
    from agents import run_attack
    reference = run_attack(env := make_env(budget=28), make_agent(name, env, seed=2), seed=5, progress=False)
    expected = env.transfer_set.view()[0].copy()
    env = make_env(budget=28)
    agent = make_agent(name, env, seed=2)
    update = agent.update

    def update_then_crash(action, reward, info):
        update(action, reward, info)
        if agent.steps == 4:
            raise _Crash

    agent.update = update_then_crash
    with pytest.raises(_Crash):
        run_attack(env, agent, seed=5, logdir=tmp_path, checkpoint_every=3, progress=False)
    env = make_env(budget=28)
    result = run_attack(env, make_agent(name, env, seed=2), seed=5, logdir=tmp_path, resume=True, progress=False)
    assert np.array_equal(env.transfer_set.view()[0], expected)
    assert result["knockoff_accuracy"] == reference["knockoff_accuracy"]
