"""Batches drawn ahead: the random strategy names a batch's labels at once (``act_ahead``) and the
env draws them in one pass (``prepare_ahead``, ``QuerySet.draw_steps``), with the same picks, the
same images and the same RNG state as acting and drawing step by step."""
import copy

import numpy as np
import pytest
import torch
from conftest import LinearNet
from test_batched import transfer, uneven_env

from agents import CopycatCNN, RandomAgent, run_attack
from agents.base import Agent
from agents.batching import acting_ahead
from agents.weighted import Counts, pick
from knockoff_env import BlackBox, KnockoffEnv
from knockoff_env.data.query_set import QuerySet
from knockoff_env.devices import seed_torch
from knockoff_env.training.online import OnlineKnockoff


def test_counts_pick_what_a_cumulative_sum_picks_as_the_weights_shrink():
    rng = np.random.default_rng(0)
    for trial in range(300):
        weights = rng.integers(0, 6, int(rng.integers(1, 70)))
        weights[rng.integers(len(weights))] += 1
        counts, a, b = Counts(weights), np.random.default_rng(trial), np.random.default_rng(trial)
        while counts.total:
            label = pick(a, weights)
            assert counts.find(b.random()) == label and weights[label] > 0
            taken = int(min(rng.integers(1, 5), weights[label]))
            weights[label] -= taken
            counts.take(label, taken)
    counts = Counts(np.array([3, 0, 2]))  # u × 5 = 0, then u × 3 = 2.97, then u × 1 = 0.5
    assert counts.draws([0.0, 0.99, 0.5, 0.1], per_draw=2, left=9) == [0, 2, 0] and counts.weights == [0, 0, 0]
    counts = Counts(np.array([3, 0, 2]))
    assert counts.draws([0.0, 0.99, 0.5], per_draw=2, left=3) == [0, 2] and counts.weights == [1, 0, 1]


def pools(sizes=(9, 13, 2, 5000)):  # the last pool is settled a chunk at a time
    labels = np.repeat(np.arange(len(sizes)), sizes)
    qs = QuerySet(torch.zeros(len(labels), 1), labels)
    qs.reset(np.random.default_rng(5))
    return qs


@pytest.mark.parametrize("scheme", ["keyed", "lazy", "whole"])
def test_draw_steps_takes_what_draws_step_by_step_take(scheme):
    rng = np.random.default_rng(1)
    for trial in range(40):
        plan = rng.integers(0, 4, 30).tolist()
        one, many = pools(), pools()
        one.pools = many.pools = scheme
        limit = int(rng.integers(1, 80))
        expected, left = [], limit
        for position in plan:
            if left <= 0 or one.remaining()[position] == 0:
                break
            expected.append(one.draw(position, min(4, left)).copy())
            left -= len(expected[-1])
        plan = plan[:len(expected)]
        drawn = many.draw_steps(plan, 4, limit)
        assert [d.tolist() for d in drawn] == [e.tolist() for e in expected]
        assert np.array_equal(one.cursor, many.cursor) and np.array_equal(one.seeds, many.seeds)
        assert one.rng.bit_generator.state == many.rng.bit_generator.state


def test_draw_steps_refuses_a_label_with_nothing_left_and_draws_nothing():
    qs = pools()
    before = qs.cursor.copy()
    with pytest.raises(ValueError, match="no images left by then"):
        qs.draw_steps([2, 0, 2], 4, 100)  # label 2 holds two images: the first step empties it
    assert np.array_equal(qs.cursor, before) and (qs.seeds < 0).all()


def test_act_ahead_chooses_what_act_chooses_and_leaves_the_rng_where_act_does():
    stepped, _ = uneven_env(budget=64, action_mode="flat")  # an action is a label position
    ahead, _ = uneven_env(budget=64, action_mode="flat")
    for env in (stepped, ahead):
        env.reset(seed=3)
    agents = RandomAgent(stepped, seed=9), RandomAgent(ahead, seed=9)
    acted = []
    for _ in range(12):  # 48 of the 64 images
        position = int(agents[0].act(None, None))
        acted.append(position)
        stepped.query_set.draw(position, 4)
    assert agents[1].act_ahead(12) == acted
    assert agents[0].rng.bit_generator.state == agents[1].rng.bit_generator.state
    assert agents[1].plan(5) == agents[1].plan(5)  # a plan replays on copies: acting is not advanced
    ahead.query_set.draw_steps(acted, 4, 64)
    assert len(agents[1].act_ahead(1000)) < 1000  # the query set runs out: the uniforms left are given back
    rest = []
    while stepped.query_set.remaining().any():
        rest.append(int(agents[0].act(None, None)))
        stepped.query_set.draw(rest[-1], 4)
    assert agents[0].rng.bit_generator.state == agents[1].rng.bit_generator.state and len(rest) > 0


def test_copycat_draws_ahead_only_outside_the_victims_domain_as_step_by_step():
    runs = {}
    for batch in (False, None):
        g = torch.Generator().manual_seed(3)
        y = torch.arange(60) % 6
        torch.manual_seed(7)
        env = KnockoffEnv(victim=LinearNet(), query_set=(torch.randn(60, 6, generator=g), y), output="label",
                          hierarchy={"a": [0, 1, 2], "b": [3, 4], "c": [5]}, knockoff=lambda: LinearNet(), budget=30,
                          device="cpu")
        run_attack(env, CopycatCNN(env, seed=2, exclude="a"), seed=2, progress=False, batch=batch)
        runs[batch] = transfer(env)
        coarse = env.query_set.coarse_of_label[env.query_set.positions[runs[batch][0]]]
        assert (coarse != 0).all() and len(runs[batch][0]) == 30  # never node "a"
        assert set(np.unique(runs[batch][1]).tolist()) <= {0.0, 1.0}  # labels only
    assert np.array_equal(runs[False][0], runs[None][0])


class OwnAct(RandomAgent):
    """Changes ``act`` alone: its act_ahead would not choose as it does."""

    def act(self, obs, info):
        return super().act(obs, info)


class Wrapper:
    def __init__(self, agent):
        self.agent = agent

    def act(self, obs, info):
        return self.agent.act(obs, info)

    def __getattr__(self, name):
        return getattr(self.agent, name)


def test_only_an_agent_whose_act_ahead_matches_its_act_is_drawn_ahead():
    env, _ = uneven_env(budget=20)
    agent = RandomAgent(env)
    assert acting_ahead(agent) == agent.act_ahead
    assert acting_ahead(OwnAct(env)) is None and acting_ahead(Wrapper(agent)) is None
    assert acting_ahead(Agent(env)) is None


def test_a_knockoff_reset_after_training_is_the_fresh_knockoff():
    torch.manual_seed(0)
    model = LinearNet()
    fresh = copy.deepcopy(model)
    cpu = torch.device("cpu")
    knockoff, twin = OnlineKnockoff(model, cpu, 0.1, 0.5), OnlineKnockoff(fresh, cpu, 0.1, 0.5)
    x, y = torch.randn(8, 6), torch.softmax(torch.randn(8, 3), 1)
    for _ in range(3):
        knockoff.step(x, y)
    knockoff.optimizer.param_groups[0]["lr"] = 0.7
    knockoff.reset()
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    assert not knockoff.optimizer.state and knockoff.optimizer.param_groups[0]["lr"] == 0.1
    torch.testing.assert_close(knockoff.step(x, y), twin.step(x, y))  # and it learns as a fresh one
    torch.testing.assert_close(knockoff.step(x, y), twin.step(x, y))  # momentum included


def test_seeding_torch_on_the_cpu_repeats_its_draws():
    seed_torch(4, torch.device("cpu"))
    first = torch.rand(3)
    seed_torch(4, torch.device("cpu"))
    assert torch.equal(torch.rand(3), first)
    torch.manual_seed(4)
    assert torch.equal(torch.rand(3), first)  # the same generator torch.manual_seed seeds


def test_the_random_env_episodes_repeat_with_the_same_seed_drawn_ahead():
    def attack():
        torch.manual_seed(7)
        box = BlackBox(LinearNet(), num_classes=3, device="cpu")
        g = torch.Generator().manual_seed(3)
        y = torch.arange(60) % 6
        env = KnockoffEnv(victim=box, query_set=(torch.randn(60, 6, generator=g), y), budget=40, device="cpu",
                          knockoff=lambda: LinearNet())
        run_attack(env, RandomAgent(env), seed=1, progress=False)
        return transfer(env)
    a, b = attack(), attack()
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
