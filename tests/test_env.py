"""KnockoffEnv: the loop of DESIGN §2, spaces, budget, seeding, masks and errors."""
import copy
import warnings

import numpy as np
import pytest
import torch
from conftest import LinearNet, tiny_world
from gymnasium.utils.env_checker import check_env as gym_check_env

from knockoff_env import TransferSet
from knockoff_env.training.losses import soft_cross_entropy
from knockoff_env.victim.blackbox import VictimOutputError


@pytest.mark.parametrize("action_mode", ["hierarchical", "flat"])
def test_gymnasium_and_sb3_checkers_pass_without_warnings(make_env, action_mode):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gym_check_env(make_env(action_mode=action_mode), skip_render_check=True)
        sb3_check_env(make_env(action_mode=action_mode), warn=True)


def play(env, actions=None, seed=0):
    obs, info = env.reset(seed=seed)
    env.action_space.seed(seed)  # the sampled actions too: a test's transfer set is the same every run
    infos, rewards, done, t = [], [], False, 0
    while not done:
        action = env.action_space.sample() if actions is None else actions[t % len(actions)]
        obs, reward, done, truncated, info = env.step(action)
        assert not truncated and env.observation_space.contains(obs)
        infos.append(info)
        rewards.append(reward)
        t += 1
    return infos, rewards


def test_every_image_queried_at_most_once_until_the_query_set_is_spent(make_env):
    env = make_env(budget=30)  # the whole query set
    env.action_space.seed(1)
    infos, _ = play(env)
    indices, outputs = env.transfer_set.view()
    assert len(indices) == 30 and len(np.unique(indices)) == 30
    assert infos[-1]["queries"] == 30
    assert any(i["resolved"] for i in infos)  # the agent kept asking for exhausted labels


@pytest.mark.parametrize("budget, q, steps", [(10, 4, [4, 4, 2]), (8, 4, [4, 4]), (3, 5, [3]), (7, 1, [1] * 7)])
def test_budget_is_spent_exactly_and_never_exceeded(make_env, budget, q, steps):
    env = make_env(budget=budget, queries_per_step=q, action_mode="flat")
    infos, _ = play(env, actions=[0, 3, 5, 1, 4, 2])
    assert [i["queries_this_step"] for i in infos] == steps
    assert env.spent == env.victim.queries == len(env.transfer_set) == budget
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)


def test_transfer_set_holds_the_victims_answers_for_the_queried_images(make_env):
    env = make_env(budget=12)
    play(env)
    indices, outputs = env.transfer_set.view()
    images = env.query_set.fetch(indices)
    expected = torch.softmax(env.victim.victim(images), 1).numpy()
    np.testing.assert_allclose(outputs, expected, rtol=1e-5, atol=1e-6)
    assert np.all(env.query_set.positions[indices] >= 0)


def test_loss_reward_is_measured_before_the_knockoff_learns(make_env):
    env = make_env(action_mode="flat", knockoff_lr=0.5)
    env.reset(seed=0)
    before = copy.deepcopy(env.knockoff.model)
    _, _, _, _, info = env.step(1)
    indices, outputs = env.transfer_set.view()
    images = env.query_set.fetch(indices)
    expected_before = soft_cross_entropy(before(images), torch.from_numpy(outputs)).mean().item()
    expected_after = soft_cross_entropy(env.knockoff.model(images), torch.from_numpy(outputs)).mean().item()
    assert info["rewards"]["loss"] == pytest.approx(expected_before, rel=1e-5)
    assert abs(expected_after - expected_before) > 1e-3  # it did learn, after scoring


def test_same_seed_same_trajectory_other_seed_other_images(make_env):
    def trajectory(seed):
        env = make_env(budget=20)
        env.action_space.seed(seed)
        infos, rewards = play(env, seed=seed)
        return env.transfer_set.view()[0].copy(), rewards, env.knockoff.model.fc.weight.detach().clone()

    a, b, c = trajectory(3), trajectory(3), trajectory(4)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1] == b[1]
    assert torch.equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])


def test_observation_reports_budget_and_exhaustion(make_env):
    env = make_env(budget=20, action_mode="flat", queries_per_step=5)
    obs, _ = env.reset(seed=0)
    assert obs[0] == 0 and np.all(obs[1:1 + 3 + 6] == 1)
    obs, _, _, _, info = env.step(5)  # label 5 is coarse node "c"'s only label, 5 images
    assert obs[0] == pytest.approx(5 / 20)
    assert obs[1 + 2] == 0 and obs[1 + 3 + 5] == 0  # coarse "c" and label 5 now empty
    assert info["action_mask"].dtype == np.int8 and info["action_mask"].tolist() == [1, 1, 1, 1, 1, 0]
    assert env.action_masks().tolist() == [True] * 5 + [False]


def test_exhausted_or_missing_label_is_resolved_within_its_coarse_node(make_env):
    env = make_env(budget=20, queries_per_step=5)
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([2, 0]))  # node "c", its only label, now empty
    assert info["label"] == 5 and not info["resolved"]
    _, _, _, _, info = env.step(np.array([1, 2]))  # node "b" has no slot 2
    assert info["resolved"] and info["coarse"] == "b" and info["label"] in (3, 4)
    _, _, _, _, info = env.step(np.array([2, 0]))  # node "c" exhausted: anywhere else
    assert info["resolved"] and info["label"] != 5
    masks = env.action_masks()
    assert masks[:3].tolist() == [True, True, False]


@pytest.mark.parametrize("action", [np.array([3, 0]), np.array([0, 3]), np.array([-1, 0]), np.array([0.5, 1.0]),
                                    np.array([0, 0, 0]), "a"])
def test_out_of_space_actions_are_clear_errors(make_env, action):
    env = make_env()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(action)


def test_flat_action_bounds(make_env):
    env = make_env(action_mode="flat")
    env.reset(seed=0)
    env.step(np.int64(5))
    with pytest.raises(ValueError, match="outside the action space"):
        env.step(6)


@pytest.mark.parametrize("kwargs, message", [
    (dict(budget=0), "budget"), (dict(budget=31), "exceeds"), (dict(budget=2.5), "budget"),
    (dict(queries_per_step=0), "queries_per_step"), (dict(reward="speed"), "unknown reward"),
    (dict(action_mode="tree"), "action_mode"), (dict(hierarchy={"a": [0, 1, 2], "b": [2, 3, 4, 5]}), "both"),
    (dict(hierarchy={"a": [0, 1, 2], "b": [3, 4]}), "no coarse node"),
    (dict(hierarchy={"a": [0, 1, 2, 3, 4, 5], "b": []}), "no labels"), (dict(hierarchy={}), "non-empty"),
    (dict(output="logits"), "output mode"), (dict(knockoff=lambda: "model"), "nn.Module"),
    (dict(diversity_window=0), "window"), (dict(render_mode="human"), "render"),
    (dict(query_set=(torch.zeros(3, 2), torch.zeros(4))), "one label per image"),
])
def test_bad_constructor_arguments_are_clear_errors(make_env, kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make_env(**kwargs)


def test_label_without_images_is_an_error_naming_it(make_env):
    # issue 15: a hierarchy label with no images used to be accepted silently as an always-exhausted action
    with pytest.raises(ValueError, match=r"labels 99 \(in 'c'\) have no images in the query set — remove them"):
        make_env(hierarchy={"a": [0, 1, 2], "b": [3, 4], "c": [5, 99]}, action_mode="flat")


@pytest.mark.parametrize("answer, message", [
    (lambda x: torch.full((len(x), 3), float("nan")), "NaN"),
    (lambda x: torch.full((len(x), 3), float("inf")), "NaN or infinite"),
    (lambda x: torch.full((len(x), 4), 0.25), "4 classes"),
    (lambda x: torch.full((len(x), 3), 0.5), "not a probability"),
    (lambda x: torch.tensor([[1.5, -0.5, 0.0]]).repeat(len(x), 1), "not a probability"),
    (lambda x: torch.ones(len(x)), "shape"),
])
def test_victim_output_that_is_not_a_distribution_is_refused(make_env, answer, message):
    env = make_env(victim=answer, num_classes=3)
    env.reset(seed=0)
    with pytest.raises(VictimOutputError, match=message):
        env.step(env.action_space.sample())


def test_callable_victim_returning_probabilities_and_width_inference(make_env):
    (x, y), victim, _ = tiny_world()
    env = make_env(victim=lambda images: torch.softmax(victim(images), 1))
    assert env.num_classes == 3 and env.victim.queries == 0
    infos, _ = play(env)
    assert env.victim.queries == 20


def test_evaluate_reports_accuracy_ratio_and_agreement(make_env):
    env = make_env()
    play(env)
    result = env.evaluate()
    assert set(result) >= {"knockoff_accuracy", "victim_accuracy", "times_victim", "agreement"}
    assert 0 <= result["agreement"] <= 1
    assert result["times_victim"] == pytest.approx(result["knockoff_accuracy"] / result["victim_accuracy"])
    victim_only = env.evaluate(model=env.victim.victim)
    assert victim_only["agreement"] == 1.0 and victim_only["times_victim"] == 1.0


def test_retrain_learns_the_transfer_set_from_scratch(make_env):
    torch.manual_seed(0)  # the tiny world's victim is drawn from the global RNG: fix it, whatever ran before
    env = make_env(budget=30)  # the whole tiny query set, which is also its eval set
    play(env)
    model = env.retrain(epochs=200, lr=0.1)  # 60 epochs stop at 0.77–0.97, a constant guess gets 0.73
    assert env.evaluate(model)["agreement"] > 0.95


def test_transfer_set_saves_as_npz_and_loads_back(make_env, tmp_path):
    env = make_env()
    play(env)
    path = env.transfer_set.save(tmp_path / "transfer.npz")
    loaded = TransferSet.load(path)
    np.testing.assert_array_equal(loaded.view()[0], env.transfer_set.view()[0])
    np.testing.assert_array_equal(loaded.view()[1], env.transfer_set.view()[1])
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a transfer set"):
        TransferSet.load(tmp_path / "junk.npz")


def test_dataset_query_set_and_knockoff_module(make_env):
    (x, y), _, _ = tiny_world()
    dataset = torch.utils.data.TensorDataset(x, y)
    env = make_env(query_set=dataset, knockoff=LinearNet(), eval_set=torch.utils.data.TensorDataset(x, y % 3))
    play(env)
    assert len(env.transfer_set) == 20
    assert isinstance(env.retrain(epochs=2), torch.nn.Module)
    assert 0 <= env.evaluate()["knockoff_accuracy"] <= 1


def test_without_online_training_the_knockoff_is_untouched_and_loss_not_rewarded(make_env):
    env = make_env(train_online=False, action_mode="flat")
    env.reset(seed=0)
    before = env.knockoff.model.fc.weight.detach().clone()
    rewards = [env.step(a)[1:] for a in (0, 3, 5, 1)]
    assert torch.equal(env.knockoff.model.fc.weight, before)
    for reward, _, _, info in rewards:
        parts = info["rewards"]
        assert np.isnan(parts["loss"]) and parts["loss_normalised"] == 0
        assert reward == pytest.approx((parts["certainty_normalised"] + parts["diversity_normalised"]) / 2)
    assert len(env.transfer_set) == 16
    with pytest.raises(ValueError, match="needs the online knockoff"):
        make_env(train_online=False, reward="loss")


def test_a_diverged_knockoff_is_a_clear_error(make_env):
    env = make_env(knockoff_lr=10.0, action_mode="flat")
    with torch.no_grad():
        env.reset(seed=0)
        env.knockoff.model.fc.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="diverged"):
        env.step(0)


def test_each_pool_is_drawn_in_uniformly_random_order():
    from knockoff_env import QuerySet
    qs = QuerySet(torch.zeros(12, 1), np.array([0] * 4 + [1] * 8))
    firsts = []
    for seed in range(400):
        qs.reset(np.random.default_rng(seed))
        drawn = qs.draw(1, 8)
        assert sorted(drawn.tolist()) == list(range(4, 12))  # the whole pool, each image once
        firsts.append(int(drawn[0]))
    counts = np.bincount(firsts, minlength=12)[4:]
    assert counts.min() > 25 and counts.max() < 80  # 50 expected for each of the 8 images


def test_a_failed_victim_call_spends_nothing_and_the_step_can_be_retried(make_env):
    (x, y), victim, _ = tiny_world()
    failures = [RuntimeError("API rate limit")]

    def flaky(images):
        if failures:
            raise failures.pop()
        return torch.softmax(victim(images), 1)

    env = make_env(victim=flaky, num_classes=3, action_mode="flat", budget=30)
    env.reset(seed=0)
    with pytest.raises(RuntimeError, match="rate limit"):
        env.step(5)
    assert env.query_set.remaining()[5] == 5 and env.spent == 0 and env.victim.queries == 0
    done, t = False, 0
    while not done:  # the same episode goes on: the retried label still has all its images
        _, _, done, _, info = env.step([5, 0, 1, 2, 3, 4][t % 6])
        t += 1
    indices, _ = env.transfer_set.view()
    assert len(indices) == 30 and len(np.unique(indices)) == 30 and env.victim.queries == 30
