"""Many attacks at once: Gymnasium vector envs and MultiKnockoff's shared, batched victim."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import LinearNet, tiny_world

import knockoff_env  # noqa: F401  (registers the ids)
from knockoff_env import BlackBox, KnockoffEnv
from knockoff_env.core.multi import MultiKnockoff


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gymnasium_vector_envs_step_and_autoreset(mode):
    envs = gym.make_vec("Knockoff-Digits-v0", num_envs=2, vectorization_mode=mode, budget=8)
    try:
        obs, info = envs.reset(seed=[0, 1])
        assert obs.shape == (2,) + envs.single_observation_space.shape
        ended = np.zeros(2, bool)
        for step in range(3):
            obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
            assert obs.shape[0] == 2 and np.isfinite(reward).all() and not truncated.any()
            if step == 0:
                assert set(info["rewards"]) >= {"certainty", "diversity", "loss"}
                np.testing.assert_array_equal(info["queries"], [4, 4])
            ended |= terminated
        assert ended.all()  # budget 8 at 4 queries a step: both ended, then autoreset
    finally:
        envs.close()


def _tiny_envs(n, victim):
    (x, y), _, hierarchy = tiny_world()
    return [KnockoffEnv(victim, (x, y), lambda: LinearNet(), hierarchy=hierarchy, budget=24, device="cpu",
                        queries_per_step=3) for _ in range(n)]


def _actions(seed, steps=8):
    rng = np.random.default_rng(seed)
    return [np.array([rng.integers(3), rng.integers(3)]) for _ in range(steps)]


def test_multi_attack_equals_separate_envs_with_the_same_seeds():
    _, model, _ = tiny_world()
    seeds = [3, 4, 5]
    plans = [_actions(s) for s in seeds]
    separate = []
    for env, seed, plan in zip(_tiny_envs(3, BlackBox(model, device="cpu")), seeds, plans):
        env.reset(seed=seed)
        rewards = [env.step(a)[1] for a in plan]
        separate.append((env.transfer_set.view(), rewards))

    shared = BlackBox(model, device="cpu")
    multi = MultiKnockoff(_tiny_envs(3, shared))
    multi.reset(seeds)
    rewards = [multi.step(list(actions))[1] for actions in zip(*plans)]
    assert shared.queries == sum(len(env.transfer_set) for env in multi.envs)
    for i, (env, ((indices, outputs), expected)) in enumerate(zip(multi.envs, separate)):
        got_indices, got_outputs = env.transfer_set.view()
        np.testing.assert_array_equal(got_indices, indices)
        np.testing.assert_allclose(got_outputs, outputs, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose([r[i] for r in rewards], expected, rtol=1e-4, atol=1e-5)
    assert len({env.transfer_set.view()[0].tobytes() for env in multi.envs}) == 3  # independent RNGs


def test_multi_attack_needs_one_shared_victim():
    _, model, _ = tiny_world()
    envs = _tiny_envs(1, BlackBox(model, device="cpu")) + _tiny_envs(1, BlackBox(model, device="cpu"))
    with pytest.raises(ValueError, match="share one BlackBox"):
        MultiKnockoff(envs)


class _ImageDataset(torch.utils.data.Dataset):
    """A map-style Dataset over tensors, standing in for decoded image files."""

    def __init__(self, x, y):
        self.x, self.targets = x, y.tolist()

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i].clone(), self.targets[i]


def test_threaded_fetch_from_a_dataset_matches_the_tensor_query_set(make_env):
    (x, y), _, _ = tiny_world()
    runs = []
    for query_set, workers in (((x, y), 0), (_ImageDataset(x, y), 3)):
        env = make_env(query_set=query_set, fetch_workers=workers, pin_memory=True)
        env.reset(seed=7)
        for a in _actions(0, 5):
            env.step(a)
        runs.append(env.transfer_set.view())
        # pinned memory is honoured only where it helps (a CUDA machine); elsewhere it is dropped, said here
        assert env.query_set.fetch_pool.pin_memory == torch.cuda.is_available()
        if torch.cuda.is_available():
            assert env.query_set.fetch(np.arange(4)).is_pinned()
        env.query_set.fetch_pool.close()
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_allclose(runs[0][1], runs[1][1], rtol=1e-6)
    with pytest.raises(ValueError, match="fetch_workers"):
        make_env(fetch_workers=-1)


class _ConvNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                          torch.nn.Flatten(), torch.nn.Linear(4 * 16, 3))

    def forward(self, x):
        return self.layers(x)


def test_bf16_and_channels_last_paths_run_and_stay_close_to_float32():
    torch.manual_seed(0)
    x, y = torch.rand(24, 1, 4, 4), torch.arange(24) % 4
    victim = _ConvNet()
    outputs = {}
    for fast in (False, True):
        env = KnockoffEnv(victim, (x, y), _ConvNet, budget=12, device="cpu", bf16=fast, channels_last=fast)
        env.reset(seed=0)
        for a in _actions(1, 3):
            *_, info = env.step(np.array([0, a[0]]))
            assert np.isfinite(list(info["rewards"].values())).all()
        outputs[fast] = env.transfer_set.view()
    np.testing.assert_array_equal(outputs[False][0], outputs[True][0])
    np.testing.assert_allclose(outputs[False][1], outputs[True][1], atol=2e-2)  # bf16 precision
    assert not np.array_equal(outputs[False][1], outputs[True][1])  # bf16 really ran: not float32's answers
    assert outputs[True][1].dtype == np.float32
