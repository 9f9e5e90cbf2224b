"""The look-ahead decodes ahead but never changes which images are drawn, nor their order."""
import gymnasium as gym
import numpy as np
import pytest
import torch
from PIL import Image

from agents import make_agent, run_attack
from conftest import LinearNet, tiny_world
from knockoff_env import KnockoffEnv
from knockoff_env.data.common import class_folders
from knockoff_env.data.transforms import query_transform
from knockoff_env.data.lookahead import Lookahead

SIDE, CLASSES = 12, 5  # five class folders: the eval set's labels are the victim's classes
HIERARCHY = {"warm": [0, 1, 2], "cold": [3, 4]}


@pytest.fixture(scope="module")
def jpeg_folder(tmp_path_factory):
    """Five classes of JPEGs of varied sizes, in class sub-folders."""
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(7)
    for c in range(5):
        (root / f"class{c}").mkdir()
        for i in range(9):
            h, w = rng.integers(16, 48, 2)
            pixels = (rng.integers(0, 256, (h, w, 3)) // (c + 1)).astype(np.uint8)
            Image.fromarray(pixels).save(root / f"class{c}" / f"{i:03d}.jpg", quality=90)
    return root


def jpeg_env(folder, lookahead, budget=36, **options):
    torch.manual_seed(0)
    victim = LinearNet(3 * SIDE * SIDE, CLASSES)
    files = class_folders(folder, query_transform(SIDE))
    return KnockoffEnv(victim, files, lambda: LinearNet(3 * SIDE * SIDE, CLASSES), hierarchy=HIERARCHY,
                       eval_set=files, budget=budget, device="cpu", lookahead=lookahead, **options)


def transfer(env):
    indices, outputs = env.unwrapped.transfer_set.view()
    return indices.copy(), outputs.copy()


def assert_same_transfer(a, b):
    assert np.array_equal(a[0], b[0]) and len(a[0]) > 0
    assert np.array_equal(a[1], b[1])


@pytest.mark.parametrize("agent", ["random", "adaptive", "adaptive-flat"])
def test_lookahead_draws_the_same_transfer_set_as_without(jpeg_folder, agent):
    runs = {}
    for lookahead in (False, {"labels": 2, "steps": 2, "workers": 2}):
        env = jpeg_env(jpeg_folder, lookahead)
        result = run_attack(env, make_agent(agent, env, seed=4), seed=11, progress=False)
        runs[bool(lookahead)] = (transfer(env), env.lookahead)
    assert_same_transfer(runs[False][0], runs[True][0])
    stats = runs[True][1].stats()
    assert stats["hits"] + stats["misses"] == result["steps"]  # one verdict per step
    if agent == "random":  # the random strategy says its plan: every step is decoded ahead
        assert stats["hit_rate"] == 1.0
    else:
        assert stats["hits"] > 0


def test_without_hints_the_env_guesses_from_pool_sizes_and_reports(jpeg_folder):
    plain, ahead = jpeg_env(jpeg_folder, False), jpeg_env(jpeg_folder, True)
    actions = [np.array([0, 1]), np.array([0, 1]), np.array([1, 0]), np.array([0, 1]), np.array([1, 0])]
    for env in (plain, ahead):
        env.reset(seed=3)
        for action in actions:
            _, _, _, _, info = env.step(action)
    assert_same_transfer(transfer(plain), transfer(ahead))
    # five labels ≤ the default 64 candidates: every drawn label's next batch was decoded ahead
    assert info["lookahead"]["hits"] == 3 and info["lookahead"]["misses"] == 2


def test_peek_predicts_the_draws_including_pools_not_shuffled_yet():
    (x, y), victim, hierarchy = tiny_world(per_label=7)
    env = KnockoffEnv(victim, (x, y), LinearNet, hierarchy=hierarchy, device="cpu")
    env.reset(seed=5)
    qs = env.query_set
    qs.draw(2, 3)
    plan = [2, 0, 2, 5, 0, 0, 2, 4]
    before = {k: v.copy() for k, v in qs.state_dict().items()}
    rng_before = qs.rng.bit_generator.state
    predicted = qs.peek(plan, 3, limit=12)
    for key, value in qs.state_dict().items():  # peeking itself drew nothing
        assert np.array_equal(before[key], value)
    assert qs.rng.bit_generator.state == rng_before
    assert [len(b) for b in predicted] == [3, 3, 1, 3, 2]  # pool 2 runs dry at its 2nd draw; the limit cuts
    drawn = [qs.draw(p, 3).copy() for p in plan]
    for p, d in zip(predicted, drawn):
        assert np.array_equal(p, d[:len(p)])
    assert len(qs.peek([2, 0], 3)) == 0  # an empty pool first: the env would redraw, so nothing is known


def test_a_failed_victim_call_gives_the_decoded_images_back(jpeg_folder):
    calls = {"n": 0}

    class Flaky(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = LinearNet(3 * SIDE * SIDE, CLASSES)

        def forward(self, x):
            calls["n"] += 1
            if calls["n"] == 4:
                raise ConnectionError("victim unreachable")
            return self.net(x)

    plain = jpeg_env(jpeg_folder, False)
    torch.manual_seed(0)
    files = class_folders(jpeg_folder, query_transform(SIDE))
    flaky = KnockoffEnv(Flaky(), files, lambda: LinearNet(3 * SIDE * SIDE, CLASSES), hierarchy=HIERARCHY,
                        budget=36, device="cpu", lookahead=True, num_classes=CLASSES)
    flaky.victim.victim.net.load_state_dict(plain.victim.victim.state_dict())
    actions = [np.array([0, 0]), np.array([0, 0]), np.array([1, 1]), np.array([0, 0])]
    plain.reset(seed=2)
    flaky.reset(seed=2)
    for action in actions:
        plain.step(action)
        try:
            flaky.step(action)
        except ConnectionError:
            hits = flaky.lookahead.hits
            flaky.step(action)  # retried: the same images, served from the look-ahead again
            assert flaky.lookahead.hits == hits + 1
    assert_same_transfer(transfer(plain), transfer(flaky))


def test_lookahead_survives_a_checkpoint_and_restore(jpeg_folder):
    rng = np.random.default_rng(0)
    actions = [np.array([rng.integers(2), rng.integers(2)]) for _ in range(8)]
    straight = jpeg_env(jpeg_folder, False)
    straight.reset(seed=1)
    for action in actions:
        straight.step(action)
    first = jpeg_env(jpeg_folder, True)
    first.reset(seed=1)
    for action in actions[:4]:
        first.step(action)
    state = first.state_dict()
    resumed = jpeg_env(jpeg_folder, True)
    resumed.reset(seed=99)
    resumed.step(actions[0])  # another episode's predictions must not leak into the restored one
    resumed.load_state_dict(state)
    for action in actions[4:]:
        resumed.step(action)
    assert_same_transfer(transfer(straight), transfer(resumed))


def test_vector_envs_with_lookahead_draw_as_without(jpeg_folder):
    transfers = {}
    for lookahead in (False, True):
        vec = gym.vector.SyncVectorEnv([lambda: jpeg_env(jpeg_folder, lookahead, budget=16)] * 2)
        vec.reset(seed=[0, 1])
        for _ in range(3):
            vec.step(np.array([[0, 2], [1, 1]]))
        transfers[lookahead] = [transfer(e) for e in vec.envs]
        vec.close()
    for a, b in zip(transfers[False], transfers[True]):
        assert_same_transfer(a, b)


def test_bad_lookahead_options_are_clear_errors(make_env):
    with pytest.raises(ValueError, match="unknown lookahead options"):
        make_env(lookahead={"depth": 3})
    with pytest.raises(ValueError, match="steps=0"):
        make_env(lookahead={"steps": 0})
    with pytest.raises(ValueError, match="give True, False or a dict"):
        make_env(lookahead="yes")
    env = make_env(lookahead=True)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="label probabilities"):
        env.hint(probabilities=np.ones(3))


def test_lookahead_holds_only_what_is_still_wanted(make_env):
    env = make_env(lookahead={"labels": 2, "steps": 1})
    env.reset(seed=0)
    env.step(np.array([0, 0]))
    lookahead: Lookahead = env.lookahead
    assert 0 < lookahead.stats()["ready"] <= 2 * env.queries_per_step
    env.reset(seed=0)
    assert lookahead.stats()["ready"] == 0
    env.close()  # the workers stop; the env goes on decoding on demand
    assert env.lookahead is None and env.step(np.array([0, 0]))[4]["queries"] == 4
