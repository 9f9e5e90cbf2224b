"""ImageChoice: an agent names the step's images; the env keeps its guarantees (no image twice,
exact budget, answers in the chosen order, images given back when the victim fails)."""
import numpy as np
import pytest
import torch
from conftest import LinearNet

from knockoff_env import ImageChoice, KnockoffEnv


def small_world(per_label=12, labels=8, dim=9, classes=4, seed=5):
    """Our own world: 8 labels in two nodes ("home": 0–3, "away": 4–7), 3×3 one-channel images."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(labels).repeat_interleave(per_label)
    pattern = torch.rand(labels, 1, 3, 3, generator=g)
    x = 0.6 * pattern[y] + 0.4 * torch.rand(len(y), 1, 3, 3, generator=g)
    torch.manual_seed(seed + 100)
    victim = LinearNet(dim, classes)
    with torch.no_grad():  # centred on the images, so that it names every class
        victim.fc.weight.mul_(8)
        victim.fc.bias.copy_(-victim.fc.weight @ x.flatten(1).mean(0))
    hierarchy = {"home": [0, 1, 2, 3], "away": [4, 5, 6, 7]}
    return (x, y), victim, hierarchy


class Failing(torch.nn.Module):
    """A victim that answers until ``fail`` is set, then raises."""

    def __init__(self, model):
        super().__init__()
        self.model, self.fail = model, False

    def forward(self, x):
        if self.fail:
            raise ConnectionError("victim down")
        return self.model(x)


def small_env(**kwargs):
    (x, y), victim, hierarchy = small_world()
    options = dict(victim=kwargs.pop("victim", victim), query_set=(x, y), hierarchy=hierarchy,
                   knockoff=lambda: LinearNet(9, 4), budget=40, device="cpu")
    options.update(kwargs)
    return KnockoffEnv(**options)


def test_the_chosen_images_are_the_ones_queried_in_that_order():
    env = small_env()
    env.reset(seed=0)
    seen = []
    env.on_answers = lambda query, answers: seen.append((query.index.copy(), answers.clone()))
    chosen = np.array([90, 3, 50, 17])
    _, _, _, _, info = env.step(ImageChoice(chosen))
    indices, outputs = env.transfer_set.view()
    assert indices.tolist() == chosen.tolist() and seen[0][0].tolist() == chosen.tolist()
    x = env.query_set.images[torch.from_numpy(chosen)]
    np.testing.assert_allclose(outputs, torch.softmax(env.victim.victim(x), 1).detach().numpy(), atol=1e-6)
    assert info["chosen"] and info["queries"] == 4 and env.victim.queries == 4
    assert info["label_position"] == 7  # the first image's label (image 90 is label 7)
    assert not set(chosen.tolist()) & set(env.query_set.unqueried().tolist())


def test_label_draws_never_return_a_chosen_image():
    env = small_env(budget=96)
    env.reset(seed=1)
    label0 = np.arange(12)
    env.step(ImageChoice(label0[:4]))
    env.step(ImageChoice(label0[[11, 5, 9, 4]]))
    drawn = []
    for _ in range(2):  # label 0 (coarse 0, slot 0) has 4 images left: one step of it, then redrawn
        _, _, _, _, info = env.step(np.array([0, 0]))
        drawn.append((info["resolved"], env.transfer_set.view()[0][-info["queries_this_step"]:].tolist()))
    assert drawn[0] == (False, drawn[0][1]) and sorted(drawn[0][1]) == [6, 7, 8, 10]
    assert drawn[1][0] is True and not set(drawn[1][1]) & set(range(12))
    indices = env.transfer_set.view()[0]
    assert len(set(indices.tolist())) == len(indices) == 16


@pytest.mark.parametrize("bad, message", [
    ([96], "outside the query set"), ([-1], "outside the query set"), ([4, 4], "twice"),
    ([1, 2, 3, 5, 6], "at most queries_per_step"), ([], "non-empty"), ([[1, 2]], "1-D"),
    ([1.0], "integer"), ([7], "queried already")])
def test_a_bad_choice_is_a_clear_error_and_takes_nothing(bad, message):
    env = small_env()
    env.reset(seed=0)
    env.step(ImageChoice(np.array([7, 8])))
    before = env.query_set.unqueried().copy(), env.query_set.order.copy(), env.spent
    with pytest.raises(ValueError, match=message):
        env.step(ImageChoice(np.array(bad)))
    assert np.array_equal(env.query_set.unqueried(), before[0]) and np.array_equal(env.query_set.order, before[1])
    assert env.spent == before[2] == 2


def test_a_choice_beyond_the_budget_is_refused_and_the_budget_is_exact():
    env = small_env(budget=6)
    env.reset(seed=0)
    env.step(ImageChoice(np.array([0, 1, 2, 3])))
    with pytest.raises(ValueError, match="2 queries of the budget are left"):
        env.step(ImageChoice(np.array([4, 5, 6])))
    _, _, terminated, _, info = env.step(ImageChoice(np.array([4, 5])))
    assert terminated and info["queries"] == env.victim.queries == len(env.transfer_set) == 6


def test_a_failed_victim_call_gives_the_chosen_images_back():
    _, victim, _ = small_world()
    failing = Failing(victim)
    env = small_env(victim=failing)
    env.reset(seed=0)
    env.step(ImageChoice(np.array([12, 13])))  # label 1: its pool's first two taken
    failing.fail = True
    with pytest.raises(ConnectionError):
        env.step(ImageChoice(np.array([20, 14, 40])))
    assert sorted(set(range(96)) - set(env.query_set.unqueried().tolist())) == [12, 13]
    failing.fail = False
    env.step(ImageChoice(np.array([20, 14, 40])))  # the same images can be chosen again
    assert env.transfer_set.view()[0].tolist() == [12, 13, 20, 14, 40] and env.spent == 5


def test_synthetic_images_are_queried_once_fetched_and_checkpointed(tmp_path):
    env = small_env()
    env.reset(seed=0)
    env.step(ImageChoice(np.array([0, 50])))
    made = torch.full((2, 1, 3, 3), 0.5)
    new = env.query_set.add_synthetic(made, np.array([50, 0]))
    assert new.tolist() == [96, 97] and env.query_set.position_of(96) == 4
    env.step(ImageChoice(np.array([97, 3])))
    with pytest.raises(ValueError, match="queried already"):
        env.step(ImageChoice(np.array([97])))
    assert torch.equal(env.query_set.fetch(np.array([3, 97, 96]))[1:], made)
    assert len(env.transfer_images()) == 4
    env.save(tmp_path / "state.pt")
    other = small_env()
    other.reset(seed=0)
    other.load(tmp_path / "state.pt")
    assert np.array_equal(other.query_set.unqueried(), env.query_set.unqueried())
    assert torch.equal(other.query_set.fetch(np.array([96, 97])), made)
    other.step(ImageChoice(np.array([96])))
    other.reset(seed=0)  # a new episode forgets what the last one made
    assert other.query_set.size_with_synthetic == 96


def test_a_chosen_step_cut_short_gives_the_rest_back():
    """A journal replaying a step the detector's alarm cut (fewer answers than images): the
    images not answered return to what is left, and a later label draw can take them."""
    env = small_env()
    env.reset(seed=0)
    query = env.prepare(ImageChoice(np.array([1, 30, 2, 3])))
    answers = env.victim(query.images)[:2]
    env.learn(query, answers)
    assert env.transfer_set.view()[0].tolist() == [1, 30] and env.spent == 2
    left = set(env.query_set.unqueried().tolist())
    assert {2, 3} <= left and not {1, 30} & left
    env.step(ImageChoice(np.array([3, 2])))  # chosen again, as the replayed run would
    assert env.transfer_set.view()[0].tolist() == [1, 30, 3, 2]


def test_prada_watches_chosen_images_in_query_order():
    """The detector sees the chosen images in the order chosen: its state (the growing set's
    members, every query's distance) equals that of a fresh detector fed the same stream, and
    differs from one fed the images in another order."""
    from knockoff_env.victim.detectors import parse_detector

    env = small_env(budget=48, detector="prada")
    env.reset(seed=0)
    order = np.random.default_rng(0).permutation(96)[:48]
    for start in range(0, 48, 4):
        env.step(ImageChoice(order[start:start + 4]))

    def fed(indices):
        detector = parse_detector("prada", env.device)
        x = env.query_set.images[torch.from_numpy(indices)]
        detector.observe(x, env.victim(x))
        return detector.state_dict()

    state, same, other = env.detector.state_dict(), fed(order), fed(order[::-1].copy())
    assert np.array_equal(state["query_distances"], same["query_distances"])
    assert torch.equal(state["members"], same["members"])
    assert not np.array_equal(state["query_distances"], other["query_distances"])
